"""Health data never leaves the process: a canary run through the whole real stack.

Distinctive lab values, a user whose id, username, e-mail and name are distinctive, a
bearer token, a DRF token, cookies and a query string go in, including a request that
raises with the lab values in its message and one whose code logs the raw request data.
None of them may appear in Jaeger, Prometheus, the collector's log sink, the service's
stdout or the Sentry envelopes; the pseudonymised user id must appear on the spans."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
import time

import pytest

from tests.support.backends import Jaeger, Prometheus, eventually, log_sink_records, stack_env, stack_service_env
from tests.support.sentry_ingest import SentryIngest
from tests.support.service import ServiceProcess, free_port, instrumented_runserver, manage, post_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PSEUDONYM_KEY = "canary-pseudonym-key"
LABS = {"age": 61, "sex": "f", "alb": 36.417, "alp": 88.193, "alt": 47.281, "ast": 52.839, "bil": 13.579,
        "che": 6.247, "chol": 4.863, "crea": 91.357, "ggt": 64.923, "prot": 68.741}  # fmt: skip
USER_ID = 1938472615
USERNAME = "canary-username-qz7w"
EMAIL = "canary.person.q7z3@clinic-canary.example"
FIRST, LAST = "Zebulonia", "Quixotevska"
BEARER = "canarybearer8f7e6d5c4b3a2918"
COOKIE_SESSION, COOKIE_CSRF = "canarysession3b2a19", "canarycsrf7c6d5e"
QUERY = "canaryquery5e4d3c"
API_KEY = "canaryapikey4c3b2a1908"
CLIENT_SUPPLIED = {
    "tracestate": f"vendor=ok,mail={EMAIL.replace('@', '-at-')},who={USERNAME}",
    "baggage": f"sentry-user_id={USER_ID},sentry-transaction=/api/x?q={QUERY},sentry-public_key=public",
    "X-Api-Key": API_KEY,
    "X-Auth-Token": API_KEY,
    "X-CSRFToken": COOKIE_CSRF,
}


def create_canary_user(env: dict[str, str]) -> str:
    code = (
        "from django.contrib.auth.models import User;"
        "from rest_framework.authtoken.models import Token;"
        f"User.objects.filter(id={USER_ID}).delete();"
        f"u = User.objects.create_user(id={USER_ID}, username={USERNAME!r}, email={EMAIL!r},"
        f" first_name={FIRST!r}, last_name={LAST!r});"
        "print(Token.objects.create(user=u).key)"
    )
    return manage(["shell", "-c", code], env).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    stack = stack_env()
    service_name = f"hcv-canary-{secrets.token_hex(3)}"
    with SentryIngest() as sentry:
        env = stack_service_env(
            service_name,
            HCV_PSEUDONYM_KEY=PSEUDONYM_KEY,
            SENTRY_DSN=sentry.dsn,
            # Standard settings that, left to upstream, export what the privacy rules forbid.
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*",
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE=".*",
            OTEL_METRICS_EXEMPLAR_FILTER="always_on",
            OTEL_PYTHON_LOG_CORRELATION="true",
            OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION="true",
        )
        manage(["migrate", "--noinput"], env)
        token = create_canary_user(env)
        port = free_port()
        service = ServiceProcess(instrumented_runserver(port), env, port, tmp_path_factory.mktemp("c") / "out.log")
        trace_ids = []
        try:
            service.wait_ready()
            url = f"{service.url}/api/diagnose/?note={QUERY}"
            body = json.dumps(LABS)
            secrets_headers = {
                "Authorization": f"Token {token}",
                "Cookie": f"sessionid={COOKIE_SESSION}; csrftoken={COOKIE_CSRF}",
            }
            cases = [
                (body, secrets_headers),
                (body, {"Authorization": f"Bearer {BEARER}"}),
                (body, {**secrets_headers, "X-HCV-Fail": "log-request-data"}),
                (body, {**secrets_headers, "X-HCV-Fail": "diagnosis-with-data"}),
                (body, {**secrets_headers, "X-HCV-Fail": "diagnosis"}),
                (json.dumps({**LABS, "alb": str(LABS["alb"])}), secrets_headers),  # invalid: echoes nothing
                # Careless application code: values in f-strings, arguments, extras, span attributes,
                # an event name, the raw path as a metric endpoint, an exception group with notes;
                # client-supplied trace state and baggage, and credential headers being captured.
                (body, {**secrets_headers, **CLIENT_SUPPLIED, "X-HCV-Fail": "careless-code"}),
            ]
            statuses = []
            for data, headers in cases:
                trace_id = secrets.token_hex(16)
                headers = {**headers, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
                statuses.append(post_json(url, data, headers)[0])
                trace_ids.append(trace_id)
            # Values in the path, plainly and percent-encoded (a query hidden as %3F).
            for path in (f"/api/diagnose/alb={LABS['alb']}/", f"/api/diagnose/%3Fcrea%3D{LABS['crea']}"):
                trace_id = secrets.token_hex(16)
                headers = {**secrets_headers, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
                statuses.append(post_json(service.url + path, body, headers)[0])
                trace_ids.append(trace_id)
            assert statuses == [200, 200, 200, 500, 500, 400, 500, 404, 404]
            assert sentry.wait_for(lambda: len(sentry.events()) >= 2, timeout=30)
            time.sleep(2.5)
        finally:
            service.stop()
        yield {
            "service": service_name,
            "trace_ids": trace_ids,
            "jaeger": Jaeger(stack["JAEGER_QUERY_URL"]),
            "prometheus": Prometheus(stack["PROMETHEUS_URL"]),
            "sink": stack["COLLECTOR_LOG_SINK"],
            "stdout": service.output(),
            "sentry": b"".join(sentry.decoded) + b"".join(sentry.raw),
            "token": token,
        }


def canaries(run) -> dict[str, list[str]]:
    """Every canary in the textual forms it could take once serialised."""
    found = {name: [repr(value)] for name, value in LABS.items() if isinstance(value, float)}
    for name, value in LABS.items():
        if isinstance(value, float):
            found[name] += [struct.pack("<d", value).hex(), json.dumps(struct.pack("<d", value).hex())]
    found |= {
        "user id": [str(USER_ID)],
        "username": [USERNAME],
        "email": [EMAIL, EMAIL.split("@")[0]],
        "name": [FIRST, LAST],
        "drf token": [run["token"]],
        "bearer token": [BEARER],
        "cookie": [COOKIE_SESSION, COOKIE_CSRF],
        "query string": [QUERY],
        "api key": [API_KEY],
    }
    return found


def assert_no_canary(text: str, where: str, run) -> None:
    for name, forms in canaries(run).items():
        for form in forms:
            assert form not in text, f"{name} ({form}) leaked into {where}"


@pytest.fixture(scope="module")
def jaeger_text(run):
    jaeger = run["jaeger"]
    eventually(lambda: all(jaeger.trace(t) for t in run["trace_ids"]), timeout=60)
    traces = [jaeger.trace(t) for t in run["trace_ids"]]
    return json.dumps(traces) + json.dumps(jaeger.traces_of(run["service"]))


def test_no_canary_in_jaeger(run, jaeger_text):
    assert_no_canary(jaeger_text, "Jaeger", run)


def test_pseudonymised_user_id_is_on_the_spans(run, jaeger_text):
    pseudonym = hmac.new(PSEUDONYM_KEY.encode(), str(USER_ID).encode(), hashlib.sha256).hexdigest()[:32]
    spans = run["jaeger"].trace(run["trace_ids"][0])
    assert any(s["tags"].get("enduser.pseudo.id") == pseudonym for s in spans)
    assert pseudonym in jaeger_text


def test_no_canary_in_prometheus(run):
    prometheus = run["prometheus"]
    job = f'{{job="{run["service"]}"}}'
    series = eventually(lambda: prometheus.series(job), timeout=60)
    assert series
    assert_no_canary(json.dumps(series), "Prometheus", run)


def test_no_canary_in_the_log_sink(run):
    records = eventually(
        lambda: [r for r in log_sink_records(run["sink"]) if r["resource"].get("service.name", {}).get("stringValue")
                 == run["service"]] or None,
        timeout=60,
    )  # fmt: skip
    bodies = [r["body"].get("stringValue", "") for r in records]
    assert any(b.startswith("Diagnosis request data:") for b in bodies), "the careless log record was not exported"
    assert_no_canary(json.dumps(records), "the collector's log sink", run)


def test_no_canary_on_stdout(run):
    assert "Diagnosis request data:" in run["stdout"]
    assert_no_canary(run["stdout"], "stdout", run)


def test_no_canary_in_sentry_envelopes(run):
    assert run["sentry"], "Sentry received nothing"
    assert_no_canary(run["sentry"].decode(errors="replace"), "Sentry envelopes", run)
