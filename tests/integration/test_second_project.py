"""A project otel-hcv was not written for (tests/budgets_project: DRF viewsets on a router,
JWT, django-filter, a nested serializer that raises) under ``opentelemetry-instrument``
with runserver, gunicorn and uvicorn, exporting to a loopback OTLP receiver.

What an adopting team expects, each checked on what the server really exported and wrote:
readable route templates, the HTTP conventions' error.type, ids on every log line a request
causes (Django's 4xx lines and the servers' access lines included), the IP policy on access
lines, metrics within seconds under runserver, a flush on SIGTERM, and the plan's names.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from otel_hcv.receiver import OtlpReceiver, attributes
from tests.support.service import BIN, REPO, ServiceProcess, free_port, service_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROJECT = REPO / "tests" / "budgets_project"
USER, PASSWORD = "ada", "budget-pw-7731"
BUDGETS = "/api/users/me/budgets/"
SPAN_KIND_SERVER = 2
STATUS_ERROR = 2
REQUEST_ID = "hcv.request.id"


def project_env(database: Path, **extra: str) -> dict[str, str]:
    return service_env(
        {"BUDGETS_SQLITE_PATH": str(database), "DJANGO_SUPERUSER_PASSWORD": PASSWORD, **extra}
    )


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    # No OTEL_METRIC_EXPORT_INTERVAL: runserver's own default is under test.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200"}  # fmt: skip


def manage(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("budgets") / "budgets.sqlite3"
    env = project_env(path)
    manage(["migrate", "--noinput"], env)
    manage(["createsuperuser", "--noinput", "--username", USER, "--email", "ada@example.org"], env)
    return path


def call(base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
    """(status, headers, parsed JSON body or text)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer_headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, dict(error.headers), error.read()
    try:
        return status, answer_headers, json.loads(raw)
    except ValueError:
        return status, answer_headers, raw.decode(errors="replace")


def budget(month: str, currency: str = "EUR", amount: str = "40.00") -> dict[str, Any]:
    return {"name": f"Budget {month}", "month": month, "limit": "500", "currency": "EUR",
            "entries": [{"label": "rent", "amount": "100", "currency": "USD"},
                        {"label": "books", "amount": amount, "currency": currency}]}  # fmt: skip


# name: (method, path template, expected status); paths are filled in by exercise().
EXPECTED = {
    "unauthorized": ("GET", "api/users/me/budgets/", 401),
    "token": ("POST", "api/token/", 200),
    "create": ("POST", "api/users/me/budgets/", 201),
    "invalid": ("POST", "api/users/me/budgets/", 400),
    "filtered": ("GET", "api/users/me/budgets/", 200),
    "detail": ("GET", "api/users/me/budgets/{pk}/", 200),
    "detail_json": ("GET", "api/users/me/budgets/{pk}.{format}[/]", 200),
    "close": ("POST", "api/users/me/budgets/{pk}/close/", 200),
    "missing": ("GET", "api/users/me/budgets/{pk}/", 404),
    "raising": ("POST", "api/users/me/budgets/", 500),
}


