"""The example's settings without otel-hcv: the benchmark's uninstrumented baseline.

``DJANGO_SETTINGS_MODULE=notelemetry_settings`` (with ``bench/`` on ``PYTHONPATH``) serves the same
endpoint with the ``otel_hcv`` app, its ``RequestContextMiddleware`` and its JSON logging removed,
so the only otel-hcv code left on the request path is what ``example/diagnosis/views.py`` calls
directly (``track_api_metrics`` and ``trace_diagnosis``, running against OpenTelemetry's no-op
providers). Logging is Django's default: the view's INFO line is not written anywhere.

The example's own settings always install the app, the middleware and JSON logging, also with
``OTEL_SDK_DISABLED=true``; bench/overhead.py measures both (``baseline`` and ``sdk-disabled``).
"""

from hcv_service.settings import *  # noqa: F403
from hcv_service.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "otel_hcv"]
MIDDLEWARE = [entry for entry in MIDDLEWARE if not entry.startswith("otel_hcv.")]
LOGGING: dict[str, object] = {}
