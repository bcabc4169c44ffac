"""Which checks run: the built-in ones, those named in settings, those registered in code.

Later sources win by name, so a project can replace a built-in check (say ``database``)
with its own: built-in < ``health_checks`` setting < :func:`register`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

from otel_hcv import lifecycle
from otel_hcv.conf import ConfigurationError, Settings
from otel_hcv.health.checks import BaseCheck, Check, CheckResult, FunctionCheck, default_checks

logger = logging.getLogger(__name__)

# Check names become metric attribute values and JSON keys: short and plain.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")

_lock = threading.Lock()


@lifecycle.on_reset
def _new_lock() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at fork time


_registered: dict[str, Check] = {}
_version = 0  # bumped by register/unregister, so cached check lists are rebuilt


def _validate(check: object) -> Check:
    if not isinstance(check, Check):
        raise ConfigurationError(
            f"{check!r} is not a health check: it needs a name, a critical flag and a run() method"
        )
    if not isinstance(check.name, str) or not _NAME.fullmatch(check.name):
        raise ConfigurationError(f"health check name {check.name!r} must be 1-64 letters, digits or _ . : - characters")
    return check


def register(
    check: Check | Callable[[], CheckResult | bool] | None = None,
    *,
    name: str | None = None,
    critical: bool | None = None,
    timeout: float | None = None,
) -> Check | Callable[..., Check]:
    """Add a check to every health run of this process; returns it.

    Takes a :class:`~otel_hcv.health.checks.Check` (``critical``/``timeout`` override its
    own), or a zero-argument function returning a ``CheckResult`` or a bool, named by
    ``name`` (default: the function's name). Also a decorator::

        @health.register(name="payments", critical=False)
        def payments_reachable() -> bool: ...

    A check with the name of an existing one replaces it.
    """
    if check is None:
        return lambda function: register(function, name=name, critical=critical, timeout=timeout)
    if not isinstance(check, Check):
        if not callable(check):
            raise ConfigurationError(f"{check!r} is neither a health check nor a function")
        check = FunctionCheck(
            check,
            getattr(check, "__name__", "") if name is None else name,
            critical=True if critical is None else critical,
            timeout=timeout,
        )
    else:
        if critical is not None:
            check.critical = critical
        if timeout is not None:
            check.timeout = timeout  # type: ignore[attr-defined]
    _validate(check)
    global _version
    with _lock:
        _registered[check.name] = check
        _version += 1
    return check


def unregister(name: str) -> None:
    """Remove a check added with :func:`register` (no error when there is none)."""
    global _version
    with _lock:
        if _registered.pop(name, None) is not None:
            _version += 1


def registered() -> dict[str, Check]:
    with _lock:
        return dict(_registered)


def registrations_version() -> int:
    return _version


def _load(path: str) -> Check:
    """A check from a dotted path naming a Check class, a Check instance or a factory."""
    from django.utils.module_loading import import_string

    try:
        target = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"OTEL_HCV['HEALTH_CHECKS'] entry {path!r} cannot be imported: {exc}") from None
    if isinstance(target, type):
        check = target()
    elif isinstance(target, Check):
        check = target
    elif callable(target):
        # A function returning a CheckResult/bool becomes a check named after it.
        check = FunctionCheck(target, getattr(target, "__name__", path.rsplit(".", 1)[-1]))
    else:
        raise ConfigurationError(f"OTEL_HCV['HEALTH_CHECKS'] entry {path!r} is not a check")
    try:
        return _validate(check)
    except ConfigurationError as exc:
        raise ConfigurationError(f"OTEL_HCV['HEALTH_CHECKS'] entry {path!r}: {exc}") from None


def configured_checks(settings: Settings) -> list[Check]:
    """Built-in checks, then the ``health_checks`` setting's, then registered ones."""
    by_name: dict[str, Check] = {check.name: check for check in default_checks(settings)}
    for path in settings.health_checks:
        check = _load(path)
        by_name[check.name] = check
    by_name.update(registered())
    return list(by_name.values())


# Names an earlier release gave built-in checks, still accepted in HEALTH_NON_CRITICAL.
LEGACY_CHECK_NAMES = {"disk": "disk_space"}


def is_critical(check: Check, settings: Settings) -> bool:
    """False when the check says so or ``health_non_critical`` names it (or its kind).

    ``health_non_critical = ("cache",)`` covers ``cache`` and ``cache.sessions``.
    """
    if not getattr(check, "critical", True):
        return False
    name = check.name
    entries = {LEGACY_CHECK_NAMES.get(entry, entry) for entry in settings.health_non_critical}
    return not any(name == entry or name.startswith(entry + ".") for entry in entries)


__all__ = ["BaseCheck", "configured_checks", "is_critical", "register", "registered", "unregister"]
