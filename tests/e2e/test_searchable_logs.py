"""Searchable logs end to end: the example service -> collector -> VictoriaLogs (OTLP).

Every request's log lines are found by its trace id and by its request id, carry the trace
and span ids, the request id and the severity as fields, and hold no lab value; VictoriaLogs
holds exactly the records the JSON-lines sink got."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request

import pytest

from tests.privacy.canaries import LABS, find_leaks
from tests.support.backends import VictoriaLogs, eventually, log_sink_records, stack_env, stack_service_env
from tests.support.service import ServiceProcess, free_port, instrumented_runserver, manage

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# (expected status, extra headers): a success, an invalid body, a failing diagnosis, code that
# logs the raw request data, and careless application code with lab values in its log calls.
CASES = [
    (200, {}),
    (200, {}),
    (400, {"body": {**LABS, "che": -1}}),
    (500, {"X-HCV-Fail": "diagnosis"}),
    (200, {"X-HCV-Fail": "log-request-data"}),
    (500, {"X-HCV-Fail": "careless-code"}),
]


def post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, str]:
    """Status and the X-Request-ID the service answered with."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("X-Request-ID", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("X-Request-ID", "")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    stack = stack_env()
    service_name = f"hcv-logs-{secrets.token_hex(3)}"
    env = stack_service_env(service_name, HCV_PSEUDONYM_KEY="searchable-logs-key")
    manage(["migrate", "--noinput"], env)
    user = json.loads(manage(["create_demo_user", "--username", f"logs-{service_name}", "--json"], env))
    port = free_port()
    service = ServiceProcess(instrumented_runserver(port), env, port, tmp_path_factory.mktemp("logs") / "out.log")
    requests = []
    try:
        service.wait_ready()
        for expected, extra in CASES:
            headers = {k: v for k, v in extra.items() if k != "body"}
            trace_id = secrets.token_hex(16)
            headers |= {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                        "Authorization": f"Token {user['token']}"}  # fmt: skip
            status, request_id = post(f"{service.url}/api/diagnose/", extra.get("body", LABS), headers)
            assert status == expected, (status, extra)
            assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
            requests.append({"trace_id": trace_id, "request_id": request_id, "status": status})
        time.sleep(1.5)
    finally:
        service.stop()
    return {"service": service_name, "requests": requests, "logs": VictoriaLogs(), "sink": stack["COLLECTOR_LOG_SINK"]}


@pytest.fixture(scope="module")
def lines_by_trace(run) -> dict[str, list[dict[str, str]]]:
    logs: VictoriaLogs = run["logs"]

    def every_request_has_lines():
        found = {r["trace_id"]: logs.query(f'trace_id:"{r["trace_id"]}"') for r in run["requests"]}
        return found if all(found.values()) else None

    return eventually(every_request_has_lines, timeout=60)


def test_each_request_is_found_by_its_trace_id_with_its_ids_as_fields(run, lines_by_trace):
    for request in run["requests"]:
        lines = lines_by_trace[request["trace_id"]]
        for line in lines:
            assert line["trace_id"] == request["trace_id"], line
            assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"]), line
            assert line["request_id"] == request["request_id"], line
            assert line["severity_text"] in {"DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL"}, line
            assert line["service.name"] == run["service"], line
        messages = [line["_msg"] for line in lines]
        if request["status"] == 200:
            assert "Diagnosis request received" in messages, messages
    errors = [line for r in run["requests"] if r["status"] == 500 for line in lines_by_trace[r["trace_id"]]]
    assert any(line["severity_text"] == "ERROR" for line in errors), "a failed request logs an ERROR line"


def test_each_request_is_found_by_its_request_id_too(run, lines_by_trace):
    logs: VictoriaLogs = run["logs"]
    for request in run["requests"]:
        by_request = logs.query(f'request_id:"{request["request_id"]}"')
        key = lambda line: (line["_time"], line["_msg"], line["span_id"])  # noqa: E731
        assert sorted(map(key, by_request)) == sorted(map(key, lines_by_trace[request["trace_id"]]))


def test_no_lab_value_in_the_searchable_logs(run, lines_by_trace):
    everything = run["logs"].query(f'"service.name":"{run["service"]}"', limit=10000)
    assert len(everything) >= sum(map(len, lines_by_trace.values()))
    messages = " ".join(line["_msg"] for line in everything)
    assert "Diagnosis request data:" in messages, "the careless log record did not arrive"
    leaks = find_leaks([("VictoriaLogs", json.dumps(everything))])
    assert not leaks, leaks


def test_victorialogs_holds_what_the_json_lines_sink_holds(run, lines_by_trace):
    def sink_count() -> int:
        return sum(
            1 for r in log_sink_records(run["sink"])
            if r["resource"].get("service.name", {}).get("stringValue") == run["service"]
        )  # fmt: skip

    expected = eventually(sink_count, timeout=30)
    eventually(lambda: run["logs"].hits(f'"service.name":"{run["service"]}"') == expected or None, timeout=30)
