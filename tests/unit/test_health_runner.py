"""The runner: concurrency, timeouts, hung checks, caching, single flight, refresher, fork."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest
from django.db.utils import ConnectionHandler

from otel_hcv import conf
from otel_hcv.health.checks import BaseCheck, CheckResult, DatabaseCheck
from otel_hcv.health.runner import CONFIGURATION_CHECK, HealthRunner
from tests.support.hanging import HangingServer

FAKE_PASSWORD = "hunter2-fake-password-93"
FAKE_HOST = "db-primary.internal.example"


def settings(**overrides) -> conf.Settings:
    values = {"health_check_timeout": 1.0, "health_cache_seconds": 60.0, "health_non_critical": ("slow",)}
    return conf.Settings(**{**values, **overrides})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingCheck(BaseCheck):
    """Counts its runs; optionally sleeps, blocks on an event, or raises."""

    def __init__(self, name: str, *, sleep: float = 0.0, block: threading.Event | None = None,
                 error: Exception | None = None, healthy: bool = True) -> None:  # fmt: skip
        self.name = name
        self.sleep = sleep
        self.block = block
        self.error = error
        self.healthy = healthy
        self.runs = 0
        self.lock = threading.Lock()

    def run(self) -> CheckResult:
        with self.lock:
            self.runs += 1
        if self.sleep:
            time.sleep(self.sleep)
        if self.block is not None:
            self.block.wait(30)
        if self.error is not None:
            raise self.error
        return CheckResult.ok("fine") if self.healthy else CheckResult.failing("not fine")


def health_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("otel-hcv-health-") and "refresher" not in t.name]


# -- running ----------------------------------------------------------------------------


def test_checks_run_concurrently():
    checks = [CountingCheck(f"c{i}", sleep=0.3) for i in range(5)]
    runner = HealthRunner(checks, settings())
    start = time.perf_counter()
    report = runner.report()
    elapsed = time.perf_counter() - start
    # Five 0.3 s checks side by side; one after the other would take 1.5 s. The margin is for
    # a loaded machine's scheduling.
    assert elapsed < 1.2, elapsed
    assert report.healthy and list(report.outcomes) == [f"c{i}" for i in range(5)]
    assert all(0.29 < o.result.duration < 1.2 for o in report.outcomes.values())


def test_a_blocking_check_times_out_without_holding_up_the_report():
    release = threading.Event()
    stuck = CountingCheck("stuck", block=release)
    runner = HealthRunner([stuck, CountingCheck("quick")], settings(health_check_timeout=0.5))
    try:
        start = time.perf_counter()
        report = runner.report()
        elapsed = time.perf_counter() - start
        assert 0.45 < elapsed < 1.5, elapsed  # the stuck check never returns on its own
        outcome = report.outcomes["stuck"]
        assert (outcome.healthy, outcome.result.message) == (False, "timed out after 0.5 s")
        assert report.outcomes["quick"].healthy
        assert not report.healthy and not report.ready
    finally:
        release.set()


def test_a_hung_check_is_not_started_again_until_its_thread_returns():
    release = threading.Event()
    stuck = CountingCheck("stuck", block=release)
    clock = FakeClock()
    # The fake clock moves only by hand; waiting for threads still takes real time.
    runner = HealthRunner([stuck, CountingCheck("quick")], settings(health_check_timeout=1.0), clock=clock)
    try:
        runner.report()
        threads_after_first = len(health_threads())
        for _ in range(5):
            clock.now += 61  # cache expired
            start = time.perf_counter()
            report = runner.report()
            # No new thread for the stuck check, and no waiting for it either.
            assert time.perf_counter() - start < 0.5
            assert report.outcomes["stuck"].result.message == "timed out after 1.0 s"
            assert report.outcomes["stuck"].result.details["running_seconds"] >= 61
        assert runner.started_runs == {"stuck": 1, "quick": 6}
        assert stuck.runs == 1
        assert len(health_threads()) <= threads_after_first
        release.set()
        deadline = time.monotonic() + 5
        while runner._runs["stuck"].done.is_set() is False and time.monotonic() < deadline:
            time.sleep(0.01)
        clock.now += 61
        assert runner.report().outcomes["stuck"].healthy  # tried again once it returned
        assert runner.started_runs["stuck"] == 2
    finally:
        release.set()


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()  # the stuck driver sees EOF and its thread ends


def test_a_database_that_accepts_and_never_answers(hanging_server, django_db_blocker):
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": str(hanging_server.port),
                "NAME": "hcv",
                "USER": "health",
                "PASSWORD": FAKE_PASSWORD,
            }
        }
    )
    runner = HealthRunner([DatabaseCheck("default", connections=handler)], settings(health_check_timeout=1.0))
    with django_db_blocker.unblock():
        start = time.perf_counter()
        report = runner.report()
        elapsed = time.perf_counter() - start
    assert 0.95 < elapsed < 2.0, elapsed  # the server never answers on its own
    outcome = report.outcomes["database"]
    assert (outcome.healthy, outcome.result.message) == (False, "timed out after 1.0 s")
    assert hanging_server.accepted, "the driver never connected: the test proves nothing"
    assert not runner._runs["database"].done.is_set()  # still stuck in connect()


def test_an_exception_becomes_a_fixed_message_with_the_type_only(caplog):
    error = RuntimeError(f"could not connect to {FAKE_HOST} with password {FAKE_PASSWORD}")
    runner = HealthRunner([CountingCheck("broken", error=error)], settings())
    with caplog.at_level(logging.DEBUG):
        report = runner.report()
    result = report.outcomes["broken"].result
    assert (result.healthy, result.message) == (False, "check raised RuntimeError")
    assert result.details == {"error.type": "RuntimeError"}
    assert FAKE_PASSWORD not in caplog.text and FAKE_HOST not in caplog.text
    assert "health check broken is failing: check raised RuntimeError (RuntimeError)" in caplog.text


def test_state_changes_are_logged_once(caplog):
    check = CountingCheck("flaky", healthy=False)
    clock = FakeClock()
    runner = HealthRunner([check], settings(), clock=clock)
    with caplog.at_level(logging.INFO, logger="otel_hcv.health.runner"):
        for healthy in (False, False, True, True):
            check.healthy = healthy
            runner.report()
            clock.now += 61
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["health check flaky is failing: not fine", "health check flaky has recovered"]


class OddCheck(BaseCheck):
    name = "odd"

    def __init__(self, outcome):
        self.outcome = outcome

    def run(self):
        return self.outcome


def test_results_are_coerced_and_details_sanitised():
    details = {"long": "x" * 500, "object": object(), "nested": {"n": 1, "deeper": {"d": 2, "deepest": {"e": 3}}}}
    runner = HealthRunner([OddCheck(CheckResult(True, "ok", details))], settings())
    result = runner.report().outcomes["odd"].result
    assert result.details == {"long": "x" * 64, "nested": {"n": 1, "deeper": {"d": 2}}}
    assert HealthRunner([OddCheck(False)], settings()).report().outcomes["odd"].result.message == (
        "check reported a failure"
    )
    assert HealthRunner([OddCheck(True)], settings()).report().healthy


def test_per_check_timeout_overrides_the_setting():
    release = threading.Event()
    slow = CountingCheck("slow", block=release)
    slow.timeout = 0.2
    runner = HealthRunner([slow], settings(health_check_timeout=5.0))
    try:
        start = time.perf_counter()
        assert runner.report().outcomes["slow"].result.message == "timed out after 0.2 s"
        assert time.perf_counter() - start < 1.0
    finally:
        release.set()


def test_criticality_comes_from_the_check_and_the_setting():
    runner = HealthRunner([CountingCheck("slow", healthy=False), CountingCheck("db")], settings())
    report = runner.report()
    assert report.outcomes["slow"].critical is False
    assert not report.healthy and report.ready
    assert list(report.critical_only().outcomes) == ["db"]


def test_a_broken_health_checks_setting_reports_instead_of_raising():
    runner = HealthRunner(settings=settings(health_checks=("no_such_module_hcv.Check",)))
    report = runner.report()
    outcome = report.outcomes[CONFIGURATION_CHECK]
    assert (outcome.healthy, outcome.result.message) == (False, "a configured check could not be loaded")


# -- caching and single flight ----------------------------------------------------------


def test_results_are_cached_for_the_interval():
    check = CountingCheck("c")
    clock = FakeClock()
    runner = HealthRunner([check], settings(health_cache_seconds=10.0), clock=clock)
    first = runner.report()
    clock.now += 9.9
    assert runner.report() is first
    clock.now += 0.2
    assert runner.report() is not first
    assert check.runs == 2


def test_200_concurrent_callers_share_one_run():
    checks = [CountingCheck("database", sleep=0.2), CountingCheck("ai_model", sleep=0.1), CountingCheck("cache")]
    runner = HealthRunner(checks, settings(health_cache_seconds=30.0))
    barrier = threading.Barrier(200)
    reports = []

    def call() -> None:
        barrier.wait()
        reports.append(runner.report())

    callers = [threading.Thread(target=call) for _ in range(200)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert len(reports) == 200
    assert {id(report) for report in reports} == {id(reports[0])}
    assert [check.runs for check in checks] == [1, 1, 1]
    assert runner.started_runs == {"database": 1, "ai_model": 1, "cache": 1}


def test_callers_during_a_run_wait_for_it_and_get_its_result():
    check = CountingCheck("c", sleep=0.3)
    runner = HealthRunner([check], settings())
    results = []
    leader = threading.Thread(target=lambda: results.append(runner.report()))
    leader.start()
    time.sleep(0.1)
    follower = runner.report()
    leader.join()
    assert results[0] is follower and check.runs == 1


# -- refresher and fork -----------------------------------------------------------------


def test_the_refresher_keeps_results_fresh_and_stops():
    check = CountingCheck("c")
    runner = HealthRunner([check], settings(health_cache_seconds=0.1))
    runner.start_refresher()
    runner.start_refresher()  # idempotent
    try:
        deadline = time.monotonic() + 5
        while check.runs < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert check.runs >= 4
        assert runner.latest is not None and runner.latest.healthy
        assert len([t for t in threading.enumerate() if t.name == "otel-hcv-health-refresher"]) >= 1
    finally:
        runner.stop_refresher()
    runs = check.runs
    time.sleep(0.4)
    assert check.runs <= runs + 1
    assert not runner.refreshing


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_fresh_and_restarts_the_refresher():
    release = threading.Event()
    stuck = CountingCheck("stuck", block=release)
    runner = HealthRunner([stuck], settings(health_check_timeout=0.2, health_cache_seconds=0.2))
    runner.report()  # "stuck" hangs in the parent
    runner.start_refresher()
    parent_report, parent_hung_run = runner.latest, runner._runs["stuck"]
    assert parent_report is not None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            # The child's restarted refresher may already be running: what counts is that
            # nothing of the parent's (its report, its hung run) is left.
            fresh = runner.latest is not parent_report and runner._runs.get("stuck") is not parent_hung_run
            time.sleep(0.6)
            # The parent's hung run does not exist here: the child runs the check itself.
            started = runner.started_runs["stuck"] >= 2
            os.write(write_end, f"{fresh} {runner.refreshing} {started}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        _, status = os.waitpid(pid, 0)
        answer = os.read(read_end, 100).decode()
    finally:
        os.close(read_end)
        release.set()
        runner.stop_refresher()
    assert answer == "True True True", answer
    assert os.waitstatus_to_exitcode(status) == 0
