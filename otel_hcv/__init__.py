"""OpenTelemetry for the HCV diagnosis service: traces, metrics, logs and health.

Public API::

    configure()                       set up the SDK from code (idempotent)
    track_api_metrics(endpoint_name)  decorator for DRF and Django views
    trace_diagnosis(model_version)    span + metrics around one prediction
    record_diagnosis(duration, success, user_id=None, ...)
    MetricsCollector                  the monitoring plan's method names
"""

from otel_hcv.metrics import (
    MetricsCollector,
    record_api_request,
    record_diagnosis,
    trace_diagnosis,
    track_api_metrics,
)
from otel_hcv.sdk import configure

__version__ = "0.1.0"

__all__ = [
    "MetricsCollector",
    "configure",
    "record_api_request",
    "record_diagnosis",
    "trace_diagnosis",
    "track_api_metrics",
]
