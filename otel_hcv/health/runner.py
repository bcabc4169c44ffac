"""Running the checks: concurrently, each with a timeout, cached, one run at a time.

- Every check of a run gets its own daemon thread; the run waits at most the check's
  timeout for it. A check that does not answer in time is reported as failing
  ("timed out after 3.0 s") and its thread is left to finish on its own. Daemon threads,
  because a thread stuck in a driver's ``connect()`` must not keep the process from
  exiting (``concurrent.futures`` pools join their workers at exit).
- A check whose previous run is still stuck is not started again: it is reported as
  failing straight away, so a hung database costs one thread, not one per interval.
- Results are reused for ``health_cache_seconds``. When they are stale, the first caller
  runs the checks and every concurrent caller waits for that same run (single flight),
  so the request rate never decides how often the database or the model is asked.
- A background refresher keeps the results fresh for the gauges even when nobody calls
  the endpoint; it is restarted in a forked child (gunicorn workers).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from otel_hcv import lifecycle, state
from otel_hcv.conf import Settings
from otel_hcv.health.checks import MAX_DETAIL_STRING, Check, CheckResult, Detail
from otel_hcv.health.registry import configured_checks, is_critical, registrations_version

logger = logging.getLogger(__name__)

# Names of the stand-in results when no check could run.
CONFIGURATION_CHECK = "health_checks"  # a HEALTH_CHECKS entry cannot be loaded
RUNNER_CHECK = "health_runner"  # a run in flight did not finish in time (should not happen)


def timed_out_message(timeout: float) -> str:
    return f"timed out after {float(timeout)!r} s"


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result in a report, with what the report needs to know about the check."""

    name: str
    critical: bool
    result: CheckResult

    @property
    def healthy(self) -> bool:
        return self.result.healthy


@dataclass(frozen=True)
class HealthReport:
    """The results of one run of all checks."""

    outcomes: Mapping[str, CheckOutcome]
    timestamp: float  # wall clock (epoch seconds) when the run finished
    finished_at: float  # the runner's monotonic clock, for cache expiry

    @property
    def healthy(self) -> bool:
        return all(outcome.healthy for outcome in self.outcomes.values())

    @property
    def ready(self) -> bool:
        return all(outcome.healthy for outcome in self.outcomes.values() if outcome.critical)

    def critical_only(self) -> HealthReport:
        critical = {name: o for name, o in self.outcomes.items() if o.critical}
        return replace(self, outcomes=critical)


def _sanitise(details: Mapping[str, Any], depth: int = 0) -> dict[str, Detail]:
    """Keep numbers, flags, short strings and mappings of those, at most two levels deep."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        key = str(key)[:MAX_DETAIL_STRING]
        if isinstance(value, bool | int | float):
            clean[key] = value
        elif isinstance(value, str):
            clean[key] = value[:MAX_DETAIL_STRING]
        elif isinstance(value, Mapping) and depth < 2:
            clean[key] = _sanitise(value, depth + 1)
    return clean


class _CheckRun:
    """One run of one check, in its own daemon thread."""

    def __init__(self, check: Check, clock: Callable[[], float]) -> None:
        self.check = check
        self.clock = clock
        self.started_at = clock()
        self.done = threading.Event()
        self.result: CheckResult | None = None
        self.thread = threading.Thread(target=self._execute, name=f"otel-hcv-health-{check.name}", daemon=True)

    def _execute(self) -> None:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        start = time.perf_counter()
        try:
            # Probing the database and cache every few seconds would otherwise create a
            # root span per query in every process: noise, not signal.
            with suppress_instrumentation():
                result = self.check.run()
            if not isinstance(result, CheckResult):
                result = CheckResult.ok() if result else CheckResult.failing("check reported a failure")
        except Exception as exc:
            result = CheckResult.failing(f"check raised {type(exc).__name__}"[:MAX_DETAIL_STRING], exc)
        self.result = replace(result, details=_sanitise(result.details), duration=time.perf_counter() - start)
        self.done.set()


@dataclass
class _Flight:
    """A run in progress that concurrent callers wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    report: HealthReport | None = None


ChecksProvider = Callable[[Settings], Sequence[Check]]


