"""gunicorn's and uvicorn's access lines as JSON with the request's ids and the IP policy."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace

from otel_hcv import context, servers
from otel_hcv.logging import StructuredFormatter


def gunicorn_atoms(**overrides):
    atoms = {"h": "203.0.113.77", "m": "POST", "U": "/api/budgets/7/", "q": "alb=41.2&token=abc", "s": "201",
             "H": "HTTP/1.1", "D": 12345, "B": 17, "a": "curl/8", "{authorization}i": "Bearer x"}  # fmt: skip
    return {**atoms, **overrides}


@pytest.fixture
def access_logger(request):
    """A server's access logger, set up as the server does (own handler, no propagation),
    then adopted by otel-hcv."""
    name = request.param
    access = logging.getLogger(name)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = (list(access.handlers), list(access.filters), access.propagate, access.level)
    access.handlers, access.filters, access.propagate = [handler], [], False
    access.setLevel(logging.INFO)
    exported: list[logging.LogRecord] = []
    otlp = logging.Handler()
    otlp.emit = exported.append  # type: ignore[method-assign]
    access.addFilter(servers.AccessLineFilter())
    handler.setFormatter(StructuredFormatter())
    access.addHandler(otlp)
    yield access, stream, exported
    access.handlers, access.filters, access.propagate = saved[0], saved[1], saved[2]
    access.setLevel(saved[3])


def served_request():
    with trace.get_tracer("test").start_as_current_span("request") as span:
        ids = context.RequestIds(span.get_span_context(), "req-42")
    context.set_finished_request(ids)
    return ids


@pytest.mark.parametrize("access_logger", [servers.GUNICORN_ACCESS], indirect=True)
def test_gunicorn_access_line(access_logger):
    access, stream, exported = access_logger
    ids = served_request()
    try:
        access.info('%(h)s "%(r)s" %(s)s', gunicorn_atoms())
    finally:
        context.set_finished_request(None)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "POST /api/budgets/7/ 201"
    assert entry["trace_id"] == format(ids.span_context.trace_id, "032x")
    assert entry["span_id"] == format(ids.span_context.span_id, "016x")
    assert entry["request_id"] == "req-42"
    assert entry["ip_address"] == "203.0.113.0"  # the default policy: truncated to its /24
    assert entry["http.response.status_code"] == 201 and entry["url.path"] == "/api/budgets/7/"
    assert entry["http.server.request.duration"] == pytest.approx(0.012345)
    text = stream.getvalue()
    assert "alb" not in text and "Bearer" not in text and "curl" not in text and "203.0.113.77" not in text
    (record,) = exported
    assert record.getMessage() == "POST /api/budgets/7/ 201"


@pytest.mark.parametrize("access_logger", [servers.UVICORN_ACCESS], indirect=True)
@pytest.mark.parametrize(("client", "ip"), [("203.0.113.77:51234", "203.0.113.0"), ("[2001:db8::7]:443", "2001:db8::")])
def test_uvicorn_access_line(access_logger, client, ip):
    access, stream, _ = access_logger
    ids = served_request()
    try:
        access.info('%s - "%s %s HTTP/%s" %d', client, "GET", "/api/budgets/?month=2026-11", "1.1", 404)
    finally:
        context.set_finished_request(None)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "GET /api/budgets/ 404"
    assert entry["request_id"] == "req-42" and entry["trace_id"] == format(ids.span_context.trace_id, "032x")
    assert entry["ip_address"] == ip
    assert "month" not in stream.getvalue()


@pytest.mark.parametrize("access_logger", [servers.UVICORN_ACCESS], indirect=True)
def test_unknown_shapes_pass_unchanged(access_logger):
    access, stream, _ = access_logger
    access.info("Uvicorn running on %s", "http://127.0.0.1:8000")
    assert json.loads(stream.getvalue())["message"] == "Uvicorn running on http://127.0.0.1:8000"


def test_adopt_touches_only_servers_in_this_process(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "gunicorn", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", object())
    access = logging.getLogger(servers.UVICORN_ACCESS)
    saved = (list(access.handlers), list(access.filters), access.propagate)
    handler = logging.StreamHandler(io.StringIO())
    access.handlers, access.propagate = [handler], False
    otlp = logging.Handler()
    try:
        assert servers.adopt_access_logs(otlp) == [servers.UVICORN_ACCESS]
        assert servers.adopt_access_logs(otlp) == [servers.UVICORN_ACCESS]  # idempotent
        assert isinstance(handler.formatter, StructuredFormatter)
        assert access.handlers.count(otlp) == 1
        assert sum(isinstance(f, servers.AccessLineFilter) for f in access.filters) == 1
    finally:
        access.handlers, access.filters, access.propagate = saved
