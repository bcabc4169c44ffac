"""Sentry through its OpenTelemetry (OTLP) integration, end to end with real parts.

The example service runs under the real ``opentelemetry-instrument`` command with
``SENTRY_DSN`` pointing at a loopback stand-in for Sentry's ingest endpoint
(tests/support/sentry_ingest.py), so the real sentry-sdk transport sends real envelopes;
spans go to a loopback OTLP receiver as usual. A request that fails inside the diagnosis
span must give exactly one error event, linked to that request's OpenTelemetry trace, and
nothing may leave the process that the privacy rules forbid.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from otel_hcv.receiver import OtlpReceiver, attributes
from tests.support.sentry_ingest import PUBLIC_KEY, SentryIngest
from tests.support.service import (
    BIN,
    ServiceProcess,
    free_port,
    instrumented_runserver,
    manage,
    post_json,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

USERNAME = "canary-sentry-clinician-5521"
# Lab values no other number in an envelope looks like.
CANARY_LABS = {
    "age": 53, "sex": "f", "alb": 39.71, "alp": 71.43, "alt": 33.59, "ast": 41.27, "bil": 9.83,
    "che": 7.61, "chol": 4.87, "crea": 77.29, "ggt": 43.13, "prot": 69.37,
}  # fmt: skip
QUERY_CANARY = "38.47"  # sent as ?alb=38.47
COOKIE_CANARIES = ("sessionid-canary-8f3e1a", "csrftoken-canary-71c2b9")
INCOMING_TRACE_ID = "5b8efff798038103d269b633813fc60c"
INCOMING_PARENT_ID = "eee19b7ec3c1b174"
FAILURE = {"X-HCV-Fail": "diagnosis"}
SERVER_KIND = 2
ERROR_STATUS = 2


def otel_env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "HCV_PSEUDONYM_KEY": "sentry-integration-pseudonym-key",
        "OTEL_PYTHON_DISTRO": "otel_hcv",
        **extra,
    }


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """A migrated SQLite database with a demo user; returns (path, token, user pk)."""
    path = tmp_path_factory.mktemp("sentry-db") / "hcv.sqlite3"
    env = service_env({}, database=path)
    manage(["migrate", "--noinput"], env)
    created = json.loads(manage(["create_demo_user", "--username", USERNAME, "--json"], env))
    return path, created["token"], int(created["user_id"])


def diagnosis_spans(receiver: OtlpReceiver) -> list[Any]:
    return [span for _, span in receiver.spans() if span.name == "hcv.diagnosis"]


def run_service(
    database: tuple[Path, str, int], log_path: Path, extra_env: dict[str, str], requests: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Start the service with Sentry on, send ``requests`` (name -> extra headers; all carry
    the canary lab values, a query string, a cookie and, except "anonymous", the token), wait
    for what they export, stop it, and return everything that was received."""
    db_path, token, user_pk = database
    with OtlpReceiver() as receiver, SentryIngest() as ingest:
        port = free_port()
        env = service_env(otel_env(receiver, SENTRY_DSN=ingest.dsn, **extra_env), db_path)
        service = ServiceProcess(instrumented_runserver(port), env, port, log_path)
        expected_failures = sum(1 for headers in requests.values() if headers.get("X-HCV-Fail"))
        try:
            service.wait_ready()
            url = f"{service.url}/api/diagnose/?alb={QUERY_CANARY}"
            cookie = f"sessionid={COOKIE_CANARIES[0]}; csrftoken={COOKIE_CANARIES[1]}"
            responses = {}
            for name, headers in requests.items():
                credentials = {} if name == "anonymous" else {"Authorization": f"Token {token}"}
                responses[name] = post_json(url, json.dumps(CANARY_LABS), {"Cookie": cookie, **credentials, **headers})
            delivered = ingest.wait_for(
                lambda: (
                    len(ingest.events()) >= expected_failures
                    and len(diagnosis_spans(receiver)) >= len(requests)
                    and (not extra_env.get("HCV_SENTRY_SEND_SPANS") or len(ingest.otlp_spans()) >= len(requests))
                ),
                timeout=30,
            )
            # Long enough for a duplicate event or a transaction to arrive, were there any.
            time.sleep(2)
        finally:
            service.stop()
        assert delivered, f"nothing delivered; service output:\n{service.output()}"
        return {
            "receiver": receiver,
            "ingest": ingest,
            "responses": responses,
            "token": token,
            "user_pk": user_pk,
            "output": service.output(),
        }


