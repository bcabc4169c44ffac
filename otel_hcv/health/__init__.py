"""Health checks: an HTTP endpoint and observable gauges.

Public API::

    register(check, *, name=None, critical=None, timeout=None)   add a check (also a decorator)
    unregister(name)
    Check, BaseCheck, CheckResult                                write your own check
    get_runner().report()                                        the (cached) results

Checks named in ``OTEL_HCV["HEALTH_CHECKS"]`` (dotted paths to a Check class, instance or
function) are added too. See docs/health.md.
"""

from otel_hcv.health.checks import (
    AiModelCheck,
    BaseCheck,
    CacheCheck,
    Check,
    CheckResult,
    DatabaseCheck,
    DiskCheck,
    MemoryCheck,
)
from otel_hcv.health.registry import register, unregister
from otel_hcv.health.runner import CheckOutcome, HealthReport, HealthRunner, get_runner

__all__ = [
    "AiModelCheck",
    "BaseCheck",
    "CacheCheck",
    "Check",
    "CheckOutcome",
    "CheckResult",
    "DatabaseCheck",
    "DiskCheck",
    "HealthReport",
    "HealthRunner",
    "MemoryCheck",
    "get_runner",
    "register",
    "unregister",
]
