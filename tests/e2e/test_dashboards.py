"""The Grafana dashboard (grafana/dashboards/*.json): every panel's every query, run against
the real Prometheus of the stack after the example service served known traffic, returns at
least one series."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request

import pytest

from tests.support.backends import Prometheus, eventually, stack_env, stack_service_env
from tests.support.service import REPO, ServiceProcess, free_port, instrumented_runserver, manage, post_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
LABS = {"age": 32, "sex": "m", "alb": 38.5, "alp": 52.5, "alt": 7.7, "ast": 22.1, "bil": 7.5,
        "che": 6.93, "chol": 3.23, "crea": 106.0, "ggt": 12.1, "prot": 69.0}  # fmt: skip
# Grafana fills these in; the test uses what a person looking at this run would pick.
RATE_INTERVAL = "2m"


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                out.append((path.name, panel["title"], target["expr"]))
    return out


def test_there_are_queries_to_check():
    assert DASHBOARDS, "no dashboard in grafana/dashboards"
    assert len(panel_queries()) >= 12


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One service run: successes, a 400, a 500, health checks, and spans dropped by a
    deliberately tiny span queue (so the telemetry-dropped panel has a series too)."""
    stack = stack_env()
    service_name = f"hcv-dash-{secrets.token_hex(3)}"
    env = stack_service_env(
        service_name,
        OTEL_BSP_MAX_QUEUE_SIZE="2",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1",
        OTEL_BSP_SCHEDULE_DELAY="2000",
    )
    manage(["migrate", "--noinput"], env)
    user = json.loads(manage(["create_demo_user", "--username", f"dash-{service_name}", "--json"], env))
    port = free_port()
    service = ServiceProcess(instrumented_runserver(port), env, port, tmp_path_factory.mktemp("dash") / "service.log")
    prometheus = Prometheus(stack["PROMETHEUS_URL"])
    job = f'job="{service_name}"'
    try:
        service.wait_ready()
        url = f"{service.url}/api/diagnose/"
        auth = {"Authorization": f"Token {user['token']}"}
        # Spread over several scrapes, so every rate() has two samples that differ.
        for _ in range(4):
            for body, headers, expected in ((LABS, auth, 200), ({**LABS, "che": -1}, auth, 400),
                                            (LABS, {"X-HCV-Fail": "diagnosis"}, 500)):  # fmt: skip
                status, _ = post_json(url, json.dumps(body), headers)
                assert status == expected
            get(f"{service.url}/health/")
            time.sleep(4)
        eventually(lambda: prometheus.query(f"hcv_health_status{{{job}}}"), timeout=60)
        eventually(lambda: prometheus.query(f"hcv_telemetry_dropped_total{{{job}}}"), timeout=60)
        eventually(lambda: prometheus.query(f'traces_span_metrics_calls_total{{service_name="{service_name}"}}'))
        time.sleep(6)  # one more scrape of everything
    finally:
        service.stop()
    return {"service": service_name, "prometheus": prometheus}


def get(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError:
        pass  # a 503 while a check warms up: the checks ran all the same


def concrete(expr: str, service: str) -> str:
    # The variable stands inside a PromQL regular expression; a service name of letters,
    # digits and dashes matches itself (re.escape's "\-" is no valid PromQL string escape).
    assert re.fullmatch(r"[a-z0-9-]+", service)
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return re.sub(r"\$\{?service\}?", service, expr)


@pytest.mark.parametrize(("dashboard", "title", "expr"), panel_queries(), ids=lambda v: str(v)[:60])
def test_panel_query_returns_series(served, dashboard, title, expr):
    promql = concrete(expr, served["service"])
    assert "$" not in promql, f"unreplaced Grafana variable in {promql}"
    result = eventually(lambda: served["prometheus"].query(promql), timeout=30)
    assert len(result) >= 1, f"{dashboard} / {title}: no series for {promql}"
