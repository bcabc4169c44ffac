"""Request ids: taken when well-formed, replaced (with a warning) otherwise, echoed,
on the server span and in every log record of the request."""

import logging

import pytest
from django.contrib.auth.models import User

from otel_hcv.middleware import valid_request_id
from otel_hcv.privacy import PSEUDONYMOUS_USER_ID_KEY


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("abc-123_DEF.456:789", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        (None, False),
        ("with space", False),
        ("line\r\nInjected: header", False),
        ("<script>", False),
        ("ünïcode", False),
    ],
)
def test_request_id_validation(value, valid):
    assert valid_request_id(value, 128) is valid


def server_span(otel_capture):
    (span,) = [s for s in otel_capture.spans() if s.kind.name == "SERVER"]
    return span


@pytest.mark.django_db
def test_well_formed_incoming_id_is_kept_everywhere(client, otel_capture, caplog):
    caplog.set_level(logging.INFO)
    response = client.post(
        "/diagnose/", {"value": 1}, content_type="application/json", headers={"X-Request-ID": "abc-123"}
    )

    assert response["X-Request-ID"] == "abc-123"
    assert server_span(otel_capture).attributes["hcv.request.id"] == "abc-123"
    assert not [r for r in caplog.records if "Replaced a malformed" in r.getMessage()]


@pytest.mark.django_db
@pytest.mark.parametrize("forged", ["x" * 500, "evil\r\nSet-Cookie: a=b", "bad id"])
def test_forged_incoming_id_is_replaced_with_a_warning(client, otel_capture, caplog, forged):
    caplog.set_level(logging.WARNING)
    response = client.get("/plain/", headers={"X-Request-ID": forged})

    generated = response["X-Request-ID"]
    assert generated != forged and valid_request_id(generated, 128)
    assert server_span(otel_capture).attributes["hcv.request.id"] == generated
    (warning,) = [r for r in caplog.records if "Replaced a malformed" in r.getMessage()]
    assert forged not in warning.getMessage()


@pytest.mark.django_db
def test_missing_id_is_generated_silently(client, caplog):
    caplog.set_level(logging.WARNING)
    response = client.get("/plain/")
    assert valid_request_id(response["X-Request-ID"], 128)
    assert not caplog.records


@pytest.mark.django_db
def test_log_records_of_the_request_carry_its_id(client, otel_capture, caplog):
    caplog.set_level(logging.INFO)
    client.get("/plain/", headers={"X-Request-ID": "req-logs-1"})
    client.get("/plain/")  # a later request must not reuse it
    served = [r.log_record for r in otel_capture.logs() if r.log_record.body == "plain view served"]
    assert len(served) == 2
    assert served[0].attributes["request_id"] == "req-logs-1"
    assert served[1].attributes["request_id"] not in ("req-logs-1", None)


@pytest.mark.django_db
async def test_async_view_gets_and_echoes_the_id(async_client, otel_capture):
    response = await async_client.get("/async/", headers={"X-Request-ID": "async-77"})
    assert response["X-Request-ID"] == "async-77"
    assert server_span(otel_capture).attributes["hcv.request.id"] == "async-77"


@pytest.mark.django_db
def test_header_name_is_configurable(client, settings, otel_capture):
    from otel_hcv import bootstrap

    settings.OTEL_HCV = {**settings.OTEL_HCV, "REQUEST_ID_HEADER": "X-Correlation-ID"}
    bootstrap.configure()  # the test setup re-reads settings here
    try:
        response = client.get("/plain/", headers={"X-Correlation-ID": "corr-9"})
        assert response["X-Correlation-ID"] == "corr-9"
    finally:
        settings.OTEL_HCV = {k: v for k, v in settings.OTEL_HCV.items() if k != "REQUEST_ID_HEADER"}
        bootstrap.configure()


@pytest.mark.django_db
def test_session_user_marks_the_server_span(client, otel_capture):
    client.force_login(User.objects.create_user("ward-nurse", password="pw"))
    client.get("/plain/")
    assert PSEUDONYMOUS_USER_ID_KEY in server_span(otel_capture).attributes


@pytest.mark.django_db
def test_upstream_middleware_builds_the_absolute_uri_once(client, otel_capture, monkeypatch, settings, upstream_server):
    from django.http import HttpRequest
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    from otel_hcv.bootstrap import ABSOLUTE_URI_CACHE

    middleware = list(settings.MIDDLEWARE)
    assert middleware.index(ABSOLUTE_URI_CACHE) + 1 == middleware.index(DjangoInstrumentor._opentelemetry_middleware)
    calls = []
    original = HttpRequest.build_absolute_uri

    def counting(self, location=None):
        calls.append(location)
        return original(self, location)

    monkeypatch.setattr(HttpRequest, "build_absolute_uri", counting)
    response = client.post("/diagnose/", {"value": 1}, content_type="application/json")

    assert response.status_code == 200
    assert calls == ["?"]  # upstream asks three times: request, view, response
    assert "build_absolute_uri" not in vars(response.wsgi_request)  # no request <-> closure cycle left
    assert server_span(otel_capture).attributes["http.route"] == "diagnose/"


@pytest.mark.parametrize(("outcome", "status", "message"), [
    ("unauthorized", 403, "Forbidden"), ("missing", 404, "Not Found"), ("invalid", 400, "Bad Request"),
])  # fmt: skip
def test_djangos_4xx_lines_written_after_the_span_carry_its_ids(client, otel_capture, outcome, status, message):
    import json

    from otel_hcv.logging import StructuredFormatter

    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    django_request = logging.getLogger("django.request")
    django_request.addHandler(handler)
    try:
        response = client.get(f"/guarded/?outcome={outcome}", headers={"X-Request-ID": f"req-{outcome}"})
    finally:
        django_request.removeHandler(handler)
    assert response.status_code == status
    span = server_span(otel_capture)
    (record,) = [r for r in lines if r.getMessage().startswith(message)]
    entry = json.loads(StructuredFormatter().format(record))
    assert entry["trace_id"] == format(span.context.trace_id, "032x")
    assert entry["span_id"] == format(span.context.span_id, "016x")
    assert entry["request_id"] == f"req-{outcome}"
    (exported,) = [r for r in otel_capture.logs() if str(r.log_record.body).startswith(message)]
    assert exported.log_record.trace_id == span.context.trace_id
    assert exported.log_record.span_id == span.context.span_id
    assert exported.log_record.attributes["request_id"] == f"req-{outcome}"
