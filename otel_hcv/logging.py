"""JSON log lines that carry trace id, span id and request id.

``StructuredFormatter`` keeps the monitoring plan's name and fields (``timestamp``,
``level``, ``logger``, ``message``, and the ``user_id``, ``request_id``, ``ip_address``,
``endpoint`` extras) and adds the trace context. ``logging_config()`` returns a ready
``LOGGING`` dict for Django settings.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord, get_logger
from opentelemetry.context import get_current
from opentelemetry.instrumentation.log_utils import std_to_otel
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.trace import SpanContext

from otel_hcv import accounting, context, privacy, state
from otel_hcv.conf import Settings

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_DROPPED_EXTRAS = frozenset({"request"})
_SDK_LOGGER = "opentelemetry"
_logger = logging.getLogger("otel_hcv")
ACCESS_LOGGERS = context.ACCESS_LOGGERS
_OWN_FIELDS = frozenset({"timestamp", "level", "logger", "message", "trace_id", "span_id", "trace_flags", "exception"})


@dataclass(frozen=True, slots=True)
class SafeFields:
    """What may leave the process of one log record, the same for every handler."""

    message: str
    extras: dict[str, Any]
    exception: dict[str, str]
    span_context: SpanContext | None


# The last record each thread worked out SafeFields for. Not kept on the record itself:
# other handlers (upstream's OTLP handler, JSON libraries) export a record's attributes.
_last_safe_fields = threading.local()


def safe_fields(record: logging.LogRecord, settings: Settings) -> SafeFields:
    """The record's :class:`SafeFields`, worked out once: the console line and the OTLP
    export of a record (two handlers, one after the other on the logging thread) share them."""
    last = getattr(_last_safe_fields, "entry", None)
    if last is not None and last[0]() is record:
        return last[1]
    fields = SafeFields(
        message=safe_message(record, settings),
        extras=safe_extras(record, settings),
        exception=exception_fields(record),
        span_context=record_span_context(record),
    )
    # A weak reference: the record (and any traceback it holds) is not kept alive.
    _last_safe_fields.entry = (weakref.ref(record), fields)
    return fields


class StructuredFormatter(logging.Formatter):
    """One JSON object per line. ``json.dumps`` escapes newlines and quotes, so a message
    cannot forge a second record.

    Built by Django's ``dictConfig`` from ``LOGGING``, so it reads the settings in force from
    :mod:`otel_hcv.state`."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception:  # fail closed: a line without the record's content, never its raw arguments
            accounting.count_dropped("logs", "redaction_failed")
            return json.dumps({"level": record.levelname, "logger": record.name, "message": privacy.REDACTED})

    def _format(self, record: logging.LogRecord) -> str:
        fields = safe_fields(record, state.current_settings())
        entry: dict[str, Any] = {
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": fields.message,
        }
        span_context = fields.span_context
        if span_context is not None:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
            entry["trace_flags"] = format(span_context.trace_flags, "02x")
        for key, value in fields.extras.items():
            if key not in _OWN_FIELDS:
                entry[key] = value
        exception = fields.exception
        if exception:
            entry["exception"] = {
                "type": exception["exception.type"],
                "message": exception["exception.message"],
                "stack": exception["exception.stacktrace"],
            }
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def safe_extras(record: logging.LogRecord, settings: Any) -> dict[str, Any]:
    """The ``extra=`` fields of a record as they may leave the process.

    User ids are pseudonymised, IP addresses dropped or truncated, every other value passes
    :func:`otel_hcv.privacy.safe_structure` (sensitive keys redacted by name token, numbers and
    objects only under keys known or declared safe, strings screened). Django's ``request``
    extra (a request or socket object whose text holds the query string) is left out: the
    request id identifies the request instead.
    """
    extras: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _RECORD_ATTRIBUTES or key in _DROPPED_EXTRAS:
            continue
        extras[key] = privacy.safe_log_extra(key, value, settings)
    finished = context.ids_of_record(record)
    request_id = extras.get("request_id") or context.request_id.get() or (finished and finished.request_id)
    if request_id:
        extras["request_id"] = str(request_id)
    if "user_id" not in extras and (user := context.user_attributes.get()):
        extras["user_id"] = next(iter(user.values()))
    if "endpoint" not in extras and (endpoint := context.endpoint.get()):
        extras["endpoint"] = endpoint
    return extras


