"""What may leave the process: pseudonymised user ids, redacted values, truncated IPs.

One module, used by spans, logs and (later) Sentry, so every signal applies the same rules.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Any

from otel_hcv import conf

logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"

# Attribute keys for the user on spans: the semantic conventions' pseudonymous id,
# and the raw id only when pseudonymisation is turned off explicitly.
PSEUDONYMOUS_USER_ID_KEY = "enduser.pseudo.id"
RAW_USER_ID_KEY = "enduser.id"

_VALUE_PATTERNS = (
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),  # e-mail addresses
    re.compile(r"(?i)\bbearer\s+[\w\-.~+/]+=*"),  # bearer tokens
    re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"),  # JWTs
    re.compile(r"(?i)\btoken\s+[0-9a-f]{20,}"),  # DRF "Token <key>" headers
)


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


def user_id_of(request: Any) -> object | None:
    """The authenticated user's primary key on a Django or DRF request, else None."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "pk", None)


def is_sensitive_key(key: str, settings: conf.Settings) -> bool:
    name = key.lower()
    keys = settings.all_sensitive_keys
    return name in keys or name.rsplit(".", 1)[-1] in keys


def redact_text(text: str) -> str:
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