@pytest.fixture(scope="module")
def sentry_run(database, tmp_path_factory):
    return run_service(
        database,
        tmp_path_factory.mktemp("sentry-logs") / "service.log",
        # sentry-sdk's own variables, as a deployment would set them.
        {"SENTRY_ENVIRONMENT": "integration", "SENTRY_RELEASE": "hcv-diagnosis-1.2.3"},
        {
            "failing": FAILURE,
            "continued": {**FAILURE, "traceparent": f"00-{INCOMING_TRACE_ID}-{INCOMING_PARENT_ID}-01"},
            "anonymous": {},
            "authenticated": {},
        },
    )


def trace_ids(spans: list[Any]) -> list[str]:
    return [span.trace_id.hex() for span in spans]


def test_responses(sentry_run):
    statuses = {name: status for name, (status, _) in sentry_run["responses"].items()}
    assert statuses == {"failing": 500, "continued": 500, "anonymous": 200, "authenticated": 200}
    assert sentry_run["ingest"].rejected == []


def test_one_error_event_per_failure_with_the_opentelemetry_trace_id(sentry_run):
    receiver, ingest = sentry_run["receiver"], sentry_run["ingest"]
    failed = [span for span in diagnosis_spans(receiver) if span.status.code == ERROR_STATUS]
    assert len(failed) == 2
    events = ingest.events()
    # Exactly one event per failed request, each carrying that request's OpenTelemetry trace id.
    assert Counter(event["contexts"]["trace"]["trace_id"] for event in events) == Counter(trace_ids(failed))
    servers = {span.trace_id.hex(): span for _, span in receiver.spans() if span.kind == SERVER_KIND}
    for event in events:
        assert event["level"] == "error"
        (exception,) = event["exception"]["values"]
        assert exception["type"] == "RuntimeError"
        assert exception["mechanism"] == {"type": "django", "handled": False}
        # Captured while the server span was current: Sentry links to the span Jaeger shows.
        trace_context = event["contexts"]["trace"]
        assert trace_context["span_id"] == servers[trace_context["trace_id"]].span_id.hex()
        assert event["transaction"] == "/api/diagnose/"


def test_no_transaction_and_no_span_export_to_sentry(sentry_run):
    ingest = sentry_run["ingest"]
    item_types = Counter(item.type for envelope in ingest.envelopes for item in envelope.items)
    assert item_types["event"] == 2
    assert set(item_types) <= {"event", "client_report", "session", "sessions"}, item_types
    assert ingest.transactions() == []
    assert ingest.otlp_traces == []  # SENTRY_SEND_SPANS is off by default


def test_incoming_traceparent_continues_in_span_and_event(sentry_run):
    receiver, ingest = sentry_run["receiver"], sentry_run["ingest"]
    continued = [s for _, s in receiver.spans() if s.trace_id.hex() == INCOMING_TRACE_ID]
    server = [s for s in continued if s.kind == SERVER_KIND]
    assert len(server) == 1 and server[0].parent_span_id.hex() == INCOMING_PARENT_ID
    assert any(s.name == "hcv.diagnosis" and s.status.code == ERROR_STATUS for s in continued)
    events = [e for e in ingest.events() if e["contexts"]["trace"]["trace_id"] == INCOMING_TRACE_ID]
    assert len(events) == 1


def test_environment_and_release_from_sentry_variables(sentry_run):
    for event in sentry_run["ingest"].events():
        assert event["environment"] == "integration"
        assert event["release"] == "hcv-diagnosis-1.2.3"
        assert "otlp" in event["sdk"]["integrations"]


def test_nothing_forbidden_in_any_envelope(sentry_run):
    ingest, token, user_pk = sentry_run["ingest"], sentry_run["token"], sentry_run["user_pk"]
    everything = b"".join(ingest.decoded)
    assert everything  # the checks below must look at something
    # A lab value as a number of its own: "9.83" inside a timestamp such as 1796281709.8312
    # is no leak, 9.83 on its own is.
    for value in CANARY_LABS.values():
        if isinstance(value, float):
            number = re.compile(rb"(?<![\d.])" + re.escape(repr(value).encode()) + rb"(?!\d)")
            assert not number.search(everything), value
    for text in [QUERY_CANARY, *COOKIE_CANARIES, token, USERNAME]:
        assert text.encode() not in everything, text
    for event in ingest.events():
        request = event["request"]
        assert {"data", "cookies", "query_string"}.isdisjoint(request)
        assert "?" not in request["url"]
        assert {name.lower() for name in request["headers"]}.isdisjoint({"authorization", "cookie"})
        assert "REMOTE_ADDR" not in request.get("env", {})
        frames = event["exception"]["values"][0]["stacktrace"]["frames"]
        assert frames and all("vars" not in frame for frame in frames)
        assert "user" not in event  # no user identity without personal data
        assert_no_raw_user_id(event, user_pk)