def record_span_context(record: logging.LogRecord) -> SpanContext | None:
    """The span a record belongs to: the current one, or for a line written after the
    request's span closed (Django's 4xx lines, a server's access line) the span of the
    request it describes (:func:`otel_hcv.context.ids_of_record`)."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return span_context
    if (finished := context.ids_of_record(record)) is not None:
        return finished.span_context if finished.span_context.is_valid else None
    return None


class OtlpLoggingHandler(LoggingHandler):
    """The OpenTelemetry logging handler, exporting of each record only what may leave
    the process (the same rules as the JSON console lines). The OTLP record is built
    here from the safe fields directly, rather than from a redacted copy of the record.

    ``settings_source`` returns the settings in force (default: :func:`otel_hcv.state.current_settings`).
    """

    _SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}

    def __init__(self, *args: Any, settings_source: Callable[[], Settings] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings_source or state.current_settings
        self._otel_loggers: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_SDK_LOGGER):
            return  # the SDK's own diagnostics would feed the queue they report on
        try:
            fields = safe_fields(record, self._settings())
            attributes = {**fields.extras, **fields.exception} if fields.exception else fields.extras
            context = get_current()
            span_context = fields.span_context
            if span_context is not None and not trace.get_current_span(context).get_span_context().is_valid:
                # An access-log line: export it in the context of the request it describes.
                context = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
            otel_record = LogRecord(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                context=context,
                severity_text=self._SEVERITY_TEXT.get(record.levelname, record.levelname),
                severity_number=std_to_otel(record.levelno),
                body=fields.message,
                attributes=attributes,
            )
            otel_logger = self._otel_loggers.get(record.name)
            if otel_logger is None:
                otel_logger = get_logger(record.name, logger_provider=self._logger_provider)
                self._otel_loggers[record.name] = otel_logger
            otel_logger.emit(otel_record)
        except Exception:  # telemetry never breaks logging
            return


class DropReport(logging.Filter):
    """Turns the SDK's "Queue full, dropping span." warning, which it logs for every
    dropped item (on the request path, thousands a second while the collector is down),
    into one line when drops start and then one per ``interval`` with the count."""

    def __init__(self, interval_seconds: float = 60.0) -> None:
        super().__init__()
        self.interval = interval_seconds
        self.lock = threading.Lock()
        self.unreported: collections.Counter[str] = collections.Counter()
        self.last_report: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        kind = str(record.args[0]) if record.args else "item"
        accounting.count_dropped("traces" if kind == "Span" else "logs", "queue_full")
        due = self.add(kind)
        if due is None:
            return False
        record.msg, record.args = due
        return True

    def add(self, kind: str, count: int = 1) -> tuple[str, tuple[Any, ...]] | None:
        """Note ``count`` dropped items of ``kind`` ("Span", "LogRecord"); the report line's
        format and arguments when one is due, else None."""
        now = time.monotonic()
        with self.lock:
            self.unreported[kind] += count
            last = self.last_report.get(kind)
            if last is not None and now - last < self.interval:
                return None
            count = self.unreported.pop(kind)
            since = now - last if last is not None else 0.0
            self.last_report[kind] = now
        return (
            "Telemetry queue full: dropped %d %s(s)%s; is the collector reachable?",
            (count, kind.lower(), f" in the last {since:.0f} s" if since else ""),
        )


def install_drop_report(interval_seconds: float = 60.0) -> DropReport:
    sdk_logger = logging.getLogger(f"{_SDK_LOGGER}.sdk._shared_internal")
    for installed in sdk_logger.filters:
        if isinstance(installed, DropReport):
            return installed
    report = DropReport(interval_seconds)
    # First in line: the SDK's own DuplicateFilter on this logger lets one identical
    # message through per 20 s, so after it every drop would no longer be counted.
    sdk_logger.filters.insert(0, report)
    return report


def report_dropped_spans(count: int) -> None:
    """Spans a queue dropped without the SDK's warning (a native processor's queue): counted and
    reported as the SDK's drops are, one line when they start and then one a minute."""
    accounting.count_dropped("traces", "queue_full", count)
    due = install_drop_report().add("Span", count)
    if due is not None:
        _logger.warning(due[0], *due[1])


def exception_fields(record: logging.LogRecord) -> dict[str, str]:
    """The record's exception as it may leave the process: its type and stack frames.

    The message is dropped, in logs as on spans and in Sentry: code that fails often puts the
    data it had in hand into the exception text, and no pattern can tell a lab value from a
    number. The stack is built from the exception's structure, not from its formatted text, so
    no message, note or group member's message can ride along.
    """
    if not record.exc_info or record.exc_info[0] is None:
        return {}
    exc_type, exc, _ = record.exc_info
    return {
        "exception.type": privacy.exception_type_name(exc_type),
        "exception.message": privacy.REDACTED,
        "exception.stacktrace": privacy.stacktrace_of(exc) if exc is not None else exc_type.__qualname__,
    }


def safe_message(record: logging.LogRecord, settings: Any) -> str:
    """The record's message as it may leave the process (see
    :func:`otel_hcv.privacy.format_log_message`)."""
    return privacy.format_log_message(record.msg, record.args, record.name, settings)


class JsonStreamHandler(logging.StreamHandler):
    """A stream handler whose failures never print the record: ``logging.Handler.handleError``
    would write the raw message and arguments to stderr, bypassing every privacy rule."""

    def handleError(self, record: logging.LogRecord) -> None:
        accounting.count_dropped("logs", "export_failed")
        if logging.raiseExceptions and sys.stderr:
            with contextlib.suppress(Exception):
                sys.stderr.write(f"otel-hcv: a log record of {record.name!r} could not be written\n")


def logging_config(level: str = "INFO", *, loggers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``LOGGING`` dict: JSON lines on stdout for the root logger, Django and the server.

    The OTLP handler is added by :func:`otel_hcv.configure` on top of this, so the
    console output is not duplicated and a user's own handlers stay as they are.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": StructuredFormatter}},
        "handlers": {
            "console": {
                "class": "otel_hcv.logging.JsonStreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Replace Django's own plain-text handlers; records reach the root's handlers
            # (this console and the OTLP handler) once each.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": [], "level": level, "propagate": True},
            **(loggers or {}),
        },
    }
