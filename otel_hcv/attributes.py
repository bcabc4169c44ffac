"""Attribute names this package records, the metric allow-lists, and the HTTP error rule.

A leaf: plain data, imported by the signal modules and by the privacy rules' callers.
"""

from __future__ import annotations

INSTRUMENTATION_SCOPE = "otel_hcv"

OUTCOME = "hcv.diagnosis.outcome"
CATEGORY = "hcv.diagnosis.category"
MODEL_VERSION = "hcv.model.version"
PROBABILITY = "hcv.diagnosis.probability"
ENDPOINT = "hcv.endpoint"
HTTP_METHOD = "http.request.method"
HTTP_STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"

METRIC_ATTRIBUTE_KEYS = frozenset({OUTCOME, CATEGORY, ENDPOINT, HTTP_METHOD, HTTP_STATUS, ERROR_TYPE})
# Every instrument's attributes, ours and the instrumentations', pass this allow-list
# (an SDK view): an identifier can never create a time series, whoever records it.
ALLOWED_METRIC_ATTRIBUTES = METRIC_ATTRIBUTE_KEYS | {
    # HTTP server metrics of the Django/ASGI instrumentations (stable conventions)
    "http.route", "url.scheme", "network.protocol.name", "network.protocol.version",
    "server.address", "server.port",
    # database and cache client metrics
    "db.system", "db.system.name", "db.operation.name", "db.collection.name", "db.namespace",
    "db.response.status_code", "db.client.connection.pool.name", "db.client.connection.state",
    # health gauges (otel_hcv.health)
    "hcv.health.check", "hcv.health.critical", "hcv.disk.path", "system.memory.state",
    # telemetry about telemetry
    "otel.component.type", "otel.component.name", "otel.signal",
}  # fmt: skip
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})



def http_error_type(status_code: int) -> str | None:
    """``error.type`` of an HTTP request as its server sees it (the semantic conventions'
    rule): a 5xx answer is an error, typed by its status code as text; a 4xx is the
    client's mistake and no error of the server. One rule for the server span,
    ``http.server.request.duration`` and ``hcv.api.*``; the exception's class, where one
    was raised, is on the span's exception event."""
    return str(status_code) if status_code >= 500 else None


def qualified_name(cls: type) -> str:
    """``module.QualName`` of an exception class (builtins without the module)."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
