"""Observable gauges fed from the cached health-check results."""

from __future__ import annotations

from otel_hcv.conf import Settings


def register_gauges(settings: Settings) -> None:
    """Create the health gauges once per process (not yet implemented)."""
