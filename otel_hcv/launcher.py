"""Saying so when ``opentelemetry-instrument`` set the process up without otel-hcv.

The launcher loads the *first* installed distro and configurator unless
``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR`` name one. With another distro
installed (``opentelemetry-distro`` is the usual one) it may pick that one, and the
symptoms look unrelated: nothing exported, upstream's "Configuration of otel_hcv not
loaded", or ``manage.py`` failing on ``ALLOWED_HOSTS`` because upstream's Django
instrumentation configured empty settings before ``manage.py`` named its own.

:func:`check_at_launch` runs inside the launcher whichever distro won (an
``opentelemetry_pre_instrument`` entry point, before any instrumentation) and logs one
error naming the fix; the ``otel_hcv.W001`` system check says the same to ``manage.py``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from otel_hcv import lifecycle, state

logger = logging.getLogger("otel_hcv")

ENTRY_POINT_NAME = "otel_hcv"
FIX = (
    "set OTEL_PYTHON_DISTRO=otel_hcv (with OTEL_PYTHON_CONFIGURATOR=otel_hcv where another configurator "
    "is named), or uninstall the other distro (pip uninstall opentelemetry-distro)"
)
# Set once reported, so a server's child processes (runserver's, uvicorn's workers) stay quiet.
REPORTED_VARIABLE = "OTEL_HCV_LAUNCHER_REPORTED"
SYSTEM_CHECK_ID = "otel_hcv.W001"
# The lifecycle.once() key of the report.
REPORT_ONCE = "launcher.report"

def auto_instrumentation_ran() -> bool:
    """``opentelemetry-instrument`` (or a call of its ``initialize()``) set up this process."""
    return "opentelemetry.instrumentation.auto_instrumentation._load" in sys.modules


def _other_entry_points(group: str) -> list[str]:
    from importlib.metadata import entry_points

    return [entry_point.name for entry_point in entry_points(group=group) if entry_point.name != ENTRY_POINT_NAME]


def problem() -> str | None:
    """What the launcher did instead of loading otel-hcv, or None when all is well."""
    if not auto_instrumentation_ran():
        return None
    if not state.launch.distro_loaded:
        chosen = os.environ.get("OTEL_PYTHON_DISTRO") or ", ".join(_other_entry_points("opentelemetry_distro"))
        return (
            f"opentelemetry-instrument loaded another distro ({chosen or 'its default'}) instead of otel-hcv's, "
            "so otel-hcv's defaults and its deferred Django set-up are not in force: expect nothing exported, "
            "or manage.py failing with errors that look unrelated (\"You must set settings.ALLOWED_HOSTS\")"
        )
    if not state.launch.configurator_loaded:
        chosen = os.environ.get("OTEL_PYTHON_CONFIGURATOR") or ", ".join(
            _other_entry_points("opentelemetry_configurator")
        )
        return (
            f"opentelemetry-instrument loaded another configurator ({chosen or 'none'}) instead of otel-hcv's, "
            "so otel-hcv's providers, redaction and exporters are not in force"
        )
    return None


def report(text: str | None = None) -> bool:
    """Log ``text`` (default: :func:`problem`) as one error line, once per process tree."""
    text = text or problem()
    if not text or os.environ.get(REPORTED_VARIABLE) or not lifecycle.once(REPORT_ONCE):
        return False
    os.environ[REPORTED_VARIABLE] = "1"
    # Before logging is configured this reaches stderr through logging's last resort.
    logger.error("otel-hcv: %s. Fix: %s.", text, FIX)
    return True


def check_at_launch() -> None:
    """The ``opentelemetry_pre_instrument`` entry point: runs under every distro."""
    try:
        report()
    except Exception:  # the launcher must start the program whatever happens here
        return


def system_check(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Django system check ``otel_hcv.W001``: the launcher set up the process without otel-hcv."""
    from django.core import checks

    text = problem()
    if not text:
        return []
    return [checks.Warning(f"otel-hcv: {text}.", hint=f"{FIX[0].upper()}{FIX[1:]}.", id=SYSTEM_CHECK_ID)]
