"""The health checks: one small protocol and the built-in checks.

A check answers one question ("does the database answer?") with a :class:`CheckResult`.
Messages are fixed strings chosen per failure class, never exception text: a driver's
error can name the host, the user or even the DSN with its password, and the message of
a check reaches HTTP callers. The type name of an exception is the most a check reveals.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from otel_hcv.conf import Settings

# A detail is a number, a flag or a short string, or a mapping of those nested at most two
# levels deep (the disk check's figures per path: {"paths": {"/": {"free_bytes": ...}}}).
Detail = int | float | bool | str | Mapping[str, Any]

MAX_DETAIL_STRING = 64

# Keys of the details the gauges read (otel_hcv.health.gauges).
DISK_PATHS = "paths"
FREE_BYTES = "free_bytes"
TOTAL_BYTES = "total_bytes"
FREE_PERCENT = "free_percent"
UTILIZATION = "utilization"
SYSTEM_MEMORY_UTILIZATION = "system_utilization"
PROCESS_MEMORY_BYTES = "process_rss_bytes"
ERROR_TYPE = "error.type"

OK = "ok"


@dataclass(frozen=True)
class CheckResult:
    """The answer of one check run.

    ``duration`` (seconds) is filled in by the runner, which times every run itself.
    """

    healthy: bool
    message: str = OK
    details: Mapping[str, Detail] = field(default_factory=dict)
    duration: float = 0.0

    @classmethod
    def ok(cls, message: str = OK, **details: Detail) -> CheckResult:
        return cls(True, message, details)

    @classmethod
    def failing(cls, message: str, error: BaseException | None = None, **details: Detail) -> CheckResult:
        """A failed check; ``error`` contributes its type name, never its text."""
        if error is not None:
            details[ERROR_TYPE] = type(error).__name__
        return cls(False, message, details)


@runtime_checkable
class Check(Protocol):
    """What the runner needs from a check.

    ``run()`` may block (the runner gives it its own thread and a timeout) and may raise
    (the runner reports "check raised <Type>"). An optional ``timeout`` attribute (seconds)
    overrides the ``health_check_timeout`` setting for this check.
    """

    name: str
    critical: bool

    def run(self) -> CheckResult: ...


class BaseCheck:
    """Convenience base class: set ``name`` (and ``critical``, ``timeout``) and write ``run``."""

    name: str = ""
    critical: bool = True
    timeout: float | None = None

    def run(self) -> CheckResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FunctionCheck(BaseCheck):
    """A check made of a zero-argument function returning a CheckResult or a bool."""

    def __init__(
        self, function: Callable[[], CheckResult | bool], name: str, *, critical: bool = True,
        timeout: float | None = None,
    ) -> None:  # fmt: skip
        self.function = function
        self.name = name
        self.critical = critical
        self.timeout = timeout

    def run(self) -> CheckResult:
        outcome = self.function()
        if isinstance(outcome, CheckResult):
            return outcome
        return CheckResult.ok() if outcome else CheckResult.failing("check reported a failure")


def _suffixed(kind: str, alias: str) -> str:
    # The default alias keeps the monitoring plan's names ("database", "cache").
    return kind if alias == "default" else f"{kind}.{alias}"


class DatabaseCheck(BaseCheck):
    """A real round trip to one database alias: connect, ``SELECT 1``, close.

    Runs in a worker thread of the runner, where Django opens a connection of its own; it
    is closed after every run so that no thread leaves a connection behind.
    """

    def __init__(self, alias: str = "default", connections: Any = None) -> None:
        self.alias = alias
        self.name = _suffixed("database", alias)
        # A ConnectionHandler; tests pass their own to reach a server Django is not set up for.
        self._connections = connections

    def run(self) -> CheckResult:
        from django.db import DatabaseError
        from django.db import connections as django_connections

        connection = (self._connections or django_connections)[self.alias]
        details: dict[str, Detail] = {"alias": self.alias, "vendor": connection.vendor}
        try:
            try:
                connection.ensure_connection()
            except Exception as exc:
                return CheckResult.failing("database unreachable", exc, **details)
            try:
                with connection.cursor() as cursor:
                    # Oracle needs "FROM DUAL"; every other backend has an empty suffix.
                    cursor.execute("SELECT 1" + connection.features.bare_select_suffix)
                    row = cursor.fetchone()
            except DatabaseError as exc:
                return CheckResult.failing("database query failed", exc, **details)
            if row is None or row[0] != 1:
                return CheckResult.failing("database returned an unexpected result", **details)
            return CheckResult.ok("database answered", **details)
        finally:
            # A broken connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                connection.close()


class CacheCheck(BaseCheck):
    """Set, get and delete a unique key in one cache alias."""

    # Short, so a key survives a failed delete only briefly.
    KEY_TIMEOUT = 60

    def __init__(self, alias: str = "default", caches: Any = None) -> None:
        self.alias = alias
        self.name = _suffixed("cache", alias)
        self._caches = caches

    def run(self) -> CheckResult:
        from django.core.cache import caches as django_caches
        from django.core.cache.backends.dummy import DummyCache

        cache = (self._caches or django_caches)[self.alias]
        details: dict[str, Detail] = {"alias": self.alias, "backend": type(cache).__name__}
        if isinstance(cache, DummyCache):
            # Configured on purpose to store nothing: there is nothing that could fail.
            return CheckResult.ok("dummy cache, nothing to check", **details)
        key = f"otel_hcv:health:{uuid.uuid4().hex}"
        value = uuid.uuid4().hex
        try:
            cache.set(key, value, timeout=self.KEY_TIMEOUT)
            read = cache.get(key)
            cache.delete(key)
        except Exception as exc:
            return CheckResult.failing("cache unavailable", exc, **details)
        finally:
            with contextlib.suppress(Exception):
                cache.close()
        if read != value:
            return CheckResult.failing("cache returned a wrong value", **details)
        return CheckResult.ok("cache answered", **details)


class DiskCheck(BaseCheck):
    """Free space of the file systems holding ``paths``, against two thresholds."""

    def __init__(
        self, paths: Sequence[str] = ("/",), min_free_bytes: int = 1024**3, min_free_percent: float = 5.0
    ) -> None:
        # The monitoring plan's name for this check, in the JSON and on the gauges alike.
        self.name = "disk_space"
        self.paths = tuple(paths)
        self.min_free_bytes = min_free_bytes
        self.min_free_percent = min_free_percent

    def run(self) -> CheckResult:
        import psutil

        figures: dict[str, dict[str, int | float]] = {}
        missing = low = False
        for path in self.paths:
            try:
                usage = psutil.disk_usage(path)
            except OSError:
                missing = True
                continue
            # psutil's percent is df's Use%: used / (used + available to unprivileged users).
            free_percent = round(100.0 - usage.percent, 2)
            figures[path] = {
                FREE_BYTES: usage.free,
                TOTAL_BYTES: usage.total,
                FREE_PERCENT: free_percent,
                UTILIZATION: round(usage.percent / 100.0, 4),
            }
            low = low or usage.free < self.min_free_bytes or free_percent < self.min_free_percent
        details: dict[str, Detail] = {
            DISK_PATHS: figures,
            "min_free_bytes": self.min_free_bytes,
            "min_free_percent": self.min_free_percent,
        }
        if missing:
            return CheckResult.failing("disk path not found", **details)
        if low:
            return CheckResult.failing("low disk space", **details)
        return CheckResult.ok("enough disk space", **details)


class MemoryCheck(BaseCheck):
    """System memory utilisation against a threshold, and this process's resident memory."""

    def __init__(self, max_percent: float = 90.0) -> None:
        self.name = "memory"
        self.max_percent = max_percent

    def run(self) -> CheckResult:
        import psutil

        system = psutil.virtual_memory()
        # Process(pid) per run: after a fork the child must not report its parent.
        rss = psutil.Process(os.getpid()).memory_info().rss
        details: dict[str, Detail] = {
            SYSTEM_MEMORY_UTILIZATION: round(system.percent / 100.0, 4),
            "system_used_percent": system.percent,
            "max_percent": self.max_percent,
            PROCESS_MEMORY_BYTES: rss,
        }
        if system.percent >= self.max_percent:
            return CheckResult.failing("high memory usage", **details)
        return CheckResult.ok("memory usage normal", **details)


