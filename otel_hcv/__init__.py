"""OpenTelemetry for the HCV diagnosis service: traces, metrics, logs and health.

Public API::

    configure()                       set up the SDK from code (idempotent)
    track_api_metrics(endpoint_name)  decorator for DRF and Django views
    trace_diagnosis(model_version)    span + metrics around one prediction
    record_diagnosis(duration, success, user_id=None, ...)
    MetricsCollector                  the monitoring plan's method names

The names load on first use, so importing a leaf module (``otel_hcv.conf``) does not load
the OpenTelemetry SDK or Django.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "configure": "otel_hcv.bootstrap",
    "MetricsCollector": "otel_hcv.tracking",
    "record_api_request": "otel_hcv.metrics",
    "record_diagnosis": "otel_hcv.metrics",
    "trace_diagnosis": "otel_hcv.tracking",
    "track_api_metrics": "otel_hcv.tracking",
}

__all__ = [
    "MetricsCollector",
    "configure",
    "record_api_request",
    "record_diagnosis",
    "trace_diagnosis",
    "track_api_metrics",
]

if TYPE_CHECKING:
    from otel_hcv.bootstrap import configure
    from otel_hcv.metrics import record_api_request, record_diagnosis
    from otel_hcv.tracking import MetricsCollector, trace_diagnosis, track_api_metrics


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_hcv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value
