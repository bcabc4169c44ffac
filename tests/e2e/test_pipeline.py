"""End to end through the real stack: the example service under opentelemetry-instrument
(PostgreSQL, Redis) -> OpenTelemetry Collector -> Jaeger, Prometheus and the log sink."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import socket
import struct
import time
from pathlib import Path

import pytest

from tests.support.backends import Jaeger, Prometheus, eventually, log_sink_records, stack_env, stack_service_env
from tests.support.service import ServiceProcess, free_port, instrumented_runserver, manage, post_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PSEUDONYM_KEY = "e2e-pseudonym-key"
CANARY_LABS = {
    "age": 53, "sex": "f", "alb": 39.71, "alp": 71.23, "alt": 31.97, "ast": 33.19, "bil": 9.83,
    "che": 7.91, "chol": 5.17, "crea": 77.39, "ggt": 29.57, "prot": 70.63,
}  # fmt: skip
SUCCESSES, INVALID, FAILURES = 3, 1, 1
FORGED = 2  # successful requests with forged X-Request-ID headers (counted as successes)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One service run with known traffic; everything the tests read back comes from it."""
    stack = stack_env()
    service_name = f"hcv-e2e-{secrets.token_hex(3)}"
    env = stack_service_env(service_name, HCV_PSEUDONYM_KEY=PSEUDONYM_KEY)
    manage(["migrate", "--noinput"], env)
    user = json.loads(manage(["create_demo_user", "--username", f"e2e-{service_name}", "--json"], env))
    port = free_port()
    logs = tmp_path_factory.mktemp("e2e")
    service = ServiceProcess(instrumented_runserver(port), env, port, logs / "service.log")
    traces: dict[str, list[str]] = {"success": [], "invalid": [], "failure": []}
    try:
        service.wait_ready()
        url = f"{service.url}/api/diagnose/"

        def send(kind: str, body: dict, headers: dict[str, str] | None = None) -> int:
            trace_id = secrets.token_hex(16)
            traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
            status, _ = post_json(url, json.dumps(body), {"traceparent": traceparent, **(headers or {})})
            traces[kind].append(trace_id)
            return status

        auth = {"Authorization": f"Token {user['token']}"}
        assert [send("success", CANARY_LABS, auth) for _ in range(SUCCESSES)] == [200] * SUCCESSES
        assert send("invalid", {**CANARY_LABS, "che": -1}) == 400
        assert send("failure", CANARY_LABS, {"X-HCV-Fail": "diagnosis"}) == 500
        forged = {
            "too long": raw_post(port, "X-Request-ID: " + "a" * 300),
            "folded with CR/LF": raw_post(port, "X-Request-ID: abc\r\n Injected: 1"),
        }
        time.sleep(2.5)  # a couple of metric export intervals before the service stops
    finally:
        service.stop()
    return {
        "service": service_name,
        "user_id": user["user_id"],
        "traces": traces,
        "jaeger": Jaeger(stack["JAEGER_QUERY_URL"]),
        "prometheus": Prometheus(stack["PROMETHEUS_URL"]),
        "sink": Path(stack["COLLECTOR_LOG_SINK"]),
        "stdout": service.output(),
        "forged": forged,
    }


