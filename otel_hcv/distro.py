"""Entry points for ``opentelemetry-instrument``.

``opentelemetry-instrument python manage.py runserver`` loads a distro, then one
configurator, then the instrumentors. Upstream picks the *first* installed distro and
configurator unless ``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR`` name one, so
when ``opentelemetry-distro`` is installed too, set ``OTEL_PYTHON_DISTRO=otel_hcv``: our
distro also sets ``OTEL_PYTHON_CONFIGURATOR=otel_hcv`` by default. When another distro or
configurator wins anyway, :mod:`otel_hcv.launcher` says so.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_hcv import bootstrap, state

logger = logging.getLogger(__name__)

ENTRY_POINT_NAME = "otel_hcv"


def _django_settings_pending() -> bool:
    """Django is installed but its settings module is not known yet.

    ``manage.py`` and ``wsgi.py`` set ``DJANGO_SETTINGS_MODULE`` only after
    ``sitecustomize`` has run, so the ``OTEL_HCV`` settings cannot be read this early;
    setup then waits for the ``otel_hcv`` app's ``ready()``.
    """
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return False
    try:
        import django  # noqa: F401
    except ImportError:
        return False
    return True


def _log_correlation_requested() -> bool:
    """``OTEL_PYTHON_LOG_CORRELATION=true``: someone's own format strings use
    ``%(otelTraceID)s`` and friends, which upstream's logging instrumentation provides."""
    return os.environ.get("OTEL_PYTHON_LOG_CORRELATION", "").strip().lower() == "true"


class OtelHcvDistro(BaseDistro):
    def _configure(self, **kwargs: Any) -> None:
        state.launch.auto_instrumentation = True
        state.launch.distro_loaded = True
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", ENTRY_POINT_NAME)
        bootstrap.apply_otel_env_defaults()

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name == "django" and _django_settings_pending():
            return  # instrumented by otel_hcv.bootstrap.configure() from the app's ready()
        if entry_point.name == "logging" and not _log_correlation_requested():
            # Our JSON lines and OTLP records read the trace context themselves; upstream's
            # instrumentation would only add a record factory call to every log record (and,
            # with OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=true, a second, unredacted OTLP handler).
            return
        if entry_point.name == "logging":
            # Upstream's instrumentation would add its own OTLP handler, which exports records
            # unredacted; ours (otel_hcv.logging.OtlpLoggingHandler) exports them instead.
            kwargs["enable_log_auto_instrumentation"] = False
        super().load_instrumentor(entry_point, **kwargs)


class OtelHcvConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        state.launch.auto_instrumentation = True  # also when named without our distro
        state.launch.configurator_loaded = True
        if _django_settings_pending():
            return
        bootstrap.configure()
