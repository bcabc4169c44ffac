"""ASGI entry point, e.g. ``uvicorn hcv_service.asgi:application`` run from ``example/``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hcv_service.settings")

application = get_asgi_application()
