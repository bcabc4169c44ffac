"""The real collector killed during load and restarted: requests keep succeeding at the
same speed, memory stays bounded, drops are reported (a metric and a log line), and
telemetry produced after the restart reaches Jaeger and Prometheus."""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import time

import psutil
import pytest

from tests.support.backends import Jaeger, Prometheus, eventually, stack_env, stack_service_env
from tests.support.service import BIN, REPO, ServiceProcess, free_port, manage, post_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LABS = {"age": 51, "sex": "m", "alb": 40.0, "alp": 70.0, "alt": 25.0, "ast": 27.0, "bil": 8.0,
        "che": 8.0, "chol": 5.1, "crea": 85.0, "ggt": 25.0, "prot": 73.0}  # fmt: skip


def stack(*args: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "stack.sh"), *args], check=True, capture_output=True, timeout=120)


def timed(url: str, count: int, headers: dict[str, str] | None = None) -> list[float]:
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        status, _ = post_json(url, json.dumps(LABS), headers)
        durations.append(time.perf_counter() - start)
        assert status == 200
    return durations


@pytest.fixture
def restore_collector():
    yield
    stack("start", "collector")  # whatever happened, leave the stack as we found it


def test_collector_killed_during_load_and_restarted(tmp_path, restore_collector):
    env_stack = stack_env()
    service_name = f"hcv-outage-{secrets.token_hex(3)}"
    env = stack_service_env(
        service_name,
        OTEL_BSP_MAX_QUEUE_SIZE="256",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="64",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
    )
    manage(["migrate", "--noinput"], env)
    port = free_port()
    command = [str(BIN / "opentelemetry-instrument"), str(BIN / "gunicorn"), "hcv_service.wsgi",
               "--bind", f"127.0.0.1:{port}", "--workers", "1"]  # fmt: skip
    service = ServiceProcess(command, env, port, tmp_path / "server.log")
    jaeger, prometheus = Jaeger(env_stack["JAEGER_QUERY_URL"]), Prometheus(env_stack["PROMETHEUS_URL"])
    try:
        service.wait_ready(timeout=90)
        (worker,) = psutil.Process(service.process.pid).children()
        url = f"{service.url}/api/diagnose/"
        timed(url, 50)  # warm up
        before = timed(url, 100)
        rss_before = worker.memory_info().rss

        stack("stop", "collector")
        during = timed(url, 600)  # far more spans than the 256-span queue: drops
        rss_during = worker.memory_info().rss

        stack("start", "collector")
        after_traces = []
        for _ in range(10):
            trace_id = secrets.token_hex(16)
            timed(url, 1, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
            after_traces.append(trace_id)
        total = 50 + 100 + 600 + 10

        # Telemetry produced after the restart arrives.
        eventually(lambda: all(jaeger.trace(t) for t in after_traces), timeout=60)
        job = f'job="{service_name}"'
        # Metrics are cumulative in the process, so even the outage's requests are counted.
        eventually(lambda: prometheus.value(f"sum(hcv_api_requests_total{{{job}}})") == total, timeout=60)
        # The drops are reported as a metric ...
        dropped = eventually(
            lambda: prometheus.value(f'sum(hcv_telemetry_dropped_total{{{job},otel_signal="traces"}})'),
            timeout=60,
        )
    finally:
        service.stop(timeout=30)
    output = service.output()
    # ... and as a log line that summarises instead of repeating per span.
    assert any("Telemetry queue full: dropped" in line for line in output.splitlines()), output[-2000:]
    assert output.count("Queue full, dropping") == 0
    assert dropped > 0
    assert "Traceback" not in output
    median_before, median_during = statistics.median(before), statistics.median(during)
    assert median_during < max(2 * median_before, median_before + 0.02), (median_before, median_during)
    assert rss_during - rss_before < 40 * 1024 * 1024, (rss_before, rss_during)
    print(
        f"\nmedian latency {median_before * 1000:.1f} ms up, {median_during * 1000:.1f} ms down; "
        f"RSS +{(rss_during - rss_before) / 1e6:.1f} MB; {dropped:.0f} spans dropped"
    )
