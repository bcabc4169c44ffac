"""The JSON metrics summary (the plan's ``MetricsView``), read from the SDK's aggregation.

A second, in-process metric reader takes a cumulative snapshot of the diagnosis and API
histograms every few seconds. The summary for the last N seconds is the newest snapshot
minus the newest one older than N seconds. Nothing is kept per request, so memory does
not grow with traffic. Numbers are per process; Prometheus has the service-wide ones.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from otel_hcv import metrics as hcv

SNAPSHOT_INTERVAL_SECONDS = 15.0
RETENTION_SECONDS = 3600.0


@dataclass
class Totals:
    count: int = 0
    successful: int = 0
    errors: int = 0
    duration_sum: float = 0.0

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


def _points(metrics_data: MetricsData, name: str) -> Iterable[HistogramDataPoint]:
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    yield from metric.data.data_points


def snapshot_of(metrics_data: MetricsData, taken_at: float) -> Snapshot:
    snapshot = Snapshot(taken_at)
    for point in _points(metrics_data, "hcv.diagnosis.duration"):
        success = point.attributes.get(hcv.OUTCOME) == "success"
        snapshot.diagnosis.count += point.count
        snapshot.diagnosis.successful += point.count if success else 0
        snapshot.diagnosis.errors += 0 if success else point.count
        snapshot.diagnosis.duration_sum += point.sum
    for point in _points(metrics_data, "hcv.api.request.duration"):
        totals = snapshot.api.setdefault(str(point.attributes.get(hcv.ENDPOINT)), Totals())
        failed = int(point.attributes.get(hcv.HTTP_STATUS, 0)) >= 500
        totals.count += point.count
        totals.errors += point.count if failed else 0
        totals.successful += 0 if failed else point.count
        totals.duration_sum += point.sum
    return snapshot


class _SnapshotStore(MetricExporter):
    """An exporter that keeps cumulative snapshots in memory instead of sending them."""

    def __init__(self) -> None:
        cumulative = AggregationTemporality.CUMULATIVE
        super().__init__(
            preferred_temporality={
                kind: cumulative
                for kind in (
                    Counter,
                    UpDownCounter,
                    Histogram,
                    ObservableCounter,
                    ObservableUpDownCounter,
                    ObservableGauge,
                )
            }
        )
        # Periodic snapshots only: on-demand ones must not push the window's baseline out.
        self.snapshots: deque[Snapshot] = deque(maxlen=int(RETENTION_SECONDS / SNAPSHOT_INTERVAL_SECONDS) + 2)
        self.lock = threading.Lock()
        self.on_demand = threading.local()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        snapshot = snapshot_of(metrics_data, time.monotonic())
        target = getattr(self.on_demand, "target", None)
        if target is not None:
            target.append(snapshot)
            return MetricExportResult.SUCCESS
        with self.lock:
            self.snapshots.append(snapshot)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class SummaryReader(PeriodicExportingMetricReader):
    """Registered as the ``otel_hcv_summary`` metrics exporter entry point."""

    instance: SummaryReader | None = None

    def __init__(self, export_interval_millis: float = SNAPSHOT_INTERVAL_SECONDS * 1000) -> None:
        self.store = _SnapshotStore()
        super().__init__(self.store, export_interval_millis=export_interval_millis)
        SummaryReader.instance = self

    def current(self) -> Snapshot:
        """A snapshot taken now, kept out of the periodic history."""
        taken: list[Snapshot] = []
        self.store.on_demand.target = taken
        try:
            self.collect()
        finally:
            self.store.on_demand.target = None
        return taken[-1] if taken else Snapshot(time.monotonic())

    def summary(self, window_seconds: float) -> dict[str, Any]:
        latest = self.current()
        with self.store.lock:
            snapshots = list(self.store.snapshots)
        cutoff = latest.taken_at - window_seconds
        baseline = next((s for s in reversed(snapshots) if s.taken_at <= cutoff), Snapshot(cutoff))
        return render(latest, baseline, window_seconds)


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
