"""The observable health gauges, read through the pytest plugin's in-memory reader."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psutil
import pytest
from opentelemetry import metrics

from otel_hcv import conf
from otel_hcv.health import gauges
from otel_hcv.health import runner as runner_module
from otel_hcv.health.checks import BaseCheck, CheckResult, DiskCheck, MemoryCheck
from otel_hcv.health.runner import HealthRunner


class FixedCheck(BaseCheck):
    def __init__(self, name: str, healthy: bool = True) -> None:
        self.name = name
        self.healthy = healthy
        self.runs = 0

    def run(self) -> CheckResult:
        self.runs += 1
        return CheckResult.ok() if self.healthy else CheckResult.failing("down")


@pytest.fixture
def runner() -> Iterator[HealthRunner]:
    checks = [
        FixedCheck("database"),
        FixedCheck("cache", healthy=False),
        DiskCheck(["/"], min_free_bytes=1, min_free_percent=0.001),
        MemoryCheck(max_percent=100.0),
    ]
    runner = HealthRunner(checks, conf.Settings(health_check_timeout=2.0))
    previous = runner_module.set_runner(runner)
    yield runner
    runner_module.set_runner(previous)


def latest(otel_capture, name: str) -> dict[tuple, float]:
    """The last value per attribute set (gauge points repeat at every collection)."""
    values = {}
    for point in otel_capture.metric_points(name):
        values[tuple(sorted(point.attributes.items()))] = point.value
    return values


def test_status_per_check_with_its_criticality(otel_capture, runner):
    runner.report()
    assert latest(otel_capture, "hcv.health.status") == {
        (("hcv.health.check", "database"), ("hcv.health.critical", True)): 1,
        (("hcv.health.check", "cache"), ("hcv.health.critical", True)): 0,
        (("hcv.health.check", "disk_space"), ("hcv.health.critical", False)): 1,
        (("hcv.health.check", "memory"), ("hcv.health.critical", False)): 1,
    }


def test_durations_disk_and_memory(otel_capture, runner):
    report = runner.report()
    durations = latest(otel_capture, "hcv.health.check.duration")
    assert durations[(("hcv.health.check", "database"),)] == report.outcomes["database"].result.duration
    assert len(durations) == 4

    total = psutil.disk_usage("/").total
    (free,) = latest(otel_capture, "hcv.health.disk.free").items()
    assert free[0] == (("hcv.disk.path", "/"),) and 0 < free[1] <= total
    (utilization,) = latest(otel_capture, "hcv.health.disk.utilization").values()
    assert 0 < utilization < 1

    (memory,) = latest(otel_capture, "hcv.health.memory.utilization").values()
    assert 0 < memory < 1
    (rss,) = latest(otel_capture, "process.memory.usage").values()
    assert rss == pytest.approx(psutil.Process().memory_info().rss, rel=0.5)


def test_units_follow_opentelemetry_naming(otel_capture, runner):
    runner.report()
    otel_capture.metric_points("hcv.health.status")
    data = otel_capture.metric_reader.get_metrics_data()
    units = {
        metric.name: metric.unit
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if scope.scope.name == "otel_hcv"
    }
    assert {name: units[name] for name, _, _, _ in gauges.GAUGES} == {
        "hcv.health.status": "",
        "hcv.health.check.duration": "s",
        "hcv.health.disk.free": "By",
        "hcv.health.disk.utilization": "1",
        "hcv.health.memory.utilization": "1",
        "process.memory.usage": "By",
    }


def test_no_points_before_the_first_run(otel_capture, runner):
    assert otel_capture.metric_points("hcv.health.status") == []


def test_callbacks_never_run_checks(otel_capture, runner):
    runner.report()
    for _ in range(3):
        otel_capture.metric_points("hcv.health.status")
    assert runner.started_runs["database"] == 1


def test_gauges_follow_the_latest_report(otel_capture, runner):
    runner.report()
    runner._report = None  # force a new run
    cache = next(c for c in runner._checks if c.name == "cache")
    cache.healthy = True
    runner.report()
    status = latest(otel_capture, "hcv.health.status")
    assert status[(("hcv.health.check", "cache"), ("hcv.health.critical", True))] == 1


class BrokenRunner:
    @property
    def latest(self):
        raise RuntimeError("boom")


def test_a_failing_callback_is_logged_once_counted_and_never_raises(otel_capture, caplog):
    previous = runner_module.set_runner(BrokenRunner())  # type: ignore[arg-type]
    gauges._failed_callbacks.discard("hcv.health.status")
    before = gauges.callback_errors["hcv.health.status"]
    try:
        with caplog.at_level(logging.ERROR, logger="otel_hcv.health.gauges"):
            for _ in range(3):
                assert otel_capture.metric_points("hcv.health.status") == []
    finally:
        runner_module.set_runner(previous)
    assert gauges.callback_errors["hcv.health.status"] - before == 3
    failures = [r for r in caplog.records if "hcv.health.status gauge callback failed" in r.getMessage()]
    assert len(failures) == 1
    # Every gauge failed three times (they all read the same runner).
    assert sum(p.value for p in otel_capture.metric_points("hcv.health.gauge.errors")) >= 3 * len(gauges.GAUGES)


def test_register_gauges_is_idempotent(otel_capture, runner):
    gauges.register_gauges(conf.Settings())
    gauges.register_gauges(conf.Settings())
    runner.report()
    points = otel_capture.metric_points("hcv.health.status")
    assert len(points) == 4  # one per check: no second set of instruments


def test_no_refresher_under_the_test_providers():
    assert gauges._registered_for is metrics.get_meter_provider()
    assert not runner_module.get_runner().refreshing


def test_gauge_attributes_pass_the_metric_attribute_allow_list():
    from otel_hcv.attributes import ALLOWED_METRIC_ATTRIBUTES

    assert {gauges.CHECK, gauges.CRITICAL, gauges.DISK_PATH} <= ALLOWED_METRIC_ATTRIBUTES
