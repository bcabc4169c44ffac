"""One typed, validated settings object for the whole package.

Sources, later ones winning: built-in defaults, the ``OTEL_HCV`` dict in Django
settings (when Django is configured), then ``HCV_*`` environment variables. Standard
``OTEL_*`` variables are not read here: they keep their upstream meaning and are read
by the OpenTelemetry SDK itself; this package only supplies defaults for them
(see :func:`otel_hcv.bootstrap.apply_otel_env_defaults`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SERVER_MIDDLEWARES = ("otel_hcv", "upstream")
SPAN_PROCESSORS = ("sdk", "fastotel")


class ConfigurationError(ValueError):
    """A setting has a wrong name, type or value; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    service_name: str = "hcv-diagnosis"
    service_version: str = ""
    environment: str = "development"
    # Pseudonymise user ids on spans and logs (keyed hash); False puts raw ids on spans.
    pseudonymize_user_ids: bool = True
    # HMAC key for user-id pseudonyms; empty means "derive from Django's SECRET_KEY".
    pseudonym_key: str = ""
    # Client IP addresses in logs: "drop", "truncate" (to the /24 or /48 network) or "keep".
    ip_addresses: str = "truncate"
    # URL path patterns (regular expressions) that are never traced.
    excluded_urls: tuple[str, ...] = (r"/health(/|$)", r"/metrics/?$")
    # Extra keys to treat as sensitive everywhere (matched by name tokens too), beside the
    # built-in lab fields, their synonyms, person identifiers and credentials (otel_hcv.privacy).
    sensitive_keys: tuple[str, ...] = ()
    # Attribute and log-extra keys whose numbers and objects may leave as they are.
    safe_keys: tuple[str, ...] = ()
    # Loggers whose message arguments (numbers, objects) may be written as they are.
    safe_loggers: tuple[str, ...] = ()
    # Dotted path of a zero-argument callable asked by the AI-model health check.
    health_model_probe: str = ""
    # Request-id header and the characters/length accepted from clients.
    request_id_header: str = "X-Request-ID"
    request_id_max_length: int = 128
    # Level of records exported over OTLP (the console keeps its own level).
    otlp_log_level: str = "INFO"
    # gunicorn's and uvicorn's access lines as JSON with ids, IP policy applied, also over OTLP.
    json_access_logs: bool = True
    # Window of the JSON metrics summary, in seconds.
    summary_window_seconds: int = 300
    # Which middleware makes the server span and HTTP server metrics: "otel_hcv" (the lean one,
    # otel_hcv.server, emitting what upstream's does) or "upstream" (opentelemetry-instrumentation-django's).
    server_middleware: str = "otel_hcv"
    # What batches, encodes and sends spans over OTLP/HTTP: "sdk" (the SDK's BatchSpanProcessor and
    # exporter) or "fastotel" (the optional extra otel-hcv[fastotel]: a native processor that encodes
    # and sends off the interpreter lock; spans are screened before they are handed to it).
    span_processor: str = "sdk"

    # Health checks (otel_hcv.health).
    health_check_timeout: float = 3.0  # seconds per check
    health_cache_seconds: float = 10.0  # results are reused this long
    health_disk_paths: tuple[str, ...] = ("/",)
    health_disk_min_free_bytes: int = 1024**3
    health_disk_min_free_percent: float = 5.0
    health_memory_max_percent: float = 90.0
    health_token: str = ""  # bearer token that may read check details
    health_checks: tuple[str, ...] = ()  # dotted paths of extra Check classes or instances
    health_non_critical: tuple[str, ...] = ("disk_space", "memory")  # not consulted by /health/ready

    # Sentry (otel_hcv.sentry): nothing is imported unless a DSN is set.
    sentry_dsn: str = ""
    sentry_environment: str = ""  # defaults to ENVIRONMENT
    sentry_release: str = ""  # defaults to SERVICE_VERSION
    sentry_send_spans: bool = False  # also export spans to Sentry's OTLP endpoint


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_SETTING_NAMES = {name.upper(): name for name in _FIELDS}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(setting: str, name: str, value: Any) -> Any:
    """Convert ``value`` to the type of field ``name``; the error names ``setting``."""
    default = _FIELDS[name].default
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigurationError(f"{setting} must be a boolean (true/false), got {value!r}")
    if isinstance(default, float):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{setting} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not number > 0 or number == float("inf"):
            raise ConfigurationError(f"{setting} must be a positive number, got {value!r}")
        return number
    if isinstance(default, int):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{setting} must be an integer, got {value!r}") from None
        if isinstance(value, bool) or number <= 0:
            raise ConfigurationError(f"{setting} must be a positive integer, got {value!r}")
        return number
    if isinstance(default, tuple):
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigurationError(f"{setting} must be a list of strings, got {value!r}")
    if not isinstance(value, str):
        raise ConfigurationError(f"{setting} must be a string, got {value!r}")
    return value


