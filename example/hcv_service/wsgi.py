"""WSGI entry point, e.g. ``gunicorn hcv_service.wsgi`` run from ``example/``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hcv_service.settings")

application = get_wsgi_application()
