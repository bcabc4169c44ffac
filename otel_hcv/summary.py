"""The JSON metrics summary (the plan's ``MetricsView``) for the last N seconds.

``record_diagnosis()`` and ``record_api_request()`` add every measurement to running totals
here as well as to the OpenTelemetry instruments. That is a lock and a few additions; a
second SDK metric reader would instead aggregate every measurement of every instrument a
second time (about 100 µs a request in bench/overhead.py). A copy of the totals is kept every
``SNAPSHOT_INTERVAL_SECONDS``, taken lazily by the first measurement or read after the
interval; each copy knows since when its totals were unchanged, so an idle hour does not
stretch the window. The summary is the totals now minus the totals at the window's start,
to within one interval. Memory is bounded by the retention, not by traffic.
Numbers are per process (reset in a forked child); Prometheus has the service-wide ones.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otel_hcv import lifecycle

SNAPSHOT_INTERVAL_SECONDS = 15.0
RETENTION_SECONDS = 3600.0


@dataclass
class Totals:
    count: int = 0
    successful: int = 0
    errors: int = 0
    duration_sum: float = 0.0

    def add(self, duration: float, success: bool) -> None:
        self.count += 1
        self.duration_sum += duration
        if success:
            self.successful += 1
        else:
            self.errors += 1

    def minus(self, other: Totals) -> Totals:
        return Totals(
            self.count - other.count,
            self.successful - other.successful,
            self.errors - other.errors,
            self.duration_sum - other.duration_sum,
        )


@dataclass
class Snapshot:
    taken_at: float
    diagnosis: Totals = field(default_factory=Totals)
    api: dict[str, Totals] = field(default_factory=dict)
    # The totals were the same from this time until taken_at.
    unchanged_since: float = 0.0

    def copy(self, taken_at: float, unchanged_since: float) -> Snapshot:
        return Snapshot(
            taken_at,
            dataclasses.replace(self.diagnosis),
            {endpoint: dataclasses.replace(totals) for endpoint, totals in self.api.items()},
            unchanged_since,
        )


class Summary:
    """Running totals of diagnoses and API calls, and their periodic copies."""

    def __init__(
        self,
        interval_seconds: float = SNAPSHOT_INTERVAL_SECONDS,
        retention_seconds: float = RETENTION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval_seconds
        self.clock = clock
        self.lock = threading.Lock()
        now = clock()
        self.totals = Snapshot(now)
        self.changed_at = now
        self.snapshots: deque[Snapshot] = deque(
            [self.totals.copy(now, now)], maxlen=int(retention_seconds / interval_seconds) + 2
        )

    def _snapshot_if_due(self, now: float) -> None:
        # Called with the lock held, before a new measurement is added.
        if now - self.snapshots[-1].taken_at >= self.interval:
            self.snapshots.append(self.totals.copy(now, self.changed_at))

    def _changing(self) -> None:
        now = self.clock()
        self._snapshot_if_due(now)
        self.changed_at = now

    def add_diagnosis(self, duration: float, success: bool) -> None:
        with self.lock:
            self._changing()
            self.totals.diagnosis.add(duration, success)

    def add_api_call(self, endpoint: str, status_code: int, duration: float) -> None:
        with self.lock:
            self._changing()
            totals = self.totals.api.get(endpoint)
            if totals is None:
                totals = self.totals.api[endpoint] = Totals()
            totals.add(duration, status_code < 500)

    def summary(self, window_seconds: float) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            self._snapshot_if_due(now)
            latest = self.totals.copy(now, self.changed_at)
            cutoff = now - window_seconds
            baseline = next((s for s in reversed(self.snapshots) if s.unchanged_since <= cutoff), None)
        # Younger than the window: everything since the process started counts.
        return render(latest, baseline or Snapshot(cutoff), window_seconds)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def render(latest: Snapshot, baseline: Snapshot, window_seconds: float) -> dict[str, Any]:
    diagnosis = latest.diagnosis.minus(baseline.diagnosis)
    api = {}
    for endpoint, totals in sorted(latest.api.items()):
        delta = totals.minus(baseline.api.get(endpoint, Totals()))
        if delta.count:
            api[endpoint] = {
                "total": delta.count,
                "errors": delta.errors,
                "error_rate": _rate(delta.errors, delta.count),
                "avg_duration": delta.duration_sum / delta.count,
            }
    return {
        "window_seconds": window_seconds,
        "diagnosis_summary": {
            "total": diagnosis.count,
            "successful": diagnosis.successful,
            "success_rate": _rate(diagnosis.successful, diagnosis.count),
            "avg_duration": diagnosis.duration_sum / diagnosis.count if diagnosis.count else None,
        },
        "api": api,
    }


# This process's summary; read it as ``summary.current`` (a forked child gets a new one).
current = Summary()


@lifecycle.on_reset
def _start_afresh() -> None:
    global current
    current = Summary()
