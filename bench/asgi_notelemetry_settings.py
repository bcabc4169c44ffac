"""bench/notelemetry_settings.py (the uninstrumented baseline) with bench/asgi_urls.py's extra async
view (bench/asgi_concurrency.py)."""

from notelemetry_settings import *  # noqa: F403

ROOT_URLCONF = "asgi_urls"
