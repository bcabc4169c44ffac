"""Span redaction on the way out, and the count of telemetry that never got out.

Redaction applies the privacy rules on the export thread.

Redacting in the exporter (not in a span processor's ``on_end``) keeps the work off the
request path and catches every attribute, whoever set it: our code, an instrumentation, or
the SDK recording an exception.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from otel_hcv import privacy, sdk
from otel_hcv.conf import Settings

# Attributes holding a URL or its query; query strings may carry anything a client sent.
_URL_KEYS = frozenset({"url.full", "http.url", "http.target"})
_QUERY_KEYS = frozenset({"url.query"})
# An exception's header line in a formatted traceback: "module.Type: message".
_EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(: .*)?$")
_TRACEBACK_HEADERS = ("Traceback (most recent call last):", "During handling", "The above exception")


def redact_url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        return privacy.REDACTED
    if not parts.query:
        return value
    return urlunsplit(parts._replace(query=privacy.REDACTED))


def redact_stacktrace(stacktrace: str) -> str:
    """Keep frames (file, line, code) and exception types; drop exception messages, which
    can hold whatever data the failing code had in hand."""
    lines = []
    for line in stacktrace.splitlines():
        if not line or line[:1].isspace() or line.startswith(_TRACEBACK_HEADERS):
            lines.append(line)  # frames, source lines and the traceback's own headers
            continue
        match = _EXCEPTION_LINE.match(line)
        if match is None:
            lines.append(privacy.REDACTED)  # a further line of a multi-line message
        elif match.group(2):
            lines.append(f"{match.group('type')}: {privacy.REDACTED}")
        else:
            lines.append(line)  # an exception without a message
    return "\n".join(lines)


def _redact_value(key: str, value: Any, settings: Settings) -> Any:
    if privacy.is_sensitive_key(key, settings):
        return privacy.REDACTED
    if key in _QUERY_KEYS:
        return privacy.REDACTED if value else value
    if key in _URL_KEYS and isinstance(value, str):
        return redact_url(value)
    if key == "exception.message":
        return privacy.REDACTED
    if key == "exception.stacktrace" and isinstance(value, str):
        return redact_stacktrace(value)
    if isinstance(value, str):
        return privacy.redact_text(value)
    if isinstance(value, tuple | list):
        return tuple(privacy.redact_text(v) if isinstance(v, str) else v for v in value)
    return value


def redact_attributes(attributes: Mapping[str, Any] | None, settings: Settings) -> dict[str, Any]:
    return {key: _redact_value(key, value, settings) for key, value in (attributes or {}).items()}


def _needs_redaction(attributes: Mapping[str, Any] | None, settings: Settings) -> bool:
    return any(_redact_value(key, value, settings) != value for key, value in (attributes or {}).items())


def _redact_status(status: Status) -> Status:
    # The SDK writes "Type: message" into the description of a span that raised.
    if not status.description:
        return status
    return Status(status.status_code, status.description.split(":", 1)[0])


def redact_span(span: ReadableSpan, settings: Settings) -> ReadableSpan:
    """``span`` itself when nothing in it needs redacting (the common case: no copy)."""
    if not (
        span.status.description
        or _needs_redaction(span.attributes, settings)
        or any(_needs_redaction(event.attributes, settings) for event in span.events)
    ):
        return span
    events = [
        Event(event.name, redact_attributes(event.attributes, settings), event.timestamp) for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes, settings),
        events=events,
        links=span.links,
        kind=span.kind,
        status=_redact_status(span.status),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


# Every combination starts at zero, so the series exist (and rate() works) before any loss.
_dropped: collections.Counter[tuple[str, str]] = collections.Counter(
    {(signal, error): 0 for signal in ("traces", "logs") for error in ("queue_full", "export_failed")}
)
_dropped_lock = threading.Lock()


def count_dropped(signal: str, error_type: str, items: int = 1) -> None:
    """Telemetry lost for good: ``signal`` is traces or logs, ``error_type`` queue_full
    (the batch queue overflowed) or export_failed (the exporter gave up after retries)."""
    with _dropped_lock:
        _dropped[signal, error_type] += items


def dropped_observations(options: CallbackOptions) -> list[Observation]:
    with _dropped_lock:
        counts = list(_dropped.items())
    return [Observation(n, {"otel.signal": signal, "error.type": error}) for (signal, error), n in counts]


class RedactingSpanExporter(SpanExporter):
    """Wraps the real exporter; every span it sends has passed :func:`redact_span`, and
    spans it could not send are counted."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        settings = sdk.current_settings()
        result = self._exporter.export([redact_span(span, settings) for span in spans])
        if result is not SpanExportResult.SUCCESS:
            count_dropped("traces", "export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    """Wraps the real log exporter and counts the records it could not send."""

    def __init__(self, exporter: LogRecordExporter) -> None:
        self._exporter = exporter

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        result = self._exporter.export(batch)
        if result is not LogRecordExportResult.SUCCESS:
            count_dropped("logs", "export_failed", len(batch))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
