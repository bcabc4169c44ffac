"""The count of telemetry that never left: ``hcv.telemetry.dropped`` by signal and reason.

A leaf: every module that can lose telemetry (export wrappers, the logging path, the privacy
rules when one of them fails and drops a value) counts here; the composition root observes it.
"""

from __future__ import annotations

import collections
import threading

from opentelemetry.metrics import CallbackOptions, Observation

# The reasons, each counted where it happens:
#   queue_full        the batch queue overflowed (the collector is slow or down)
#   export_failed     the exporter gave up after retries
#   redaction_failed  a privacy rule raised, so the value was dropped rather than exported
REASONS = ("queue_full", "export_failed", "redaction_failed")
SIGNALS = ("traces", "logs", "metrics", "sentry")

# The combinations that can happen start at zero, so their series exist (and rate() works)
# before the first loss.
_dropped: collections.Counter[tuple[str, str]] = collections.Counter(
    {(signal, error): 0 for signal in ("traces", "logs") for error in ("queue_full", "export_failed")}
)
_lock = threading.Lock()


def count_dropped(signal: str, error_type: str, items: int = 1) -> None:
    """Telemetry lost for good: ``signal`` is one of :data:`SIGNALS`, ``error_type`` one of
    :data:`REASONS`."""
    with _lock:
        _dropped[signal, error_type] += items


def dropped_count(signal: str, error_type: str) -> int:
    with _lock:
        return _dropped[signal, error_type]


def dropped_observations(options: CallbackOptions) -> list[Observation]:
    with _lock:
        counts = list(_dropped.items())
    return [Observation(n, {"otel.signal": signal, "error.type": error}) for (signal, error), n in counts]
