"""Settings of the HCV diagnosis example service.

Everything that differs between a laptop, CI and a benchmark host comes from the environment:

- ``HCV_SECRET_KEY``: Django's secret key (an insecure development key otherwise).
- ``HCV_DEBUG``: ``1`` turns on Django's debug mode (off by default: the debug error page would echo
  a request's local variables, lab values included, and debug mode slows a benchmark down).
- ``HCV_ALLOWED_HOSTS``: comma-separated host names accepted besides the local ones.
- ``HCV_DATABASE_URL``: ``postgres://user:password@host:port/database`` selects PostgreSQL;
  SQLite otherwise, in ``HCV_SQLITE_PATH`` (default ``example/db.sqlite3``).
- ``HCV_DATABASE_CONN_MAX_AGE``: seconds a PostgreSQL connection is kept open (60; 0 under ASGI).
- ``HCV_REDIS_URL``: ``redis://host:port/db`` selects Redis as the cache; local memory otherwise.
- ``HCV_ALLOW_FAILURE_INJECTION``: ``1`` lets a request with the header ``X-HCV-Fail: diagnosis``
  make its diagnosis fail on purpose (for demos and tests of the error path).
- ``HCV_STORE_DIAGNOSES``: ``0`` stops storing a record of each authenticated user's diagnosis.
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from otel_hcv.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def _env_flag(name: str, default: bool) -> bool:
    """Read a yes/no environment variable; a typo fails loudly instead of meaning "no"."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off.")


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _postgres_settings_from_url(url: str) -> dict[str, object]:
    """Turn ``postgres://user:password@host:port/database?option=value`` into a DATABASES entry.

    Error messages never repeat the URL, because it holds the password.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured("HCV_DATABASE_URL must start with postgres:// or postgresql://.")
    try:
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured("HCV_DATABASE_URL has an invalid port.") from exc
    database_name = unquote(parts.path.lstrip("/"))
    if not database_name:
        raise ImproperlyConfigured(
            "HCV_DATABASE_URL must name a database, as in postgres://user:password@host:5432/hcv."
        )
    try:
        conn_max_age = int(os.environ.get("HCV_DATABASE_CONN_MAX_AGE", "60"))
    except ValueError as exc:
        raise ImproperlyConfigured("HCV_DATABASE_CONN_MAX_AGE must be a whole number of seconds.") from exc
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database_name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        # Unquoted so that a socket directory can be given as %2Fvar%2Frun%2Fpostgresql.
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
        # Reusing connections across requests is what a production deployment does, so a
        # benchmark against PostgreSQL measures queries rather than connection set-up.
        "CONN_MAX_AGE": conn_max_age,
        "CONN_HEALTH_CHECKS": True,
    }


SECRET_KEY = os.environ.get("HCV_SECRET_KEY") or "django-insecure-hcv-example-development-key"

DEBUG = _env_flag("HCV_DEBUG", default=False)

# "testserver" is the host name of Django's and DRF's test clients.
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver", *_env_list("HCV_ALLOWED_HOSTS")]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework.authtoken",
    "otel_hcv",
    "diagnosis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Early, so that the request id and user are known to everything logged further down.
    "otel_hcv.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hcv_service.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

WSGI_APPLICATION = "hcv_service.wsgi.application"
ASGI_APPLICATION = "hcv_service.asgi.application"

_database_url = os.environ.get("HCV_DATABASE_URL")
DATABASES = {
    "default": _postgres_settings_from_url(_database_url)
    if _database_url
    else {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("HCV_SQLITE_PATH") or BASE_DIR / "db.sqlite3",
    }
}

_redis_url = os.environ.get("HCV_REDIS_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis_url}
    if _redis_url
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "hcv-service"}
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# A diagnosis request is a dozen numbers, well under 1 KiB; anything near this limit is a
# mistake or abuse and is answered with 413 before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Anonymous diagnoses are allowed; they simply carry no user id.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PARSER_CLASSES": ["diagnosis.parsers.SizeLimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "diagnosis.exception_handler.api_exception_handler",
}

OTEL_HCV = {
    "SERVICE_NAME": "hcv-diagnosis",
    "HEALTH_MODEL_PROBE": "diagnosis.model.health_probe",
}

LOGGING = logging_config()

HCV_ALLOW_FAILURE_INJECTION = _env_flag("HCV_ALLOW_FAILURE_INJECTION", default=False)
HCV_STORE_DIAGNOSES = _env_flag("HCV_STORE_DIAGNOSES", default=True)
