"""Gunicorn hooks for bench/overhead.py: SDK-side telemetry accounting, nothing on the request path.

``gunicorn -c bench/gunicorn_conf.py ...`` with ``BENCH_STATS_FILE`` set makes the worker, once
its application is loaded (and with it any OpenTelemetry providers), do two things:

* count, per batch processor (spans and log records), what the SDK hands its exporter, what the
  exporter reports as exported or failed, and what the processor drops because its queue is full.
  The counters replace the processor's own (no-op unless ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``)
  metrics object and wrap its exporter: both are called per batch on the export thread, or per
  dropped item, never per exported item on the request thread;
* time the cyclic garbage collector (``gc.callbacks``: collections and pauses per generation);
* write those counters, the queue lengths and a few interpreter figures as JSON to
  ``BENCH_STATS_FILE`` every ``BENCH_STATS_INTERVAL`` seconds (default 1) from a daemon thread.

``BENCH_GC_FREEZE=1`` also calls ``gc.freeze()`` once the application is loaded (and after the
first request, which trains the model), so that the objects the process starts with are never
traversed again by a full collection: a candidate fix measured as its own variant.

``BENCH_SLOW_MS=N`` times every request server-side (``pre_request`` to ``post_request``) and, for
those over N ms, how much of it the garbage collector took (a diagnostic: costs a few µs a request).

Everything reads SDK internals (``_active_span_processor``, ``_batch_processor``); if they move,
the counters are reported as unavailable instead of failing the worker.
"""

from __future__ import annotations

import bisect
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

_log = logging.getLogger("bench.stats")


class _Counts:
    def __init__(self) -> None:
        self.submitted = 0  # handed to the exporter
        self.exported = 0  # exporter answered SUCCESS
        self.failed = 0  # exporter answered FAILURE or raised
        self.dropped = 0  # queue full
        self.rejected = 0  # after shutdown
        self.batches = 0
        self.export_seconds = 0.0  # wall time inside exporter.export

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class _CountingMetrics:
    """Stands in for the SDK's ProcessorMetrics (opentelemetry.sdk._shared_internal)."""

    def __init__(self, counts: _Counts, inner: Any) -> None:
        self._counts = counts
        self._inner = inner

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        if error_type == "already_shutdown":
            self._counts.rejected += count
        else:
            self._counts.dropped += count
        self._inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self._counts.submitted += count
        self._inner.finish_items(count)


