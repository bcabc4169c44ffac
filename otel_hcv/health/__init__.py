"""Health checks: an HTTP endpoint and observable gauges."""
