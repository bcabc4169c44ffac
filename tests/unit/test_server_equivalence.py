"""The lean server middleware (otel_hcv.server) emits what upstream's Django middleware emits.

The same requests go through both, one after the other, in one process with in-memory
exporters; spans (name, kind, attributes, status, events, parent) and the HTTP server metric
streams (attributes, counts, scope) must be equal. Requests cover the shapes that take
different paths through the middleware: success, DRF 4xx, an exception (500), 404, router,
regex and converter routes, an unknown method, an incoming trace context, an excluded URL,
a query string, and async views under ASGI.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.test import AsyncClient, Client

from otel_hcv import bootstrap

DJANGO_SCOPE = "opentelemetry.instrumentation.django"
INCOMING_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
INCOMING_PARENT_ID = "b7ad6b7169203331"

SYNC_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("get", "/plain/", {}),
    ("get", "/plain/?q=1&page=2", {}),
    ("post", "/diagnose/", {"data": {"value": 1}, "content_type": "application/json"}),
    ("post", "/diagnose/", {"data": {"value": -1}, "content_type": "application/json"}),
    ("post", "/diagnose/", {"data": {"value": 13}, "content_type": "application/json"}),
    ("get", "/guarded/?outcome=unauthorized", {}),
    ("get", "/guarded/?outcome=invalid", {}),
    ("get", "/nowhere/", {}),
    ("get", "/routes/api/users/me/budgets/7/", {}),
    ("post", "/routes/api/users/me/budgets/7/set-limit/", {}),
    ("get", "/routes/re/items/12/extra/", {}),
    ("get", "/routes/re/archive/2024/05/", {}),
    ("get", "/routes/orgs/3/members/ann/", {}),
    ("generic", "/plain/", {"method": "PROPFIND"}),
    ("get", "/plain/", {"headers": {"traceparent": f"00-{INCOMING_TRACE_ID}-{INCOMING_PARENT_ID}-01"}}),
    ("get", "/health/live/", {}),
    # Answered by a middleware before a view was chosen: named from the resolved path.
    ("get", "/routes/api/users/me/budgets/7/", {"headers": {"X-Refuse": "1"}}),
]
ASYNC_REQUESTS = ["/async/", "/async-fail/", "/nowhere-async/"]


def _span_view(span: Any) -> tuple[Any, ...]:
    attributes = {k: v for k, v in span.attributes.items() if k != "hcv.request.id"}
    events = [
        (event.name, sorted(event.attributes), event.attributes.get("exception.type"))
        for event in span.events
    ]
    # A remote parent by its id (the incoming trace context), a local one just as "local".
    parent = None if span.parent is None else span.parent.span_id if span.parent.is_remote else "local"
    return (
        span.name, span.kind, span.status.status_code, span.status.description,
        sorted(attributes.items()), events, parent, span.instrumentation_scope.name,
        span.instrumentation_scope.version, span.instrumentation_scope.schema_url,
    )  # fmt: skip


def _metric_view(capture: Any) -> dict[str, Any]:
    data = capture.metric_reader.get_metrics_data()
    streams: dict[str, Any] = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != DJANGO_SCOPE:
                continue
            for metric in scope_metrics.metrics:
                points = sorted(
                    (sorted(point.attributes.items()), getattr(point, "count", getattr(point, "value", None)))
                    for point in metric.data.data_points
                )
                key = f"{metric.name} [{metric.unit}] {scope_metrics.scope.version} {scope_metrics.schema_url}"
                streams[key] = points
    return streams


def _observe(capture: Any) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    capture.clear()
    client = Client(raise_request_exception=False)
    for method, path, options in SYNC_REQUESTS:
        options = dict(options)
        if method == "generic":
            client.generic(options.pop("method"), path, **options)
        else:
            getattr(client, method)(path, **options)
    async_client = AsyncClient(raise_request_exception=False)

    async def async_requests() -> None:
        for path in ASYNC_REQUESTS:
            await async_client.get(path)

    asyncio.run(async_requests())
    spans = [_span_view(span) for span in capture.spans()]
    return spans, _metric_view(capture)


def _use(settings: Any, server_middleware: str) -> None:
    settings.OTEL_HCV = {**settings.OTEL_HCV, "SERVER_MIDDLEWARE": server_middleware}
    bootstrap.configure()


@pytest.mark.django_db(transaction=True)
def test_lean_middleware_emits_what_upstream_emits(otel_capture, settings):
    default = settings.OTEL_HCV
    try:
        _use(settings, "upstream")
        upstream_spans, upstream_metrics = _observe(otel_capture)
        _use(settings, "otel_hcv")
        lean_spans, lean_metrics = _observe(otel_capture)
    finally:
        settings.OTEL_HCV = default
        bootstrap.configure()

    server_spans = [span for span in upstream_spans if span[7] == DJANGO_SCOPE]
    # The comparison below must be about something: every request but the excluded one has a span.
    assert len(server_spans) == len(SYNC_REQUESTS) - 1 + len(ASYNC_REQUESTS)
    assert any(span[3] and "RuntimeError" in span[3] for span in server_spans)  # the 500 is there
    assert any(span[6] == int(INCOMING_PARENT_ID, 16) for span in server_spans)  # continued trace
    refused = [span[0] for span in server_spans if dict(span[4]).get("http.response.status_code") == 429]
    assert refused and refused[0].startswith("GET ") and "budgets" in refused[0], refused
    assert lean_spans == upstream_spans
    assert upstream_metrics and lean_metrics == upstream_metrics


@pytest.mark.django_db
def test_the_lean_middleware_is_the_default(settings):
    assert bootstrap.SERVER_MIDDLEWARE in settings.MIDDLEWARE
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    assert DjangoInstrumentor._opentelemetry_middleware not in settings.MIDDLEWARE