def exercise(base: str) -> dict[str, tuple]:
    """Every kind of request once, each with its own X-Request-ID ("t-<name>")."""
    answers: dict[str, tuple] = {}

    def send(name: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"X-Request-ID": f"t-{name}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        answers[name] = call(base, method, path, body, headers)
        return answers[name][2]

    send("unauthorized", "GET", BUDGETS)
    token = send("token", "POST", "/api/token/", {"username": USER, "password": PASSWORD})["access"]
    pk = send("create", "POST", BUDGETS, budget("2026-11"), token)["id"]
    send("invalid", "POST", BUDGETS, budget("2026-11", amount="-5"), token)
    send("filtered", "GET", f"{BUDGETS}?month=2026-11&min_limit=100", token=token)
    send("detail", "GET", f"{BUDGETS}{pk}/", token=token)
    send("detail_json", "GET", f"{BUDGETS}{pk}.json", token=token)
    send("close", "POST", f"{BUDGETS}{pk}/close/", token=token)
    send("missing", "GET", f"{BUDGETS}999999/", token=token)
    # The nested serializer has no rate for XXX: created, then the response cannot be rendered.
    send("raising", "POST", BUDGETS, budget("2026-12", currency="XXX"), token)
    answers["token_value"] = (token,)
    return answers


def server_spans(receiver: OtlpReceiver) -> dict[str, Any]:
    """Server spans by the request id the test sent."""
    spans = {}
    for _, span in receiver.spans():
        attrs = attributes(span.attributes)
        if span.kind == SPAN_KIND_SERVER and str(attrs.get(REQUEST_ID, "")).startswith("t-"):
            spans[attrs[REQUEST_ID][2:]] = span
    return spans


def latest_points(receiver: OtlpReceiver, metric: str) -> dict[tuple, Any]:
    """The last exported (cumulative) point of each attribute set."""
    latest = {}
    for resource, point in receiver.metric_points(metric):
        latest[(resource["service.instance.id"], tuple(sorted(attributes(point.attributes).items())))] = point
    return {key: point for (_, key), point in latest.items()}


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


@pytest.fixture(scope="module")
def runserver(database, tmp_path_factory):
    """runserver under the launcher: every request, then one last request and SIGTERM."""
    with OtlpReceiver() as receiver:
        port = free_port()
        command = [str(BIN / "opentelemetry-instrument"), sys.executable, "manage.py", "runserver",
                   f"127.0.0.1:{port}", "--noreload"]  # fmt: skip
        log = tmp_path_factory.mktemp("runserver") / "server.log"
        service = ServiceProcess(command, project_env(database, **otel_env(receiver)), port, log, cwd=PROJECT)
        try:
            service.wait_ready()
            first_request = time.monotonic()
            answers = exercise(service.url)
            answers["metrics"] = call(service.url, "GET", "/metrics/")
            answers["health"] = call(service.url, "GET", "/health/")
            answers["live"] = call(service.url, "GET", "/health/live")
            metrics_seen = receiver.wait_for(
                lambda: any(True for _ in receiver.metric_points("http.server.request.duration")), timeout=20
            )
            metrics_after = time.monotonic() - first_request
            # The last request, then a process manager's SIGTERM straight away.
            token = answers["token_value"][0]
            answers["last"] = call(service.url, "GET", BUDGETS + "?month=2026-11", None,
                                   {"X-Request-ID": "t-last", "Authorization": f"Bearer {token}"})  # fmt: skip
            stop_started = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            exit_code = service.process.wait(timeout=15)
            stop_seconds = time.monotonic() - stop_started
        finally:
            service.stop()
        yield {
            "receiver": receiver, "answers": answers, "output": service.output(), "metrics_seen": metrics_seen,
            "metrics_after": metrics_after, "exit_code": exit_code, "stop_seconds": stop_seconds,
        }  # fmt: skip


def test_the_project_answers_as_written(runserver):
    answers = runserver["answers"]
    for name, (_, _, status) in EXPECTED.items():
        assert answers[name][0] == status, (name, answers[name])
    assert [b["month"] for b in answers["filtered"][2]] == ["2026-11"]  # django-filter applied
    assert answers["invalid"][2] == {"entries": {"1": {"amount": ["must be positive"]}}}  # the nested entry


def test_route_templates_in_span_names_routes_and_metrics(runserver):
    receiver = runserver["receiver"]
    spans = server_spans(receiver)
    for name, (method, template, _) in EXPECTED.items():
        span = spans[name]
        assert span.name == f"{method} {template}", name
        assert attributes(span.attributes)["http.route"] == template, name
    routes = {dict(key).get("http.route") for key in latest_points(receiver, "http.server.request.duration")}
    assert routes == {template for _, template, _ in EXPECTED.values()}
    for text in routes:
        assert not set("^$()?\\") & set(text.replace("[/]", "")), text


def test_error_type_follows_the_http_conventions(runserver):
    receiver = runserver["receiver"]
    spans = server_spans(receiver)
    for name, (_, _, status) in EXPECTED.items():
        attrs = attributes(spans[name].attributes)
        if status >= 500:
            assert attrs["error.type"] == str(status) and spans[name].status.code == STATUS_ERROR, name
        else:
            assert "error.type" not in attrs and spans[name].status.code != STATUS_ERROR, name
    for metric in ("http.server.request.duration", "hcv.api.requests"):
        points = latest_points(receiver, metric)
        assert points, metric
        for key in points:
            attrs = dict(key)
            status = attrs["http.response.status_code"]
            assert attrs.get("error.type") == (str(status) if status >= 500 else None), (metric, attrs)
    created = {dict(key)["http.response.status_code"] for key in latest_points(receiver, "hcv.api.requests")}
    assert created == {201, 400, 500}


def test_every_log_line_of_a_request_carries_its_ids(runserver):
    receiver, output = runserver["receiver"], runserver["output"]
    spans = server_spans(receiver)
    # The project's own lines, and Django's about the API (/health/ and /metrics/ are not traced).
    lines = [line for line in json_lines(output) if line["logger"] == "ledger.views"
             or (line["logger"] in ("django.request", "django.server") and "/api/" in line["message"])]  # fmt: skip
    by_request = Counter()
    for line in lines:
        assert {"trace_id", "span_id", "request_id"} <= set(line), line
        name = line["request_id"].removeprefix("t-")
        span = spans[name]
        assert line["trace_id"] == span.trace_id.hex() and line["span_id"] == span.span_id.hex(), line
        by_request[name] += 1
    assert set(by_request) >= set(EXPECTED) - {"token"} | {"last"}
    messages = {line["message"].split(":")[0] for line in lines if line["logger"] == "django.request"}
    assert messages >= {"Unauthorized", "Bad Request", "Not Found", "Internal Server Error"}
    exported = [r for _, r in receiver.log_records() if r.body.string_value.split(":")[0] in messages]
    assert len(exported) >= 4
    for record in exported:
        name = attributes(record.attributes)["request_id"].removeprefix("t-")
        assert (record.trace_id, record.span_id) == (spans[name].trace_id, spans[name].span_id)


def test_metrics_arrive_within_seconds_under_runserver(runserver):
    assert runserver["metrics_seen"], runserver["output"][-2000:]
    assert runserver["metrics_after"] < 12, runserver["metrics_after"]
    assert "metrics every 5 s" in runserver["output"]


def test_sigterm_flushes_the_last_requests_within_three_seconds(runserver):
    receiver = runserver["receiver"]
    assert runserver["exit_code"] == -signal.SIGTERM  # still "terminated by SIGTERM" to the manager
    assert runserver["stop_seconds"] < 3.5, runserver["stop_seconds"]
    print(f"\nSIGTERM to exit {runserver['stop_seconds']:.2f} s; first metrics {runserver['metrics_after']:.1f} s")
    assert "last" in server_spans(receiver)
    served = sum(p.count for p in latest_points(receiver, "http.server.request.duration").values())
    assert served == len(EXPECTED) + 1  # every traced request, the last one included


def test_metrics_endpoint_is_cached_like_the_health_endpoints(runserver):
    answers = runserver["answers"]
    metrics_headers, health_headers = answers["metrics"][1], answers["health"][1]
    assert answers["metrics"][0] == 200
    assert metrics_headers["Cache-Control"] == health_headers["Cache-Control"] == answers["live"][1]["Cache-Control"]
    assert "no-store" in metrics_headers["Cache-Control"] and "Expires" in metrics_headers


def test_health_json_keeps_the_plans_names(runserver):
    checks = runserver["answers"]["health"][2]["checks"]
    assert {"database", "cache", "disk_space", "memory"} <= set(checks)
    assert "disk" not in checks


def test_nothing_about_the_launcher_to_report(runserver):
    assert "otel_hcv.W001" not in runserver["output"] and "another distro" not in runserver["output"]


def gunicorn(port: int) -> list[str]:
    return [str(BIN / "opentelemetry-instrument"), str(BIN / "gunicorn"), "budget_site.wsgi", "--bind",
            f"127.0.0.1:{port}", "--workers", "2", "--access-logfile", "-"]  # fmt: skip


def uvicorn(port: int) -> list[str]:
    return [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "budget_site.asgi:application",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_server_access_lines_are_json_with_ids_and_the_ip_policy(server, database, tmp_path):
    with OtlpReceiver() as receiver:
        port = free_port()
        command = gunicorn(port) if server == "gunicorn" else uvicorn(port)
        env = project_env(database, **otel_env(receiver), OTEL_METRIC_EXPORT_INTERVAL="500")
        service = ServiceProcess(command, env, port, tmp_path / "server.log", cwd=PROJECT)
        try:
            service.wait_ready(path="/health/live", timeout=90)
            answers = exercise(service.url)
            assert receiver.wait_for(lambda: len(server_spans(receiver)) >= len(EXPECTED))
            time.sleep(1)
        finally:
            service.stop(timeout=30)
        output = service.output()
    assert [answers[name][0] for name in EXPECTED] == [status for _, _, status in EXPECTED.values()]
    spans = server_spans(receiver)
    access_logger = f"{server}.access"
    access = [line for line in json_lines(output) if line["logger"] == access_logger]
    access_for = {line.get("request_id", "").removeprefix("t-"): line for line in access}
    for name, (method, _, status) in EXPECTED.items():
        line = access_for[name]
        assert line["message"].startswith(f"{method} /api/") and line["message"].endswith(f" {status}"), line
        assert line["http.response.status_code"] == status
        assert (line["trace_id"], line["span_id"]) == (spans[name].trace_id.hex(), spans[name].span_id.hex())
        assert line["ip_address"] == "127.0.0.0"  # truncated to its /24 by default
        assert "?" not in line["message"]
    raw_access = [text for text in output.splitlines() if access_logger in text or '"GET /' in text]
    assert not [text for text in raw_access if "127.0.0.1" in text and not text.startswith("{")]
    assert "127.0.0.1:" not in "\n".join(json.dumps(line) for line in access)
    # Django's 4xx lines under a production server carry the ids too (gunicorn: 0 of 11 did).
    for line in json_lines(output):
        if line["logger"] == "django.request":
            assert {"trace_id", "span_id", "request_id"} <= set(line), line
    exported = [
        r for _, r in receiver.log_records() if attributes(r.attributes).get("url.path", "").startswith("/api/")
    ]
    assert len(exported) >= len(EXPECTED)
    assert all(r.trace_id for r in exported)
    assert {attributes(r.attributes).get("ip_address") for r in exported} == {"127.0.0.0"}
    # ASGI too: readable routes, and no error.type on the 4xx.
    assert spans["detail"].name == "GET api/users/me/budgets/{pk}/"
    assert "error.type" not in attributes(spans["unauthorized"].attributes)