def raw_post(port: int, header_line: str) -> dict[str, str]:
    """POST with a header line urllib would refuse to send; returns the trace id we chose
    and the X-Request-ID the service answered with."""
    trace_id = secrets.token_hex(16)
    body = json.dumps(CANARY_LABS).encode()
    head = (
        f"POST /api/diagnose/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\ntraceparent: 00-{trace_id}-{secrets.token_hex(8)}-01\r\n"
        f"{header_line}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head.encode() + body)
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    headers = dict(line.decode().split(": ", 1) for line in rest.split(b"\r\n\r\n")[0].split(b"\r\n") if b": " in line)
    return {"status": status_line.decode(), "trace_id": trace_id, "request_id": headers.get("X-Request-ID", "")}


def test_forged_request_ids_are_replaced_everywhere(run):
    for label, forged in run["forged"].items():
        assert " 200 " in forged["status"], (label, forged)
        request_id = forged["request_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id), (label, request_id)

        def record(trace_id=forged["trace_id"]):
            return [
                r for r in log_sink_records(run["sink"])
                if r.get("traceId") == trace_id and r["body"].get("stringValue") == "Diagnosis request received"
            ]  # fmt: skip

        (exported,) = eventually(record)
        attributes = {a["key"]: a["value"].get("stringValue") for a in exported.get("attributes", [])}
        assert attributes["request_id"] == request_id, label
        spans = eventually(lambda trace_id=forged["trace_id"]: run["jaeger"].trace(trace_id))
        server = next(s for s in spans if s["name"] == "POST api/diagnose/")
        assert server["tags"]["hcv.request.id"] == request_id
    assert "Replaced a malformed X-Request-ID header" in run["stdout"]


def test_diagnosis_trace_in_jaeger(run):
    jaeger = run["jaeger"]
    trace_id = run["traces"]["success"][0]
    spans = eventually(lambda: (s := jaeger.trace(trace_id)) and len(s) >= 2 and s)
    by_name = {s["name"]: s for s in spans}
    server = by_name["POST api/diagnose/"]
    assert server["service"] == run["service"]
    assert server["tags"]["http.route"] == "api/diagnose/"
    assert server["tags"]["hcv.endpoint"] == "hcv_diagnosis"
    expected = hmac.new(PSEUDONYM_KEY.encode(), str(run["user_id"]).encode(), hashlib.sha256).hexdigest()[:32]
    assert server["tags"]["enduser.pseudo.id"] == expected
    diagnosis = by_name["hcv.diagnosis"]
    assert diagnosis["tags"]["enduser.pseudo.id"] == expected
    assert diagnosis["parent"] == server["span_id"]
    assert "hcv_diagnosis" not in by_name  # the view adds no span of its own
    assert any(s["name"].startswith(("SELECT", "INSERT", "hcv")) for s in spans if s["parent"] == server["span_id"])
    assert server["process"]["service.instance.id"]


def test_failed_diagnosis_is_an_error_trace(run):
    jaeger = run["jaeger"]
    spans = eventually(lambda: (s := jaeger.trace(run["traces"]["failure"][0])) and len(s) >= 2 and s)
    diagnosis = next(s for s in spans if s["name"] == "hcv.diagnosis")
    assert diagnosis["tags"]["error"] is True
    assert diagnosis["tags"]["error.type"] == "RuntimeError"


def test_prometheus_counts_equal_what_was_sent(run):
    prometheus = run["prometheus"]
    job = f'job="{run["service"]}"'

    def counts():
        success = prometheus.value(f'sum(hcv_diagnosis_requests_total{{{job},hcv_diagnosis_outcome="success"}})')
        failure = prometheus.value(f'sum(hcv_diagnosis_requests_total{{{job},hcv_diagnosis_outcome="failure"}})')
        return (success, failure) if (success, failure) == (SUCCESSES + FORGED, FAILURES) else None

    eventually(counts, timeout=60)
    histogram = prometheus.value(f"sum(hcv_diagnosis_duration_seconds_count{{{job}}})")
    assert histogram == SUCCESSES + FORGED + FAILURES
    by_status = {
        r["metric"]["http_response_status_code"]: float(r["value"][1])
        for r in prometheus.query(f"sum by (http_response_status_code) (hcv_api_requests_total{{{job}}})")
    }
    assert by_status == {"200": SUCCESSES + FORGED, "400": INVALID, "500": FAILURES}


def test_span_metrics_from_the_connector(run):
    prometheus = run["prometheus"]
    selector = f'service_name="{run["service"]}",span_name="hcv.diagnosis"'

    def calls():
        value = prometheus.value(f"sum(traces_span_metrics_calls_total{{{selector}}})")
        return value if value == SUCCESSES + FORGED + FAILURES else None

    assert eventually(calls, timeout=60) == SUCCESSES + FORGED + FAILURES
    errors = prometheus.value(f'sum(traces_span_metrics_calls_total{{{selector},status_code="STATUS_CODE_ERROR"}})')
    assert errors == FAILURES


def test_log_record_reaches_the_sink_with_the_trace_and_span_ids(run):
    trace_id = run["traces"]["success"][0]

    def records():
        return [
            r
            for r in log_sink_records(run["sink"])
            if r.get("traceId") == trace_id and r["body"].get("stringValue") == "Diagnosis request received"
        ]

    (record,) = eventually(records)
    spans = run["jaeger"].trace(trace_id)
    assert record["spanId"] in {s["span_id"] for s in spans}
    attributes = {a["key"]: a["value"] for a in record.get("attributes", [])}
    assert attributes["request_id"]["stringValue"]
    # The same record on stdout, as a JSON line with the same ids.
    lines = [json.loads(line) for line in run["stdout"].splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x.get("trace_id") == trace_id and x["message"] == "Diagnosis request received"]
    assert line["span_id"] == record["spanId"]
    assert line["request_id"] == attributes["request_id"]["stringValue"]


def test_no_lab_value_in_jaeger_prometheus_or_the_log_sink(run):
    floats = [v for v in CANARY_LABS.values() if isinstance(v, float)]
    all_trace_ids = [t for kind in run["traces"].values() for t in kind]
    eventually(lambda: all(run["jaeger"].trace(t) for t in all_trace_ids))
    stored = json.dumps([run["jaeger"].trace(t) for t in all_trace_ids])
    stored += json.dumps(run["jaeger"].traces_of(run["service"]))
    stored += json.dumps(run["prometheus"].series(f'{{job="{run["service"]}"}}'))
    sink = [r for r in log_sink_records(run["sink"]) if r.get("traceId") in set(all_trace_ids)]
    assert sink, "no log records of this run in the sink"
    stored += json.dumps(sink)
    for value in floats:
        assert repr(value) not in stored, value
        assert struct.pack("<d", value).hex() not in stored
