"""What may leave the process: pseudonymised user ids, redacted values, truncated IPs.

One module, used by spans, logs and (later) Sentry, so every signal applies the same rules.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Any

from django.utils.functional import SimpleLazyObject, empty

from otel_hcv import conf

logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"

# Attribute keys for the user on spans: the semantic conventions' pseudonymous id,
# and the raw id only when pseudonymisation is turned off explicitly.
PSEUDONYMOUS_USER_ID_KEY = "enduser.pseudo.id"
RAW_USER_ID_KEY = "enduser.id"

_VALUE_PATTERNS = (
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)*\.[A-Za-z]{2,}\b"),  # e-mail addresses (not "app@1.2.3")
    re.compile(r"(?i)\bbearer\s+[\w\-.~+/]+=*"),  # bearer tokens
    re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"),  # JWTs
    re.compile(r"(?i)\btoken\s+[0-9a-f]{20,}"),  # DRF "Token <key>" headers
)
# Every _VALUE_PATTERNS match contains one of these.
_MAYBE_SENSITIVE = re.compile(r"@|eyJ|(?i:bearer|token)")


def _pseudonym_key(settings: conf.Settings) -> bytes:
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    try:
        from django.conf import settings as django_settings

        secret = django_settings.SECRET_KEY
    except Exception:  # Django absent or not configured
        secret = ""
    if not secret:
        raise conf.ConfigurationError(
            "OTEL_HCV['PSEUDONYM_KEY'] (or HCV_PSEUDONYM_KEY) is required when Django's "
            "SECRET_KEY is not available: user ids are pseudonymised with it"
        )
    # Derive a separate key so the pseudonyms reveal nothing usable about SECRET_KEY.
    return hmac.new(secret.encode(), b"otel-hcv user pseudonym", hashlib.sha256).digest()


@functools.lru_cache(maxsize=4096)
def _keyed_hash(key: bytes, user_id: str) -> str:
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonymize_user_id(user_id: object, settings: conf.Settings) -> str:
    """A stable keyed hash of ``user_id``: the same user gets the same pseudonym in every
    process and after restarts (same key), and nobody without the key can reverse it."""
    return _keyed_hash(_pseudonym_key(settings), str(user_id))


def user_attributes(user_id: object, settings: conf.Settings) -> dict[str, str]:
    """Span attributes for an authenticated user, following the privacy settings."""
    if user_id is None or user_id == "":
        return {}
    if settings.pseudonymize_user_ids:
        return {PSEUDONYMOUS_USER_ID_KEY: pseudonymize_user_id(user_id, settings)}
    return {RAW_USER_ID_KEY: str(user_id)}


def user_id_of(request: Any, *, resolve: bool = True) -> object | None:
    """The authenticated user's primary key on a Django or DRF request, else None.

    With ``resolve=False`` a user that nothing has looked at yet (Django's lazy
    ``request.user``) stays unresolved: telemetry alone must not cost a session lookup.
    """
    user = getattr(request, "user", None)
    if not resolve and isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "pk", None)


def is_sensitive_key(key: str, settings: conf.Settings) -> bool:
    name = key.lower()
    keys = settings.all_sensitive_keys
    return name in keys or name.rsplit(".", 1)[-1] in keys


def redact_text(text: str) -> str:
    # One cheap search first: almost no text holds an "@", a JWT or a token.
    if _MAYBE_SENSITIVE.search(text) is None:
        return text
    for pattern in _VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any, settings: conf.Settings, _depth: int = 0) -> Any:
    """A copy of ``value`` with deny-listed keys and sensitive-looking strings removed."""
    if _depth > 8:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_sensitive_key(str(key), settings) else redact(item, settings, _depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(item, settings, _depth + 1) for item in value)
    return value


def client_ip(address: str | None, settings: conf.Settings) -> str | None:
    """The client address as the settings allow: dropped, truncated to its network, or kept."""
    if not address or settings.ip_addresses == "drop":
        return None
    if settings.ip_addresses == "keep":
        return address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


# Sentry events ---------------------------------------------------------------------------
# otel_hcv.sentry's before_send / before_breadcrumb hooks. They see events after sentry-sdk
# has serialised them (plain dicts, lists, strings and numbers; other objects are already
# their repr() strings), so a lab value can hide inside a string such as "{'alb': 41.37}":
# free text is scrubbed for "key: value" pairs of deny-listed keys as well.

# Request headers that carry credentials or a client address, whatever the settings say.
_SENTRY_DROPPED_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-csrftoken",
        "x-xsrf-token", "x-forwarded-for", "x-real-ip", "forwarded", "x-client-ip", "true-client-ip",
        "cf-connecting-ip", "x-cluster-client-ip",
    }
)  # fmt: skip
# Parts of the request the service has no business sending: the body holds the lab values,
# cookies and query strings may hold session ids or search terms.
_SENTRY_DROPPED_REQUEST_FIELDS = ("data", "cookies", "query_string", "fragment")
# Contexts sentry-sdk fills with facts about the runtime, not about a request; their "name"
# keys ("CPython", "Linux") would otherwise be redacted as if they were a person's name.
_SENTRY_RUNTIME_CONTEXTS = frozenset({"trace", "runtime", "os", "device", "app", "browser", "gpu", "culture"})
_MAX_SCRUB_DEPTH = 12


@functools.lru_cache(maxsize=16)
def _sensitive_pair_pattern(keys: frozenset[str]) -> re.Pattern[str]:
    names = "|".join(re.escape(key) for key in sorted(keys, key=len, reverse=True))
    # key=value, key: value, 'key': value, "key": "value" (the value up to a separator). An
    # already redacted value matches as a whole, so that scrubbing twice changes nothing.
    redacted = re.escape(REDACTED)
    return re.compile(rf"(?i)(?<![\w-])(['\"]?)({names})\1(\s*[:=]\s*)(?:{redacted}|'[^']*'|\"[^\"]*\"|[^\s,;&}})\]]+)")


def redact_sensitive_pairs(text: str, settings: conf.Settings) -> str:
    """``text`` with the value of every ``key=value`` / ``key: value`` pair whose key is
    deny-listed replaced, e.g. ``"{'alb': 41.37}"`` becomes ``"{'alb': [REDACTED]}"``."""
    return _sensitive_pair_pattern(settings.all_sensitive_keys).sub(rf"\1\2\1\3{REDACTED}", text)


def _scrub_text(text: str, settings: conf.Settings) -> str:
    return redact_sensitive_pairs(redact_text(text), settings)


def scrub_value(value: Any, settings: conf.Settings, _depth: int = 0) -> Any:
    """A copy of ``value`` with deny-listed keys redacted at any depth and free text scrubbed
    (sensitive-looking strings and ``key: value`` pairs of deny-listed keys)."""
    if _depth > _MAX_SCRUB_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return _scrub_text(value, settings)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_sensitive_key(str(key), settings) else scrub_value(item, settings, _depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub_value(item, settings, _depth + 1) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Breadcrumbs are scrubbed before sentry-sdk serialises them: an object (a request, a
    # model instance) would become its repr() later, unscrubbed.
    try:
        return _scrub_text(str(value), settings)
    except Exception:  # a broken __str__ must not break error reporting
        return f"<unprintable {type(value).__name__}>"


def _without_query(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _drop_frame_variables(value: Any) -> None:
    """Remove ``vars`` (a frame's local variables) from every stack frame under ``value``."""
    if isinstance(value, Mapping):
        frames = value.get("frames")
        if isinstance(frames, list):
            for frame in frames:
                if isinstance(frame, dict):
                    frame.pop("vars", None)
        for item in value.values():
            _drop_frame_variables(item)
    elif isinstance(value, list):
        for item in value:
            _drop_frame_variables(item)


def _scrub_request(request: Any, settings: conf.Settings) -> Any:
    if not isinstance(request, Mapping):
        return None
    scrubbed: dict[str, Any] = {}
    for field, value in request.items():
        if field in _SENTRY_DROPPED_REQUEST_FIELDS:
            continue
        if field == "url" and isinstance(value, str):
            scrubbed[field] = _without_query(value)
        elif field == "headers" and isinstance(value, Mapping):
            scrubbed[field] = {
                name: scrub_value(header, settings)
                for name, header in value.items()
                if str(name).lower() not in _SENTRY_DROPPED_HEADERS and not is_sensitive_key(str(name), settings)
            }
        elif field == "env" and isinstance(value, Mapping):
            scrubbed[field] = {
                name: scrub_value(item, settings)
                for name, item in value.items()
                if name != "REMOTE_ADDR" and not is_sensitive_key(str(name), settings)
            }
        else:
            scrubbed[field] = scrub_value(value, settings)
    return scrubbed


def _pseudonymous_user(user: Any, settings: conf.Settings) -> dict[str, str] | None:
    """Only the pseudonym of ``user["id"]`` survives: no e-mail, username, IP address or name.

    sentry-sdk sets a user only when personal data is allowed, so any id found here was put
    there by code and is taken to be the raw primary key, pseudonymised like on spans.
    """
    if not isinstance(user, Mapping) or user.get("id") in (None, ""):
        return None
    try:
        return {"id": pseudonymize_user_id(user["id"], settings)}
    except conf.ConfigurationError:
        logger.warning("Dropped the user id of a Sentry event: no pseudonym key is available")
        return None


def scrub_breadcrumb(crumb: dict[str, Any], settings: conf.Settings) -> dict[str, Any]:
    """A copy of a Sentry breadcrumb (log line, HTTP call, SQL query) fit to leave the process."""
    scrubbed = dict(crumb)
    if isinstance(scrubbed.get("message"), str):
        scrubbed["message"] = _scrub_text(scrubbed["message"], settings)
    data = scrubbed.get("data")
    if isinstance(data, Mapping):
        # Query strings of outgoing HTTP calls and SQL parameters (lab values, user ids).
        data = {
            key: value
            for key, value in data.items()
            if key not in ("http.query", "http.fragment", "db.params", "params")
        }
        if isinstance(data.get("url"), str):
            data["url"] = _without_query(data["url"])
        scrubbed["data"] = scrub_value(data, settings)
    elif data is not None:
        scrubbed["data"] = scrub_value(data, settings)
    return scrubbed


def scrub_event(event: dict[str, Any], settings: conf.Settings) -> dict[str, Any]:
    """A copy of a Sentry event without lab values, request bodies, cookies, credentials,
    client addresses, query strings, frame locals or raw user ids.

    What stays is what makes an error actionable: exception types, scrubbed messages, stack
    frames with file, function, line and source code, the trace context, tags and the route.
    """
    scrubbed = dict(event)
    for field in ("exception", "threads", "stacktrace"):
        if field in scrubbed:
            value = copy.deepcopy(scrubbed[field])
            _drop_frame_variables(value)
            if field == "exception":
                for exception in _values_of(value):
                    if isinstance(exception.get("value"), str):
                        exception["value"] = _scrub_text(exception["value"], settings)
                    mechanism = exception.get("mechanism")
                    if isinstance(mechanism, dict) and "data" in mechanism:
                        mechanism["data"] = scrub_value(mechanism["data"], settings)
            scrubbed[field] = value
    if "request" in scrubbed:
        scrubbed["request"] = _scrub_request(scrubbed["request"], settings)
        if scrubbed["request"] is None:
            del scrubbed["request"]
    if "user" in scrubbed:
        user = _pseudonymous_user(scrubbed["user"], settings)
        if user is None:
            del scrubbed["user"]
        else:
            scrubbed["user"] = user
    if isinstance(scrubbed.get("message"), str):
        scrubbed["message"] = _scrub_text(scrubbed["message"], settings)
    if isinstance(scrubbed.get("logentry"), Mapping):
        scrubbed["logentry"] = scrub_value(scrubbed["logentry"], settings)
    for field in ("extra", "tags"):
        if field in scrubbed:
            scrubbed[field] = scrub_value(scrubbed[field], settings)
    if isinstance(scrubbed.get("contexts"), Mapping):
        scrubbed["contexts"] = {
            name: context if name in _SENTRY_RUNTIME_CONTEXTS else scrub_value(context, settings)
            for name, context in scrubbed["contexts"].items()
        }
    if isinstance(scrubbed.get("transaction"), str):
        scrubbed["transaction"] = _without_query(scrubbed["transaction"])
    breadcrumbs = scrubbed.get("breadcrumbs")
    if isinstance(breadcrumbs, Mapping) and isinstance(breadcrumbs.get("values"), list):
        scrubbed["breadcrumbs"] = {
            **breadcrumbs,
            "values": [scrub_breadcrumb(crumb, settings) for crumb in breadcrumbs["values"] if isinstance(crumb, dict)],
        }
    return scrubbed


def _values_of(container: Any) -> list[dict[str, Any]]:
    """The ``values`` list of an exception/threads interface, in either of its two shapes."""
    values = container.get("values") if isinstance(container, Mapping) else container
    return [item for item in values if isinstance(item, dict)] if isinstance(values, list) else []