class _CountingExporter:
    """Wraps a span or log exporter; counts items by the result of each ``export`` call."""

    def __init__(self, counts: _Counts, inner: Any) -> None:
        self._counts = counts
        self._inner = inner

    def export(self, batch: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = self._inner.export(batch, *args, **kwargs)
        except Exception:
            self._counts.failed += len(batch)
            raise
        finally:
            self._counts.batches += 1
            self._counts.export_seconds += time.perf_counter() - started
        if getattr(result, "name", "") == "SUCCESS":
            self._counts.exported += len(batch)
        else:
            self._counts.failed += len(batch)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _GcTimer:
    """Counts collections and their pauses per generation (called by the interpreter around each)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_seconds = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info.get("generation", 2)
        took = time.perf_counter() - self._started
        self.count[generation] += 1
        self.seconds[generation] += took
        self.max_seconds[generation] = max(self.max_seconds[generation], took)
        self.collected[generation] += info.get("collected", 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "seconds": self.seconds,
            "max_seconds": self.max_seconds,
            "collected": self.collected,
            "objects": len(gc.get_objects()) if os.environ.get("BENCH_GC_COUNT_OBJECTS") else None,
            "frozen": gc.get_freeze_count(),
        }


def _batch_processors(signal: str) -> list[Any]:
    """The SDK BatchProcessor objects behind the global tracer or logger provider."""
    if signal == "spans":
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        multi = getattr(provider, "_active_span_processor", None)
        processors = getattr(multi, "_span_processors", ())
    else:
        from opentelemetry._logs import get_logger_provider

        provider = get_logger_provider()
        multi = getattr(provider, "_multi_log_record_processor", None)
        processors = getattr(multi, "_log_record_processors", ())
    found = []
    for processor in processors:
        batch = getattr(processor, "_batch_processor", None)
        if batch is not None and hasattr(batch, "_metrics") and hasattr(batch, "_exporter"):
            found.append(batch)
    return found


def _install(signal: str) -> tuple[_Counts, list[Any]] | None:
    try:
        processors = _batch_processors(signal)
    except Exception:
        return None
    counts = _Counts()
    for batch in processors:
        batch._metrics = _CountingMetrics(counts, batch._metrics)
        batch._exporter = _CountingExporter(counts, batch._exporter)
    return counts, processors


def _writer(
    path: str, interval: float, installed: dict[str, tuple[_Counts, list[Any]] | None], gc_timer: _GcTimer
) -> None:
    tmp = f"{path}.tmp"
    while True:
        stats: dict[str, Any] = {
            "pid": os.getpid(),
            "time": time.time(),
            "threads": sorted(t.name for t in threading.enumerate()),
            "allocated_blocks": sys.getallocatedblocks(),
            "gc": gc_timer.as_dict(),
            "slow_requests": _SLOW.as_dict() if _SLOW_SECONDS > 0 else None,
        }
        for signal, entry in installed.items():
            if entry is None or not entry[1]:
                stats[signal] = None
                continue
            counts, processors = entry
            stats[signal] = {
                **counts.as_dict(),
                "processors": len(processors),
                "queued": sum(len(p._queue) for p in processors),
                "queue_capacity": sum(p._max_queue_size for p in processors),
            }
        try:
            with open(tmp, "w") as out:
                json.dump(stats, out)
            os.replace(tmp, path)
        except OSError:
            pass
        time.sleep(interval)


_GC_TIMER = _GcTimer()
_FREEZE = os.environ.get("BENCH_GC_FREEZE") == "1"
_SLOW_SECONDS = float(os.environ.get("BENCH_SLOW_MS", "0")) / 1000


_BUCKETS_MS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200, 500, 1000)


class _SlowRequests:
    """Server-side request durations (pre_request to post_request), and for the slow ones how much
    of their time the garbage collector took; only with ``BENCH_SLOW_MS`` set."""

    def __init__(self) -> None:
        self.requests = 0
        self.slow = 0
        self.slow_seconds = 0.0
        self.slow_with_full_gc = 0
        self.slow_gc_seconds = 0.0
        # Between requests: from one post_request to the next pre_request (accept, HTTP parsing).
        self.gaps = 0
        self.gap_seconds = 0.0
        self.gaps_with_full_gc = 0
        # Server-side durations of all requests: counts per bucket of _BUCKETS_MS (upper bounds).
        self.histogram = [0] * (len(_BUCKETS_MS) + 1)
        self.started = 0.0
        self.finished = 0.0
        self.gc_seconds_at_start = 0.0
        self.full_gc_at_start = 0
        self.full_gc_at_finish = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **{
                key: value
                for key, value in vars(self).items()
                if key not in ("started", "finished", "gc_seconds_at_start", "full_gc_at_start", "full_gc_at_finish")
            },
            "buckets_ms": _BUCKETS_MS,
        }


_SLOW = _SlowRequests()


def post_worker_init(worker: Any) -> None:
    path = os.environ.get("BENCH_STATS_FILE")
    if not path:
        return
    interval = float(os.environ.get("BENCH_STATS_INTERVAL", "1"))
    installed = {"spans": _install("spans"), "logs": _install("logs")}
    gc.callbacks.append(_GC_TIMER)
    if _FREEZE:
        gc.freeze()
    threading.Thread(
        target=_writer, args=(path, interval, installed, _GC_TIMER), name="bench-stats", daemon=True
    ).start()


if _SLOW_SECONDS > 0:

    def pre_request(worker: Any, req: Any) -> None:
        _SLOW.started = time.perf_counter()
        if _SLOW.finished and _SLOW.started - _SLOW.finished >= _SLOW_SECONDS:
            _SLOW.gaps += 1
            _SLOW.gap_seconds += _SLOW.started - _SLOW.finished
            _SLOW.gaps_with_full_gc += _GC_TIMER.count[2] != _SLOW.full_gc_at_finish
        _SLOW.gc_seconds_at_start = sum(_GC_TIMER.seconds)
        _SLOW.full_gc_at_start = _GC_TIMER.count[2]


if _FREEZE or _SLOW_SECONDS > 0:

    def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
        if _FREEZE and not getattr(worker, "_bench_frozen_again", False):
            # Once more after the first request: lazy imports, the model trained on first use.
            worker._bench_frozen_again = True
            gc.freeze()
        if _SLOW_SECONDS > 0:
            took = time.perf_counter() - _SLOW.started
            _SLOW.requests += 1
            _SLOW.histogram[bisect.bisect_left(_BUCKETS_MS, took * 1000)] += 1
            if took >= _SLOW_SECONDS:
                _SLOW.slow += 1
                _SLOW.slow_seconds += took
                _SLOW.slow_gc_seconds += sum(_GC_TIMER.seconds) - _SLOW.gc_seconds_at_start
                _SLOW.slow_with_full_gc += _GC_TIMER.count[2] != _SLOW.full_gc_at_start
            _SLOW.finished = time.perf_counter()
            _SLOW.full_gc_at_finish = _GC_TIMER.count[2]
