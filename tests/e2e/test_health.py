"""Health checks end to end: the example service under opentelemetry-instrument and gunicorn
(two pre-forked workers) against the stack's PostgreSQL and Redis, gauges read back from
Prometheus through the collector, the alert rules loaded by Prometheus.

gunicorn rather than runserver: runserver checks migrations before it serves, which would
hang on purpose-hung databases before the health endpoint could be asked anything.

The service imports this module for two test hooks (``HCV_HEALTH_CHECKS`` and
``HCV_HEALTH_MODEL_PROBE``): a check and a model probe that append one line per run to a
file, so the test can count how often each process ran them.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from otel_hcv.health.checks import BaseCheck, CheckResult
from tests.support.backends import Prometheus, eventually, get_json, stack_env
from tests.support.hanging import HangingServer
from tests.support.service import BIN, REPO, ServiceProcess, free_port, service_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TOKEN = "e2e-health-token-" + secrets.token_hex(4)
FAKE_PASSWORD = "hunter2-e2e-fake-password"
COUNT_FILE_VARIABLE = "HCV_E2E_HEALTH_COUNT_FILE"
RULE_GROUPS = {"hcv-health", "hcv-diagnosis", "hcv-telemetry"}


# -- hooks imported by the service process -----------------------------------------------


def _count(kind: str) -> None:
    path = os.environ.get(COUNT_FILE_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as out:  # one short append: atomic across processes
            out.write(f"{kind} {os.getpid()} {time.time():.3f}\n")


class CountingCheck(BaseCheck):
    """Counts its runs; named in HCV_HEALTH_CHECKS."""

    name = "counting"
    critical = False

    def run(self) -> CheckResult:
        _count(self.name)
        time.sleep(float(os.environ.get("HCV_E2E_COUNTING_SLEEP", "0")))
        return CheckResult.ok("counted")


def counting_model_probe() -> Any:
    """The example's model probe, counted; named in HCV_HEALTH_MODEL_PROBE."""
    _count("ai_model")
    from diagnosis.model import health_probe

    return health_probe()


# -- helpers -----------------------------------------------------------------------------


def gunicorn(port: int, workers: int = 2, threads: int = 16) -> list[str]:
    return [
        str(BIN / "opentelemetry-instrument"),
        sys.executable, "-m", "gunicorn", "hcv_service.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        "--graceful-timeout", "5", "--timeout", "60",
    ]  # fmt: skip