def assert_no_raw_user_id(value: Any, user_pk: int, key: str = "") -> None:
    if isinstance(value, dict):
        for child_key, child in value.items():
            assert_no_raw_user_id(child, user_pk, str(child_key))
    elif isinstance(value, list):
        for child in value:
            assert_no_raw_user_id(child, user_pk, key)
    elif "user" in key.lower():
        assert str(value) != str(user_pk), key


def test_sentry_setup_is_logged_without_the_dsn(sentry_run):
    output = sentry_run["output"]
    assert "Sentry error reporting on (environment integration, release hcv-diagnosis-1.2.3" in output
    assert PUBLIC_KEY not in output


@pytest.fixture(scope="module")
def spans_to_sentry_run(database, tmp_path_factory):
    return run_service(
        database,
        tmp_path_factory.mktemp("sentry-spans-logs") / "service.log",
        {"HCV_SENTRY_SEND_SPANS": "true", "HCV_SENTRY_ENVIRONMENT": "spans", "SENTRY_ENVIRONMENT": "ignored"},
        {"failing": FAILURE, "authenticated": {}},
    )


def test_send_spans_exports_the_same_spans_to_sentrys_otlp_endpoint(spans_to_sentry_run):
    receiver, ingest = spans_to_sentry_run["receiver"], spans_to_sentry_run["ingest"]
    assert ingest.rejected == []
    for headers in ingest.otlp_headers:
        assert f"sentry_key={PUBLIC_KEY}" in headers["x-sentry-auth"]
        assert headers["content-type"] == "application/x-protobuf"
    to_sentry = {(s.trace_id, s.span_id) for s in ingest.otlp_spans()}
    to_collector = {(s.trace_id, s.span_id) for _, s in receiver.spans()}
    assert to_sentry == to_collector
    (event,) = ingest.events()
    assert event["contexts"]["trace"]["trace_id"] in {trace_id.hex() for trace_id, _ in to_sentry}
    assert event["environment"] == "spans"  # the package's setting wins over SENTRY_ENVIRONMENT
    assert ingest.transactions() == []


def test_spans_to_sentry_are_redacted_too(spans_to_sentry_run):
    ingest = spans_to_sentry_run["ingest"]
    with ingest.lock:
        otlp_bodies = [body for body in ingest.decoded if not body.startswith(b"{")]
    assert otlp_bodies
    everything = b"".join(otlp_bodies)
    for name, value in CANARY_LABS.items():
        if isinstance(value, float):
            assert struct.pack("<d", value) not in everything, name
            assert repr(value).encode() not in everything, name
    for text in (QUERY_CANARY, *COOKIE_CANARIES, spans_to_sentry_run["token"], USERNAME):
        assert text.encode() not in everything, text
    users = [
        attributes(span.attributes).get("enduser.pseudo.id")
        for span in ingest.otlp_spans()
        if "enduser.pseudo.id" in attributes(span.attributes)
    ]
    assert users and str(spans_to_sentry_run["user_pk"]) not in users


def production_server(name: str, port: int) -> list[str]:
    instrument = [str(BIN / "opentelemetry-instrument")]
    if name == "uvicorn":
        return [*instrument, str(BIN / "uvicorn"), "hcv_service.asgi:application",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]  # fmt: skip
    return [*instrument, str(BIN / "gunicorn"), "hcv_service.wsgi",
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--preload"]  # fmt: skip


@pytest.mark.parametrize("server", ["gunicorn --preload", "uvicorn"])
def test_production_servers_link_each_error_once(server, database, tmp_path):
    """Workers forked from a master that set Sentry up (--preload), and the ASGI path, where
    the error is raised in a thread of asgiref's and Django refuses uvicorn's lifespan."""
    db_path, _, _ = database
    failures = 6
    with OtlpReceiver() as receiver, SentryIngest() as ingest:
        port = free_port()
        env = service_env(otel_env(receiver, SENTRY_DSN=ingest.dsn), db_path)
        service = ServiceProcess(production_server(server, port), env, port, tmp_path / "server.log")
        try:
            service.wait_ready()
            for _ in range(failures):
                status, _ = post_json(f"{service.url}/api/diagnose/", json.dumps(CANARY_LABS), FAILURE)
                assert status == 500
            delivered = ingest.wait_for(
                lambda: len(ingest.events()) >= failures and len(diagnosis_spans(receiver)) >= failures, timeout=30
            )
            time.sleep(2)
        finally:
            service.stop()
        assert delivered, service.output()
    events = ingest.events()
    assert Counter(e["contexts"]["trace"]["trace_id"] for e in events) == Counter(trace_ids(diagnosis_spans(receiver)))
    assert all(e["exception"]["values"][0]["type"] == "RuntimeError" for e in events)
    assert ingest.transactions() == [] and ingest.rejected == []
