"""The example's settings with bench/asgi_urls.py's extra async view (bench/asgi_concurrency.py)."""

from hcv_service.settings import *  # noqa: F403

ROOT_URLCONF = "asgi_urls"
