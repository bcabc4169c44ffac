"""Sentry events, breadcrumbs and envelope headers under the privacy rules of every other signal.

sentry-sdk hands ``before_send`` and ``before_breadcrumb`` dictionaries it built itself; this
module knows their shape (which fields hold frames, request data, log arguments) and applies
:mod:`otel_hcv.privacy` to each field. It imports nothing from sentry-sdk.

Positive where the shape is known: only the event fields listed here leave, exception messages
never do (the type and frames make an error actionable), and the dynamic sampling context keeps
only its sampling keys, whatever an incoming ``baggage`` header put in it.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any

from otel_hcv import accounting, conf, privacy

logger = logging.getLogger(__name__)

REDACTED = privacy.REDACTED
_PSEUDONYM = re.compile(r"[0-9a-f]{32}")

# Event fields that leave, each under the rule for its shape; any other field is dropped.
_KEPT_AS_IS = frozenset({
    "event_id", "timestamp", "start_timestamp", "level", "platform", "logger", "server_name", "release",
    "environment", "dist", "sdk", "modules", "fingerprint", "type", "transaction_info", "debug_meta",
    "errors", "_meta",
})  # fmt: skip
# Request headers that carry credentials or a client address, whatever their name tokens say.
_DROPPED_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-csrftoken",
    "x-xsrf-token", "x-forwarded-for", "x-real-ip", "forwarded", "x-client-ip", "true-client-ip",
    "cf-connecting-ip", "x-cluster-client-ip", "baggage", "sentry-trace", "tracestate",
})  # fmt: skip
# Parts of the request the service has no business sending: the body holds the lab values,
# cookies and query strings may hold session ids or search terms.
_DROPPED_REQUEST_FIELDS = frozenset({"data", "cookies", "query_string", "fragment"})
# WSGI/ASGI environment entries that describe the server, not the client (REMOTE_ADDR is not one).
_KEPT_ENVIRON = frozenset({"SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REQUEST_METHOD", "SCRIPT_NAME"})
# Contexts sentry-sdk fills with facts about the runtime, not about a request.
_RUNTIME_CONTEXTS = frozenset({"runtime", "os", "device", "app", "browser", "gpu", "culture", "otel"})
# The trace context's own fields, and the sampling keys of the dynamic sampling context.
_TRACE_CONTEXT_KEYS = frozenset({"trace_id", "span_id", "parent_span_id", "op", "status", "origin", "type"})
DSC_KEYS = frozenset({"trace_id", "public_key", "release", "environment", "sample_rate", "sample_rand",
                      "sampled", "org_id"})  # fmt: skip
# Extras sentry-sdk adds by itself that carry the process's command line (secrets passed as
# arguments or -e NAME=value) or nothing a person needs.
_DROPPED_EXTRAS = frozenset({"sys.argv"})
# Frame fields: file, function and line, and the source code around it; never the locals.
_FRAME_KEYS = frozenset({"filename", "abs_path", "function", "module", "lineno", "colno", "in_app",
                         "context_line", "pre_context", "post_context", "package", "platform",
                         "instruction_addr", "raw_function"})  # fmt: skip
_MECHANISM_KEYS = frozenset({"type", "handled", "synthetic", "exception_id", "parent_id", "is_exception_group",
                             "source", "help_link"})  # fmt: skip


def _frames(stacktrace: Any) -> Any:
    if not isinstance(stacktrace, Mapping):
        return None
    frames = stacktrace.get("frames")
    if not isinstance(frames, list):
        return {key: value for key, value in stacktrace.items() if key != "frames"}
    return {
        **{key: value for key, value in stacktrace.items() if key not in ("frames",)},
        "frames": [
            {key: copy.deepcopy(value) for key, value in frame.items() if key in _FRAME_KEYS}
            for frame in frames
            if isinstance(frame, Mapping)
        ],
    }


def _exception(value: Mapping[str, Any]) -> dict[str, Any]:
    scrubbed: dict[str, Any] = {}
    for key, item in value.items():
        if key == "type":
            scrubbed[key] = item if isinstance(item, str) and privacy.TYPE_NAME.fullmatch(item) else REDACTED
        elif key == "value":
            scrubbed[key] = REDACTED if item else item  # messages never leave, notes neither
        elif key == "module":
            scrubbed[key] = item if isinstance(item, str) and privacy.TYPE_NAME.fullmatch(item) else None
        elif key == "stacktrace":
            scrubbed[key] = _frames(item)
        elif key == "mechanism" and isinstance(item, Mapping):
            scrubbed[key] = {k: v for k, v in item.items() if k in _MECHANISM_KEYS}
        elif key == "thread_id":
            scrubbed[key] = item
    return scrubbed


def _values(container: Any, scrub: Any) -> Any:
    """The ``values`` list of an exception/threads interface, in either of its two shapes."""
    if isinstance(container, list):
        return [scrub(item) for item in container if isinstance(item, Mapping)]
    if isinstance(container, Mapping) and isinstance(container.get("values"), list):
        return {**container, "values": [scrub(item) for item in container["values"] if isinstance(item, Mapping)]}
    return container if isinstance(container, Mapping | list) and not container else None


def _thread(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: (_frames(item) if key == "stacktrace" else item)
        for key, item in value.items()
        if key in ("id", "current", "crashed", "main", "stacktrace")
    }


def _request(request: Any, settings: conf.Settings) -> dict[str, Any] | None:
    if not isinstance(request, Mapping):
        return None
    scrubbed: dict[str, Any] = {}
    for field, value in request.items():
        if field in _DROPPED_REQUEST_FIELDS:
            continue
        if field == "url" and isinstance(value, str):
            scrubbed[field] = privacy.screen_url(value, settings)
        elif field == "method" and isinstance(value, str):
            scrubbed[field] = value if value.isalpha() and len(value) <= 16 else REDACTED
        elif field == "headers" and isinstance(value, Mapping):
            scrubbed[field] = {
                str(name): privacy.safe_attribute(f"http.request.header.{str(name).lower()}", header, settings)
                for name, header in value.items()
                if str(name).lower() not in _DROPPED_HEADERS
            }
        elif field == "env" and isinstance(value, Mapping):
            scrubbed[field] = {
                str(name): privacy.screen_text(item, settings, strict=False)
                for name, item in value.items()
                if name in _KEPT_ENVIRON and isinstance(item, str)
            }
        else:
            scrubbed[field] = privacy.safe_structure(value, settings, key=str(field))
    return scrubbed


def _user(user: Any, settings: conf.Settings) -> dict[str, str] | None:
    """Only the pseudonym of ``user["id"]`` survives: no e-mail, username, IP address or name.

    sentry-sdk sets a user only when personal data is allowed, so any id found here was put
    there by code and is taken to be the raw primary key, pseudonymised like on spans.
    """
    if not isinstance(user, Mapping) or user.get("id") in (None, ""):
        return None
    if not settings.pseudonymize_user_ids:
        return {"id": str(user["id"])}
    try:
        return {"id": privacy.pseudonymize_user_id(user["id"], settings)}
    except conf.ConfigurationError:
        logger.warning("Dropped the user id of a Sentry event: no pseudonym key is available")
        return None


def trace_context(context: Any) -> dict[str, Any]:
    if not isinstance(context, Mapping):
        return {}
    scrubbed = {key: value for key, value in context.items() if key in _TRACE_CONTEXT_KEYS}
    dsc = context.get("dynamic_sampling_context")
    if isinstance(dsc, Mapping):
        scrubbed["dynamic_sampling_context"] = sampling_context(dsc)
    return scrubbed


def sampling_context(dsc: Mapping[str, Any]) -> dict[str, Any]:
    """The dynamic sampling context (an envelope's ``trace`` header) with its sampling keys only:
    an incoming ``baggage`` header can put ``sentry-user_id`` or a ``sentry-transaction`` with a
    query string there."""
    return {key: value for key, value in dsc.items() if key in DSC_KEYS}


def _log_entry(entry: Any, settings: conf.Settings, record: logging.LogRecord | None) -> dict[str, Any] | None:
    if record is not None:
        # The template groups events in Sentry; an f-string template carries values, so it is
        # screened as well. The arguments leave only as interpolated by the rules for logs.
        return {
            "message": privacy.format_log_message(record.msg, (), record.name, settings),
            "formatted": privacy.format_log_message(record.msg, record.args, record.name, settings),
            "params": [],
        }
    if not isinstance(entry, Mapping):
        return None
    params = entry.get("params")
    template = entry.get("message")
    formatted = entry.get("formatted")
    return {
        "message": privacy.screen_text(template, settings) if isinstance(template, str) else None,
        "formatted": privacy.screen_text(formatted, settings) if isinstance(formatted, str) else None,
        "params": [privacy.safe_structure(param, settings) for param in params] if isinstance(params, list) else [],
    }


def _extras(extra: Any, settings: conf.Settings) -> dict[str, Any] | None:
    if not isinstance(extra, Mapping):
        return None
    return {
        str(key): privacy.safe_log_extra(str(key), value, settings)
        for key, value in extra.items()
        if key not in _DROPPED_EXTRAS
    }


def _record_of(hint: Mapping[str, Any] | None) -> logging.LogRecord | None:
    record = hint.get("log_record") if isinstance(hint, Mapping) else None
    return record if isinstance(record, logging.LogRecord) else None


def scrub_breadcrumb(
    crumb: Mapping[str, Any], settings: conf.Settings, hint: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """A copy of a Sentry breadcrumb (log line, HTTP call, SQL query) fit to leave the process,
    or None when it cannot be made so."""
    try:
        return _scrub_breadcrumb(crumb, settings, _record_of(hint))
    except Exception:  # fail closed
        accounting.count_dropped("sentry", "redaction_failed")
        return None


def _scrub_breadcrumb(
    crumb: Mapping[str, Any], settings: conf.Settings, record: logging.LogRecord | None, *, again: bool = False
) -> dict[str, Any]:
    """``again``: the breadcrumb passed ``before_breadcrumb`` already (an event's copy of it), so
    a user id in it is a pseudonym already and is not hashed a second time."""
    scrubbed: dict[str, Any] = {
        key: value for key, value in crumb.items() if key in ("type", "category", "level", "timestamp")
    }
    if record is not None:
        scrubbed["message"] = privacy.format_log_message(record.msg, record.args, record.name, settings)
    elif isinstance(crumb.get("message"), str):
        scrubbed["message"] = privacy.screen_text(crumb["message"], settings)
    data = crumb.get("data")
    if isinstance(data, Mapping):
        kept: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key)
            if name in ("http.query", "http.fragment", "db.params", "params"):
                continue  # query strings of outgoing calls and SQL parameters
            if name == "url" and isinstance(value, str):
                kept[name] = privacy.screen_url(value, settings)
            elif again and name == privacy.USER_ID_FIELD:
                kept[name] = value if isinstance(value, str) and _PSEUDONYM.fullmatch(value) else None
            elif name in ("method", "status_code", "reason", "http.method", "http.response.status_code"):
                kept[name] = privacy.safe_structure(value, settings, key=name, safe=True)
            else:
                kept[name] = privacy.safe_log_extra(name, value, settings)
        scrubbed["data"] = kept
    return scrubbed


def scrub_event(
    event: Mapping[str, Any], settings: conf.Settings, hint: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """A copy of a Sentry event without lab values, request bodies, cookies, credentials,
    client addresses, query strings, frame locals, exception messages, the command line or raw
    user ids; None (the event is dropped, and counted) when it cannot be made so.

    What stays is what makes an error actionable: exception types, stack frames with file,
    function, line and source code, the trace context, tags and the route.
    """
    try:
        return _scrub_event(event, settings, _record_of(hint))
    except Exception:  # fail closed
        accounting.count_dropped("sentry", "redaction_failed")
        return None


def _scrub_event(event: Mapping[str, Any], settings: conf.Settings, record: logging.LogRecord | None) -> dict[str, Any]:
    scrubbed: dict[str, Any] = {key: copy.deepcopy(value) for key, value in event.items() if key in _KEPT_AS_IS}
    if (exception := _values(event.get("exception"), _exception)) is not None:
        scrubbed["exception"] = exception
    if (threads := _values(event.get("threads"), _thread)) is not None:
        scrubbed["threads"] = threads
    if (stacktrace := _frames(event.get("stacktrace"))) is not None:
        scrubbed["stacktrace"] = stacktrace
    if (request := _request(event.get("request"), settings)) is not None:
        scrubbed["request"] = request
    if (user := _user(event.get("user"), settings)) is not None:
        scrubbed["user"] = user
    if isinstance(event.get("message"), str):
        scrubbed["message"] = (
            privacy.format_log_message(record.msg, record.args, record.name, settings)
            if record is not None
            else privacy.screen_text(event["message"], settings)
        )
    if "logentry" in event and (entry := _log_entry(event["logentry"], settings, record)) is not None:
        scrubbed["logentry"] = entry
    if (extra := _extras(event.get("extra"), settings)) is not None:
        scrubbed["extra"] = extra
    if isinstance(event.get("tags"), Mapping):
        scrubbed["tags"] = {
            str(key): privacy.safe_structure(value, settings, key=str(key)) for key, value in event["tags"].items()
        }
    if isinstance(event.get("contexts"), Mapping):
        scrubbed["contexts"] = {
            name: (
                trace_context(context)
                if name == "trace"
                else copy.deepcopy(context)
                if name in _RUNTIME_CONTEXTS
                else privacy.safe_structure(context, settings, key=str(name))
            )
            for name, context in event["contexts"].items()
        }
    if isinstance(event.get("transaction"), str):
        scrubbed["transaction"] = privacy.screen_url(event["transaction"], settings)
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, Mapping) and isinstance(breadcrumbs.get("values"), list):
        crumbs = [crumb for crumb in breadcrumbs["values"] if isinstance(crumb, Mapping)]
        scrubbed["breadcrumbs"] = {"values": [_scrub_breadcrumb(crumb, settings, None, again=True) for crumb in crumbs]}
    return scrubbed