def get(url: str, token: str | None = None, timeout: float = 30.0) -> tuple[int, dict[str, Any], float]:
    """(status, JSON body, seconds taken)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw), time.perf_counter() - start


def stack_sh(*args: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "stack.sh"), *args], check=True, timeout=120)


class Service:
    def __init__(self, process: ServiceProcess, name: str, count_file: Path) -> None:
        self.process = process
        self.url = process.url
        self.name = name
        self.count_file = count_file

    def runs(self) -> list[tuple[str, int, float]]:
        if not self.count_file.exists():
            return []
        text = self.count_file.read_text()
        # Only complete lines: a worker may be appending right now.
        lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
        return [(kind, int(pid), float(at)) for kind, pid, at in (line.split() for line in lines)]

    def workers(self) -> list[Any]:
        import psutil

        return psutil.Process(self.process.process.pid).children()


def start_service(tmp_path: Path, stack: dict[str, str], **extra: str) -> Service:
    name = f"hcv-health-e2e-{secrets.token_hex(3)}"
    count_file = tmp_path / "runs.txt"
    env = service_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": stack["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "OTEL_SERVICE_NAME": name,
            "OTEL_PYTHON_DISTRO": "otel_hcv",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "OTEL_BLRP_SCHEDULE_DELAY": "500",
            "HCV_DATABASE_URL": stack["HCV_DATABASE_URL"],
            "HCV_REDIS_URL": stack["HCV_REDIS_URL"],
            "HCV_HEALTH_TOKEN": TOKEN,
            "HCV_HEALTH_CACHE_SECONDS": "1",
            "HCV_HEALTH_CHECKS": "tests.e2e.test_health.CountingCheck",
            "HCV_HEALTH_MODEL_PROBE": "tests.e2e.test_health.counting_model_probe",
            # The mechanism is under test, not this machine's free space.
            "HCV_HEALTH_DISK_MIN_FREE_BYTES": "1",
            "HCV_HEALTH_DISK_MIN_FREE_PERCENT": "0.01",
            "HCV_HEALTH_MEMORY_MAX_PERCENT": "99.9",
            COUNT_FILE_VARIABLE: str(count_file),
            # The service runs in example/; the repository root makes this module importable.
            "PYTHONPATH": str(REPO),
            **extra,
        }
    )
    port = free_port()
    process = ServiceProcess(gunicorn(port), env, port, tmp_path / "service.log")
    try:
        process.wait_ready("/health/live")
    except Exception:
        process.stop()
        raise
    return Service(process, name, count_file)


@pytest.fixture(scope="module")
def stack() -> dict[str, str]:
    return stack_env()


@pytest.fixture(scope="module")
def prometheus(stack) -> Prometheus:
    return Prometheus(stack["PROMETHEUS_URL"])


@pytest.fixture(scope="module")
def service(stack, tmp_path_factory) -> Iterator[Service]:
    running = start_service(tmp_path_factory.mktemp("health"), stack)
    yield running
    running.process.stop()


# -- all healthy -------------------------------------------------------------------------


def test_all_healthy_gives_200(service):
    # Until every worker's first run is in: a cold model (import, training) can miss the
    # 3 s timeout of that first run on a busy machine, and /health/ready then rightly says 503.
    def every_worker_healthy():
        answers = [get(f"{service.url}/health/ready", token=TOKEN) for _ in range(6)]
        return all(status == 200 for status, _, _ in answers)

    eventually(every_worker_healthy, timeout=45)
    status, body, _ = get(f"{service.url}/health/")
    assert status == 200
    assert body["status"] == "healthy"
    names = ("database", "cache", "disk_space", "memory", "ai_model", "counting")
    assert body["checks"] == {name: {"healthy": True, "message": "ok"} for name in names}
    assert get(f"{service.url}/health/live")[0] == 200


def test_authorised_details_from_real_postgresql_redis_and_model(service):
    status, body, _ = get(f"{service.url}/health/", token=TOKEN)
    assert status == 200
    checks = body["checks"]
    assert checks["database"]["details"] == {"alias": "default", "vendor": "postgresql"}
    assert checks["cache"]["details"] == {"alias": "default", "backend": "RedisCache"}
    assert checks["ai_model"]["details"]["category"] == "0=Blood Donor"
    assert 0 < checks["ai_model"]["details"]["latency_seconds"] < 3
    text = json.dumps(body)
    assert "hcv:hcv@" not in text and "127.0.0.1" not in text and "55432" not in text


def test_health_gauges_reach_prometheus(service, prometheus):
    job = f'job="{service.name}"'

    expected = {"database", "cache", "ai_model", "disk_space", "memory", "counting"}

    def statuses():
        # Every check of every worker reported, and healthy: a check slowed past its
        # budget by a loaded machine reads 0 for a round, then 1 again.
        result = prometheus.query(f"hcv_health_status{{{job}}}")
        checks = {r["metric"]["hcv_health_check"] for r in result}
        return result if expected <= checks and all(r["value"][1] == "1" for r in result) else None

    result = eventually(statuses, timeout=90)
    critical = {r["metric"]["hcv_health_check"]: r["metric"]["hcv_health_critical"] for r in result}
    assert critical["database"] == "true" and critical["disk_space"] == "false" and critical["counting"] == "false"
    for series in (
        "hcv_health_check_duration_seconds",
        'hcv_health_disk_free_bytes{hcv_disk_path="/"}',
        'hcv_health_disk_utilization_ratio{hcv_disk_path="/"}',
        "hcv_health_memory_utilization_ratio",
        "process_memory_usage_bytes",
    ):
        selector = series.replace("}", f",{job}}}") if "}" in series else f"{series}{{{job}}}"
        assert eventually(lambda s=selector: prometheus.query(s), timeout=30), selector


# -- Redis stopped -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules_loaded(prometheus) -> None:
    """Make the running Prometheus read rules.yml as it is now (--web.enable-lifecycle)."""
    request = urllib.request.Request(f"{prometheus.url}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass


def test_redis_stopped_gives_503_and_the_gauge_reads_0_in_prometheus(service, prometheus, rules_loaded):
    job = f'job="{service.name}"'
    cache_status = f'hcv_health_status{{{job},hcv_health_check="cache"}}'
    assert eventually(lambda: prometheus.value(f"min({cache_status})") == 1, timeout=60)
    stack_sh("stop", "redis")
    try:
        _, body, _ = eventually(lambda: (r := get(f"{service.url}/health/")) and r[0] == 503 and r, timeout=30)
        assert body["status"] == "unhealthy"
        assert body["checks"]["cache"] == {"healthy": False, "message": "failing"}
        assert body["checks"]["database"] == {"healthy": True, "message": "ok"}
        # Two workers, each with its own cached results: ask until both have noticed.
        authorised = eventually(
            lambda: (c := get(f"{service.url}/health/", token=TOKEN)[1]["checks"]["cache"]) and not c["healthy"] and c,
            timeout=10,
        )
        assert authorised["message"] == "cache unavailable"
        assert authorised["details"]["error.type"] == "ConnectionError"
        assert "56379" not in json.dumps(authorised)
        assert eventually(lambda: get(f"{service.url}/health/ready")[0] == 503, timeout=10)  # cache is critical

        # Every worker's gauge reads 0 in Prometheus, through the collector.
        assert eventually(lambda: prometheus.value(f"max({cache_status})") == 0, timeout=60)

        # ... and the alert rule sees it: pending (it fires after `for: 1m`).
        def pending():
            alerts = get_json(f"{prometheus.url}/api/v1/alerts")["data"]["alerts"]
            return [
                a for a in alerts
                if a["labels"]["alertname"] == "HcvHealthCheckFailing"
                and a["labels"].get("job") == service.name and a["labels"].get("hcv_health_check") == "cache"
            ]  # fmt: skip

        (alert, *_) = eventually(pending, timeout=60)
        assert alert["state"] in ("pending", "firing")
        assert alert["labels"]["severity"] == "critical"
    finally:
        stack_sh("start", "redis")
    assert eventually(lambda: get(f"{service.url}/health/")[0] == 200, timeout=30)
    assert eventually(lambda: prometheus.value(f"min({cache_status})") == 1, timeout=60)


def test_prometheus_loaded_every_alert_rule(prometheus, rules_loaded):
    def groups():
        found = {g["name"]: g for g in get_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]}
        return found if set(found) >= RULE_GROUPS else None

    found = eventually(groups, timeout=30)
    names = {rule["name"] for name in RULE_GROUPS for rule in found[name]["rules"]}
    assert names == {
        "HcvHealthCheckFailing", "HcvHealthCheckDegraded", "HcvDiagnosisErrorRateHigh", "HcvDiagnosisLatencyHigh",
        "HcvTelemetryExportFailing", "HcvTelemetryRefused", "HcvSdkTelemetryDropped", "HcvCollectorDown",
    }  # fmt: skip

    def evaluated_without_error():
        current = {g["name"]: g for g in get_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]}
        rules = [rule for name in RULE_GROUPS for rule in current[name]["rules"]]
        return rules if all(rule["health"] == "ok" for rule in rules) else None

    assert eventually(evaluated_without_error, timeout=30)


def test_the_metrics_the_telemetry_rules_read_exist(service, prometheus):
    """The exporter failure series appear only once something fails; these always exist."""
    job = f'job="{service.name}"'
    for selector in (
        f"hcv_telemetry_dropped_total{{{job}}}",  # otel-hcv's loss counter, zero from the start
        'otelcol_receiver_refused_metric_points{job="otel-collector",receiver="otlp"}',
        'otelcol_receiver_failed_metric_points{job="otel-collector",receiver="otlp"}',
        'up{job="otel-collector"}',
    ):
        assert eventually(lambda s=selector: prometheus.query(s), timeout=60), selector


# -- load: 200 concurrent requests -------------------------------------------------------


LOAD_INTERVAL = 10.0
COUNTING_SLEEP = 2.0


@pytest.fixture
def slow_check_service(stack, tmp_path) -> Iterator[Service]:
    running = start_service(
        tmp_path, stack, HCV_HEALTH_CACHE_SECONDS=str(LOAD_INTERVAL), HCV_E2E_COUNTING_SLEEP=str(COUNTING_SLEEP)
    )
    yield running
    running.process.stop()


def test_200_concurrent_requests_run_each_check_once_per_interval(slow_check_service):
    """200 requests land while the results are being refreshed (a 2 s check keeps the run in
    flight): they wait for that one run instead of starting their own."""
    service = slow_check_service

    def counting_runs() -> dict[int, list[float]]:
        runs: dict[int, list[float]] = defaultdict(list)
        for kind, pid, at in service.runs():
            if kind == "counting":
                runs[pid].append(at)
        return runs

    # Both workers ran their checks at start-up; wait for the first refresh to begin.
    eventually(lambda: len(counting_runs()) == 2, timeout=30)
    eventually(lambda: any(len(starts) == 2 for starts in counting_runs().values()), timeout=LOAD_INTERVAL + 10)

    barrier = threading.Barrier(200)

    def request(_: int) -> tuple[int, float]:
        barrier.wait()
        status, body, took = get(f"{service.url}/health/", token=TOKEN, timeout=60)
        if status != 200:
            failures.append(body)
        return status, took

    failures: list[dict[str, Any]] = []

    burst_start = time.monotonic()
    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(request, range(200)))
    burst = time.monotonic() - burst_start
    time.sleep(COUNTING_SLEEP + 0.5)  # let any run in flight finish

    assert [status for status, _ in answers] == [200] * 200, failures[:1]
    latencies = sorted(took for _, took in answers)
    waited = sum(1 for took in latencies if took > 0.5)
    runs: dict[tuple[str, int], list[float]] = defaultdict(list)
    for kind, pid, at in service.runs():
        runs[(kind, pid)].append(at)
    counts = {f"{kind}@{pid}": len(starts) for (kind, pid), starts in sorted(runs.items())}
    print(
        f"\n200 concurrent /health/ requests in {burst:.2f} s (median {latencies[100]:.3f} s, "
        f"max {latencies[-1]:.3f} s; {waited} waited for the run in flight); runs per check and worker "
        f"since start-up: {counts}"
    )
    assert waited > 0, "the burst missed the refresh: the test proves nothing"
    # Start-up plus one refresh, per check and per worker, whatever the request rate.
    assert set(counts.values()) <= {1, 2} and sum(counts.values()) <= 8, counts
    assert {kind for kind, _ in runs} == {"counting", "ai_model"}
    for (kind, pid), starts in runs.items():
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert all(gap >= LOAD_INTERVAL for gap in gaps), (kind, pid, gaps)


# -- a hung database ---------------------------------------------------------------------


@pytest.fixture
def hung_database_service(stack, tmp_path) -> Iterator[tuple[Service, HangingServer]]:
    server = HangingServer()
    url = f"postgres://hcv:{FAKE_PASSWORD}@127.0.0.1:{server.port}/hcv"
    try:
        running = start_service(tmp_path, stack, HCV_DATABASE_URL=url)
        try:
            yield running, server
        finally:
            running.process.stop()
    finally:
        server.close()


def test_a_hanging_database_answers_within_the_timeout(hung_database_service):
    service, server = hung_database_service

    def check(body: dict[str, Any]) -> None:
        database = body["checks"]["database"]
        assert (database["healthy"], database["message"]) == (False, "timed out after 3.0 s")
        assert FAKE_PASSWORD not in json.dumps(body) and str(server.port) not in json.dumps(body)

    # The first request: the workers' first runs are in flight or just done.
    status, body, first = get(f"{service.url}/health/", token=TOKEN)
    assert status == 503
    check(body)
    # The rest of the service is fine (once the model is warm in both workers).
    eventually(
        lambda: all(get(f"{service.url}/health/", token=TOKEN)[1]["checks"]["ai_model"]["healthy"] for _ in range(6)),
        timeout=30,
    )
    latencies = [first]
    for _ in range(4):
        time.sleep(1.2)  # past the 1 s cache: every request finds stale results
        status, body, took = get(f"{service.url}/health/", token=TOKEN)
        latencies.append(took)
        assert status == 503
        check(body)
        assert body["checks"]["cache"]["healthy"] and body["checks"]["ai_model"]["healthy"]
    print(f"\n/health/ latencies with a hung database: {', '.join(f'{t:.3f}' for t in latencies)} s")
    assert max(latencies) < 4.5, latencies
    assert max(latencies[1:]) < 1.0, latencies  # the stuck check is not waited for again
    assert server.accepted, "the service never connected to the hanging server"

    live_status, _, live_took = get(f"{service.url}/health/live")
    assert live_status == 200 and live_took < 1.0
    assert get(f"{service.url}/health/ready")[0] == 503

    # The stuck check is not started again while it hangs: threads do not pile up.
    threads_then = sum(worker.num_threads() for worker in service.workers())
    time.sleep(6)  # several more refresh intervals
    threads_now = sum(worker.num_threads() for worker in service.workers())
    print(f"worker threads: {threads_then} -> {threads_now}; connections to the hung server: {len(server.accepted)}")
    assert threads_now <= threads_then + 2
    assert len(server.accepted) <= 2 * len(service.workers())  # one stuck connect per worker
