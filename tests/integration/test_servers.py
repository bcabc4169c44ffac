"""Production servers under opentelemetry-instrument: gunicorn with several sync workers,
with and without --preload, and uvicorn for the async path. Every worker exports with
its own service.instance.id; the master exports nothing; no point is lost or doubled.

``HCV_TEST_SPAN_PROCESSOR=fastotel`` runs them with ``SPAN_PROCESSOR="fastotel"`` (the extra
otel-hcv[fastotel] installed)."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from otel_hcv.receiver import OtlpReceiver, attributes
from tests.support.hanging import HangingServer
from tests.support.service import BIN, ServiceProcess, free_port, manage, post_json, service_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LABS = {"age": 40, "sex": "m", "alb": 42.0, "alp": 60.0, "alt": 22.0, "ast": 25.0, "bil": 7.0,
        "che": 8.5, "chol": 5.0, "crea": 80.0, "ggt": 20.0, "prot": 72.0}  # fmt: skip
REQUESTS = 60
SPAN_PROCESSOR = os.environ.get("HCV_TEST_SPAN_PROCESSOR", "sdk")


def otel_env(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_PYTHON_DISTRO": "otel_hcv",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "HCV_SPAN_PROCESSOR": SPAN_PROCESSOR,
    }


def assert_span_processor_in_force(output: str) -> None:
    # A SPAN_PROCESSOR that cannot be used falls back to the SDK's with a warning: not what is tested.
    assert "SPAN_PROCESSOR=" not in output, output[-3000:]


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("servers") / "hcv.sqlite3"
    manage(["migrate", "--noinput"], service_env({}, database=path))
    return path


def gunicorn(port: int, workers: int, preload: bool) -> list[str]:
    command = [str(BIN / "opentelemetry-instrument"), str(BIN / "gunicorn"), "hcv_service.wsgi",
               "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--graceful-timeout", "10"]  # fmt: skip
    return [*command, "--preload"] if preload else command


def uvicorn(port: int, workers: int) -> list[str]:
    return [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "hcv_service.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]  # fmt: skip


def send_concurrently(url: str, count: int) -> list[int]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda _: post_json(url, json.dumps(LABS))[0], range(count)))


def run_server(command, database, tmp_path, receiver) -> ServiceProcess:
    port = (
        int(command[command.index("--bind") + 1].rsplit(":", 1)[1])
        if "--bind" in command
        else int(command[command.index("--port") + 1])
    )
    service = ServiceProcess(command, service_env(otel_env(receiver.endpoint), database), port, tmp_path / "server.log")
    service.wait_ready(timeout=90)
    return service


def last_cumulative_by_instance(receiver: OtlpReceiver, metric: str) -> dict[str, int]:
    """Per service.instance.id, the last exported cumulative sum of ``metric``."""
    latest: dict[tuple[str, tuple], int] = {}
    for resource, point in receiver.metric_points(metric):
        key = (resource["service.instance.id"], tuple(sorted(attributes(point.attributes).items())))
        latest[key] = point.as_int
    totals: dict[str, int] = defaultdict(int)
    for (instance, _), value in latest.items():
        totals[instance] += value
    return dict(totals)


def exporting_instances(receiver: OtlpReceiver) -> set[str]:
    with receiver.lock:
        requests = list(receiver.requests["metrics"]) + list(receiver.requests["traces"])
    instances = set()
    for request in requests:
        for resources in getattr(request, "resource_metrics", None) or request.resource_spans:
            instances.add(attributes(resources.resource.attributes)["service.instance.id"])
    return instances


@pytest.mark.parametrize(
    ("name", "workers", "preload"),
    [("gunicorn", 3, False), ("gunicorn --preload", 3, True), ("uvicorn", 2, None)],
)
def test_every_worker_exports_its_own_points(name, workers, preload, database, tmp_path):
    with OtlpReceiver() as receiver:
        port = free_port()
        command = uvicorn(port, workers) if preload is None else gunicorn(port, workers, preload)
        service = run_server(command, database, tmp_path, receiver)
        try:
            statuses = send_concurrently(f"{service.url}/api/diagnose/", REQUESTS)
            assert statuses == [200] * REQUESTS
            time.sleep(1.5)
        finally:
            exit_code = service.stop(timeout=30)
        output = service.output()
        assert exit_code is not None, output
        assert_span_processor_in_force(output)
        spans = [s for _, s in receiver.spans() if s.name == "hcv.diagnosis"]
        assert len(spans) == REQUESTS, output  # none lost, none doubled
        per_instance = last_cumulative_by_instance(receiver, "hcv.api.requests")
        assert sum(per_instance.values()) == REQUESTS
        instances = exporting_instances(receiver)
        # One instance id per worker process at most, and the master exports nothing.
        assert 1 <= len(instances) <= workers, instances
        span_instances = {r["service.instance.id"] for r, s in receiver.spans() if s.name == "hcv.diagnosis"}
        assert span_instances <= instances
        if preload is not None:
            assert len(span_instances) >= 2, "gunicorn spread 60 concurrent requests over one worker only"


def timed_requests(url: str, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        status, _ = post_json(url, json.dumps(LABS))
        durations.append(time.perf_counter() - start)
        assert status == 200
    return sorted(durations)


@pytest.mark.parametrize("collector", ["absent", "hanging"])
def test_unreachable_collector_neither_slows_nor_blocks_shutdown(collector, database, tmp_path):
    hanging = HangingServer() if collector == "hanging" else None
    endpoint = hanging.endpoint if hanging else f"http://127.0.0.1:{free_port()}"  # nothing listens
    port = free_port()
    env = service_env(
        {**otel_env(endpoint), "OTEL_BSP_MAX_QUEUE_SIZE": "64", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32"}, database
    )
    service = ServiceProcess(gunicorn(port, 1, False), env, port, tmp_path / "server.log")
    try:
        service.wait_ready(timeout=90)
        url = f"{service.url}/api/diagnose/"
        durations = timed_requests(url, 150)  # more spans than the queue holds: drops
        median = durations[len(durations) // 2]
        assert median < 0.25, f"median {median * 1000:.1f} ms with the collector {collector}"
        time.sleep(1)
        started = time.monotonic()
    finally:
        service.stop(timeout=30)
        if hanging:
            hanging.close()
    shutdown_seconds = time.monotonic() - started
    output = service.output()
    assert_span_processor_in_force(output)
    assert shutdown_seconds < 8, f"shutdown took {shutdown_seconds:.1f} s\n{output[-3000:]}"
    print(f"\ncollector {collector}: median {median * 1000:.1f} ms, SIGTERM to exit {shutdown_seconds:.1f} s")
    assert "Traceback" not in output.split("Shutting down")[0] or "otel" not in output
    # Drops are reported once with a count, not once per span.
    reports = [line for line in output.splitlines() if "Telemetry queue full" in line]
    assert 1 <= len(reports) <= 3, output[-3000:]
    assert output.count("Queue full, dropping") == 0