class HealthRunner:
    """Runs the checks and caches the report; thread-safe and fork-safe.

    ``checks``: a list of checks, or a function of the settings returning them (default:
    :func:`otel_hcv.health.registry.configured_checks`, rebuilt when the settings or the
    registrations change). ``settings``: the settings object, or a function returning the
    settings in force (default: :func:`otel_hcv.state.current_settings`).
    """

    def __init__(
        self,
        checks: Sequence[Check] | ChecksProvider | None = None,
        settings: Settings | Callable[[], Settings] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if checks is None:
            self._checks_provider: ChecksProvider = configured_checks
        elif callable(checks):
            self._checks_provider = checks
        else:
            fixed = list(checks)
            self._checks_provider = lambda _settings: fixed
        if settings is None:
            self._settings: Callable[[], Settings] = state.current_settings
        elif isinstance(settings, Settings):
            self._settings = lambda: settings
        else:
            self._settings = settings
        self._clock = clock
        self._init_state()
        # How often each check was started in this process: for tests and diagnostics.
        self.started_runs: Counter[str] = Counter()
        _runners.add(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._report: HealthReport | None = None
        self._flight: _Flight | None = None
        self._runs: dict[str, _CheckRun] = {}
        self._checks_key: tuple[Any, ...] | None = None
        self._checks: list[Check] = []
        self._failing: set[str] = set()
        self._setup_error = ""
        self._refresher: threading.Thread | None = None
        self._stop = threading.Event()

    # -- reading ---------------------------------------------------------------------

    @property
    def latest(self) -> HealthReport | None:
        """The last report, however old; never runs anything (for gauge callbacks)."""
        return self._report

    def report(self) -> HealthReport:
        """A report at most ``health_cache_seconds`` old, running the checks if needed.

        Blocks at most about the longest check timeout.
        """
        settings = self._settings()
        with self._lock:
            cached = self._report
            if cached is not None and self._clock() - cached.finished_at < settings.health_cache_seconds:
                return cached
            flight = self._flight
            leader = flight is None
            if leader:
                flight = self._flight = _Flight()
        assert flight is not None
        if not leader:
            # The leader's run ends within the longest timeout; the margin covers scheduling.
            if flight.done.wait(self._longest_timeout(settings) + 5.0) and flight.report is not None:
                return flight.report
            return cached if cached is not None else self._unknown_report(settings)
        report: HealthReport | None = None
        try:
            report = self._run_all(settings)
        finally:
            with self._lock:
                if report is not None:
                    self._report = report
                self._flight = None
            flight.report = report
            flight.done.set()
        assert report is not None  # _run_all returned: an exception would have propagated
        self._log_changes(report)
        return report

    # -- running ---------------------------------------------------------------------

    def _current_checks(self, settings: Settings) -> list[Check]:
        key = (settings, registrations_version())
        if key != self._checks_key:
            self._checks = list(self._checks_provider(settings))
            self._checks_key = key
        return self._checks

    def _timeout_of(self, check: Check, settings: Settings) -> float:
        timeout = getattr(check, "timeout", None)
        return float(timeout) if timeout else settings.health_check_timeout

    def _longest_timeout(self, settings: Settings) -> float:
        return max((self._timeout_of(c, settings) for c in self._checks), default=settings.health_check_timeout)

    def _run_all(self, settings: Settings) -> HealthReport:
        try:
            checks = self._current_checks(settings)
        except Exception as exc:
            # A broken HEALTH_CHECKS entry must not take the endpoint down with a 500. Its
            # message names the entry (configuration, not a secret); logged once, not per run.
            if str(exc) != self._setup_error:
                self._setup_error = str(exc)
                logger.error("otel-hcv: the health checks could not be set up: %s", exc)
            result = CheckResult.failing("a configured check could not be loaded", exc)
            outcome = CheckOutcome(CONFIGURATION_CHECK, True, result)
            return HealthReport({CONFIGURATION_CHECK: outcome}, time.time(), self._clock())

        started = self._clock()
        outcomes: dict[str, CheckOutcome] = {}
        waiting: list[tuple[Check, _CheckRun, float]] = []
        for check in checks:
            timeout = self._timeout_of(check, settings)
            previous = self._runs.get(check.name)
            if previous is not None and not previous.done.is_set():
                # Still stuck since an earlier run: report it failing, start no new thread.
                stuck_for = round(self._clock() - previous.started_at, 3)
                result = CheckResult(False, timed_out_message(timeout), {"running_seconds": stuck_for}, stuck_for)
                outcomes[check.name] = CheckOutcome(check.name, is_critical(check, settings), result)
                continue
            run = _CheckRun(check, self._clock)
            self._runs[check.name] = run
            self.started_runs[check.name] += 1
            run.thread.start()
            waiting.append((check, run, timeout))

        for check, run, timeout in waiting:
            remaining = started + timeout - self._clock()
            if run.done.wait(max(remaining, 0.0)) and run.result is not None:
                result = run.result
            else:
                result = CheckResult(False, timed_out_message(timeout), {}, timeout)
            outcomes[check.name] = CheckOutcome(check.name, is_critical(check, settings), result)

        ordered = {check.name: outcomes[check.name] for check in checks}
        return HealthReport(ordered, time.time(), self._clock())

    def _unknown_report(self, settings: Settings) -> HealthReport:
        result = CheckResult(False, "no result yet", {})
        outcome = CheckOutcome(RUNNER_CHECK, True, result)
        return HealthReport({RUNNER_CHECK: outcome}, time.time(), self._clock())

    def _log_changes(self, report: HealthReport) -> None:
        """Log a check when it starts failing and when it recovers, not on every run."""
        failing = {name for name, outcome in report.outcomes.items() if not outcome.healthy}
        for name in sorted(failing - self._failing):
            outcome = report.outcomes[name]
            # The fixed message and the error type only: exception text can hold a DSN.
            logger.warning(
                "health check %s is failing: %s%s",
                name,
                outcome.result.message,
                f" ({outcome.result.details['error.type']})" if "error.type" in outcome.result.details else "",
                extra={"hcv.health.check": name},
            )
        for name in sorted(self._failing - failing):
            logger.info("health check %s has recovered", name, extra={"hcv.health.check": name})
        self._failing = failing

    # -- background refresh ----------------------------------------------------------

    def start_refresher(self) -> None:
        """Keep the report fresh in the background (idempotent)."""
        with self._lock:
            if self._refresher is not None and self._refresher.is_alive():
                return
            self._stop = threading.Event()
            self._refresher = threading.Thread(target=self._refresh_loop, name="otel-hcv-health-refresher", daemon=True)
            self._refresher.start()

    def stop_refresher(self) -> None:
        with self._lock:
            refresher, self._refresher = self._refresher, None
            self._stop.set()
        if refresher is not None and refresher is not threading.current_thread():
            refresher.join(timeout=1.0)

    @property
    def refreshing(self) -> bool:
        refresher = self._refresher
        return refresher is not None and refresher.is_alive()

    def _refresh_loop(self) -> None:
        stop = self._stop
        if not _wait_for_django(stop):
            return
        failures = 0
        while not stop.is_set():
            try:
                report = self.report()
                settings = self._settings()
                delay = report.finished_at + settings.health_cache_seconds - self._clock()
                failures = 0
            except Exception:
                failures += 1
                if failures == 1:
                    logger.exception("otel-hcv: the health refresher failed; it keeps trying")
                delay = 5.0
            stop.wait(max(delay, 0.05))

    def _after_fork_in_child(self) -> None:
        # The parent's threads do not exist here, and a lock held by one of them at fork
        # time would stay locked forever: start from scratch, refresher included.
        was_refreshing = self._refresher is not None
        started_runs = self.started_runs
        self._init_state()
        self.started_runs = started_runs
        if was_refreshing:
            self.start_refresher()


def _wait_for_django(stop: threading.Event) -> bool:
    """Checks use the ORM and the cache framework: wait until the apps are ready."""
    try:
        from django.apps import apps
    except ImportError:
        return True
    while not apps.ready:
        if stop.wait(0.2):
            return False
    return True


_runners: weakref.WeakSet[HealthRunner] = weakref.WeakSet()


@lifecycle.on_reset
def _reinit_runners_in_child() -> None:
    global _default_lock
    # A lock a parent thread might have held at fork time.
    _default_lock = threading.Lock()
    for runner in list(_runners):
        with contextlib.suppress(Exception):
            runner._after_fork_in_child()


_default: HealthRunner | None = None
_default_lock = threading.Lock()


def get_runner() -> HealthRunner:
    """The runner behind the endpoints and the gauges in this process."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = HealthRunner()
    return _default


def set_runner(runner: HealthRunner | None) -> HealthRunner | None:
    """Replace the process's runner (tests); returns the previous one."""
    global _default
    with _default_lock:
        previous, _default = _default, runner
    return previous