def _validate(values: dict[str, Any], origin: Mapping[str, str]) -> None:
    level = values["otlp_log_level"].upper()
    if level not in _LOG_LEVELS:
        raise ConfigurationError(f"{origin['otlp_log_level']} must be one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    values["otlp_log_level"] = level
    if values["server_middleware"] not in SERVER_MIDDLEWARES:
        raise ConfigurationError(
            f"{origin['server_middleware']} must be 'otel_hcv' or 'upstream', got {values['server_middleware']!r}"
        )
    if values["span_processor"] not in SPAN_PROCESSORS:
        raise ConfigurationError(
            f"{origin['span_processor']} must be 'sdk' or 'fastotel', got {values['span_processor']!r}"
        )
    if values["ip_addresses"] not in ("drop", "truncate", "keep"):
        raise ConfigurationError(
            f"{origin['ip_addresses']} must be 'drop', 'truncate' or 'keep', got {values['ip_addresses']!r}"
        )
    for pattern in values["excluded_urls"]:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigurationError(
                f"{origin['excluded_urls']} has an invalid regular expression {pattern!r}: {exc}"
            ) from None
    if not re.fullmatch(r"[A-Za-z0-9-]+", values["request_id_header"]):
        raise ConfigurationError(
            f"{origin['request_id_header']} must be an HTTP header name, got {values['request_id_header']!r}"
        )
    if values["health_model_probe"] and "." not in values["health_model_probe"]:
        raise ConfigurationError(
            f"{origin['health_model_probe']} must be a dotted path such as "
            f"'diagnosis.model.health_probe', got {values['health_model_probe']!r}"
        )
    for path in values["health_checks"]:
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", path):
            raise ConfigurationError(
                f"{origin['health_checks']} entries must be dotted paths such as "
                f"'myapp.health.PaymentsCheck', got {path!r}"
            )


def _django_dict() -> Mapping[str, Any]:
    try:
        from django.conf import settings as django_settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        return {}
    try:
        configured = django_settings.configured or bool(os.environ.get("DJANGO_SETTINGS_MODULE"))
        if not configured:
            return {}
        value = getattr(django_settings, "OTEL_HCV", {})
    except (ImproperlyConfigured, ImportError):
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"settings.OTEL_HCV must be a dict, got {type(value).__name__}")
    return value


def load(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from Django's ``OTEL_HCV``, ``HCV_*`` variables and ``overrides``.

    Raises :class:`ConfigurationError` naming the first unknown or invalid setting.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin = {name: f"OTEL_HCV[{name.upper()!r}]" for name in _FIELDS}

    for key, value in _django_dict().items():
        name = _SETTING_NAMES.get(str(key).upper())
        if name is None:
            known = ", ".join(sorted(_SETTING_NAMES))
            raise ConfigurationError(f"OTEL_HCV[{key!r}] is not a known setting (known: {known})")
        values[name] = _coerce(f"OTEL_HCV[{key!r}]", name, value)

    for name in _FIELDS:
        env_name = f"HCV_{name.upper()}"
        if env_name in environ:
            origin[name] = env_name
            values[name] = _coerce(env_name, name, environ[env_name])

    for key, value in (overrides or {}).items():
        name = _SETTING_NAMES.get(key.upper())
        if name is None:
            raise ConfigurationError(f"configure({key}=...) is not a known setting")
        origin[name] = f"configure({key}=...)"
        values[name] = _coerce(origin[name], name, value)

    merged = {name: values.get(name, f.default) for name, f in _FIELDS.items()}
    _validate(merged, origin)
    _validate_sentry_dsn(merged, origin, environ)
    return Settings(**merged)


SENTRY_DSN_SETTING = "OTEL_HCV['SENTRY_DSN'] (or HCV_SENTRY_DSN)"
SENTRY_DSN_ENV = "SENTRY_DSN"


def _validate_sentry_dsn(values: Mapping[str, Any], origin: Mapping[str, str], environ: Mapping[str, str]) -> None:
    # The Sentry bridge falls back to sentry-sdk's own SENTRY_DSN; a malformed DSN from either
    # source fails here, at start-up, like any other wrong setting (sentry-sdk is not imported).
    if values["sentry_dsn"].strip():
        validate_dsn(values["sentry_dsn"].strip(), origin["sentry_dsn"])
    elif environ.get(SENTRY_DSN_ENV, "").strip():
        validate_dsn(environ[SENTRY_DSN_ENV].strip(), SENTRY_DSN_ENV)


def dsn_problem(dsn: str) -> str | None:
    """Why sentry-sdk would reject ``dsn`` (the rules of ``sentry_sdk.utils.Dsn``), or None.

    Checked without importing sentry-sdk, so that settings validation stays cheap.
    """
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "the host is missing"
    if not parts.username:
        return "the public key (the part before '@') is missing"
    if port == 0:
        return "the port must not be 0"
    project = parts.path.rsplit("/", 1)[-1]
    if not project.isdigit():
        return "the path must end with the numeric project id"
    return None


def validate_dsn(dsn: str, origin: str) -> None:
    """Raise :class:`ConfigurationError` naming ``origin`` when ``dsn`` is malformed.

    The DSN itself is not repeated: it holds the project's key.
    """
    problem = dsn_problem(dsn)
    if problem is not None:
        raise ConfigurationError(
            f"{origin} is not a valid Sentry DSN ({problem}); expected http(s)://<public key>@<host>/<project id>"
        )