class AiModelCheck(BaseCheck):
    """Asks the model for a real prediction through a probe callable.

    The probe (dotted path in ``health_model_probe``, e.g. the example's
    ``diagnosis.model.health_probe``) predicts on a fixed, plausible sample and raises when
    the answer is wrong. The check reports the predicted category and the latency.
    """

    def __init__(self, probe: str | Callable[[], Any]) -> None:
        self.name = "ai_model"
        self.probe_path = probe if isinstance(probe, str) else ""
        self._probe: Callable[[], Any] | None = None if isinstance(probe, str) else probe

    def _resolve(self) -> Callable[[], Any]:
        if self._probe is None:
            from django.utils.module_loading import import_string

            self._probe = import_string(self.probe_path)
        return self._probe

    def run(self) -> CheckResult:
        try:
            probe = self._resolve()
        except Exception as exc:
            return CheckResult.failing("model probe could not be imported", exc)
        start = time.perf_counter()
        try:
            prediction = probe()
        except Exception as exc:
            return CheckResult.failing(
                "model gave a wrong answer or failed", exc, latency_seconds=time.perf_counter() - start
            )
        latency = time.perf_counter() - start
        if prediction is None or prediction is False:
            return CheckResult.failing("model gave no prediction", latency_seconds=latency)
        details: dict[str, Detail] = {"latency_seconds": latency}
        category = _category_of(prediction)
        if category is not None:
            details["category"] = category
        probability = _field(prediction, "probability")
        if isinstance(probability, int | float) and not isinstance(probability, bool):
            details["probability"] = float(probability)
        return CheckResult.ok("model answered", **details)


def _field(prediction: Any, name: str) -> Any:
    if isinstance(prediction, Mapping):
        return prediction.get(name)
    return getattr(prediction, name, None)


def _category_of(prediction: Any) -> str | None:
    category = prediction if isinstance(prediction, str) else _field(prediction, "category")
    return None if category is None else str(category)[:MAX_DETAIL_STRING]


def default_checks(settings: Settings) -> list[Check]:
    """The built-in checks for the Django project in force and ``settings``."""
    from django.conf import settings as django_settings

    checks: list[Check] = [DatabaseCheck(alias) for alias in getattr(django_settings, "DATABASES", {})]
    checks += [CacheCheck(alias) for alias in getattr(django_settings, "CACHES", {})]
    checks.append(
        DiskCheck(settings.health_disk_paths, settings.health_disk_min_free_bytes,
                  settings.health_disk_min_free_percent)
    )  # fmt: skip
    checks.append(MemoryCheck(settings.health_memory_max_percent))
    if settings.health_model_probe:
        checks.append(AiModelCheck(settings.health_model_probe))
    return checks
