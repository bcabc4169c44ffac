"""Observable gauges fed from the cached health-check results.

The callbacks run on the SDK's metric-export thread at every collection. They only read
the runner's last report (no I/O, no check run) and never raise: an error is caught,
logged once per gauge and counted in ``hcv.health.gauge.errors``. The background
refresher (started here) keeps that report fresh even when nobody calls ``/health/``.

In Prometheus (through the collector's exporter, which adds unit suffixes):

=============================  =====  =======================================
OpenTelemetry                  unit   Prometheus
=============================  =====  =======================================
hcv.health.status                     hcv_health_status
hcv.health.check.duration      s      hcv_health_check_duration_seconds
hcv.health.disk.free           By     hcv_health_disk_free_bytes
hcv.health.disk.utilization    1      hcv_health_disk_utilization_ratio
hcv.health.memory.utilization  1      hcv_health_memory_utilization_ratio
process.memory.usage           By     process_memory_usage_bytes
=============================  =====  =======================================
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

import otel_hcv.health.checks as checks
from otel_hcv.attributes import INSTRUMENTATION_SCOPE
from otel_hcv.conf import Settings
from otel_hcv.health.runner import HealthReport, get_runner

logger = logging.getLogger(__name__)

CHECK = "hcv.health.check"
CRITICAL = "hcv.health.critical"
# Allow-listed in otel_hcv.attributes.ALLOWED_METRIC_ATTRIBUTES (the SDK view drops any other key).
DISK_PATH = "hcv.disk.path"

_lock = threading.Lock()
_registered_for: object | None = None  # the meter provider the gauges were created with
_failed_callbacks: set[str] = set()
callback_errors: Counter[str] = Counter()  # per gauge; their sum is exported as hcv.health.gauge.errors
_error_counter: Any = None


def _report() -> HealthReport | None:
    return get_runner().latest


def _status(report: HealthReport) -> Iterator[Observation]:
    for name, outcome in report.outcomes.items():
        yield Observation(1 if outcome.healthy else 0, {CHECK: name, CRITICAL: outcome.critical})


def _duration(report: HealthReport) -> Iterator[Observation]:
    for name, outcome in report.outcomes.items():
        yield Observation(outcome.result.duration, {CHECK: name})


def _disk_figures(report: HealthReport) -> Iterator[tuple[str, dict[str, Any]]]:
    for outcome in report.outcomes.values():
        paths = outcome.result.details.get(checks.DISK_PATHS)
        if isinstance(paths, dict):
            yield from ((path, figures) for path, figures in paths.items() if isinstance(figures, dict))


def _disk_free(report: HealthReport) -> Iterator[Observation]:
    for path, figures in _disk_figures(report):
        if checks.FREE_BYTES in figures:
            yield Observation(figures[checks.FREE_BYTES], {DISK_PATH: path})


def _disk_utilization(report: HealthReport) -> Iterator[Observation]:
    for path, figures in _disk_figures(report):
        if checks.UTILIZATION in figures:
            yield Observation(figures[checks.UTILIZATION], {DISK_PATH: path})


def _detail(report: HealthReport, key: str) -> Iterator[Observation]:
    # One memory check per process; if a project adds another, the first one counts.
    for outcome in report.outcomes.values():
        value = outcome.result.details.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield Observation(value)
            return


def _memory_utilization(report: HealthReport) -> Iterator[Observation]:
    return _detail(report, checks.SYSTEM_MEMORY_UTILIZATION)


def _process_memory(report: HealthReport) -> Iterator[Observation]:
    return _detail(report, checks.PROCESS_MEMORY_BYTES)


def _safe(gauge: str, observe: Callable[[HealthReport], Iterable[Observation]]):
    """A callback that reads the cached report and can neither block nor raise."""

    def callback(options: CallbackOptions) -> list[Observation]:
        try:
            report = _report()
            # A list, not a generator: an error must surface here, inside the try.
            return [] if report is None else list(observe(report))
        except Exception:
            callback_errors[gauge] += 1
            if gauge not in _failed_callbacks:
                _failed_callbacks.add(gauge)
                logger.exception("otel-hcv: the %s gauge callback failed; further failures are only counted", gauge)
            with contextlib.suppress(Exception):
                if _error_counter is not None:
                    _error_counter.add(1)
            return []

    return callback


GAUGES: tuple[tuple[str, str, str, Callable[[HealthReport], Iterable[Observation]]], ...] = (
    ("hcv.health.status", "", "1 when the health check passed on its last run, 0 when it failed.", _status),
    ("hcv.health.check.duration", "s", "Duration of the last run of each health check.", _duration),
    ("hcv.health.disk.free", "By", "Free disk space for unprivileged users, per checked path.", _disk_free),
    ("hcv.health.disk.utilization", "1", "Used fraction of the file system, per checked path.", _disk_utilization),
    ("hcv.health.memory.utilization", "1", "Used fraction of the system's memory.", _memory_utilization),
    ("process.memory.usage", "By", "Resident memory of this process (RSS).", _process_memory),
)


def register_gauges(settings: Settings, *, start_refresher: bool = True) -> None:
    """Create the health gauges once per meter provider and start the background refresher.

    Called by :mod:`otel_hcv.bootstrap` once the global MeterProvider exists. Under the
    pytest plugin's in-memory providers (``start_refresher=False``) no refresher is started:
    tests drive the runner themselves, and nothing is exported in the background anyway.
    """
    global _registered_for, _error_counter
    provider = metrics.get_meter_provider()
    with _lock:
        if _registered_for is provider:
            return
        _registered_for = provider
        meter = metrics.get_meter(INSTRUMENTATION_SCOPE)
        _error_counter = meter.create_counter(
            "hcv.health.gauge.errors", unit="{error}", description="Health gauge callbacks that failed."
        )
        for name, unit, description, observe in GAUGES:
            meter.create_observable_gauge(name, callbacks=[_safe(name, observe)], unit=unit, description=description)

    if start_refresher:
        get_runner().start_refresher()
