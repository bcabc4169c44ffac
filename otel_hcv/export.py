"""Span redaction on the way out: what the privacy rules allow, applied on the export thread.

Redacting in the exporter (not in a span processor's ``on_end``) keeps the work off the
request path and catches every attribute, whoever set it: our code, an instrumentation, or
the SDK recording an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


def redact_attributes(attributes: Mapping[str, Any] | None, settings: Settings) -> dict[str, Any]:
    redacted: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if privacy.is_sensitive_key(key, settings):
            redacted[key] = privacy.REDACTED
        elif key in _QUERY_KEYS:
            redacted[key] = privacy.REDACTED if value else value
        elif key in _URL_KEYS and isinstance(value, str):
            redacted[key] = redact_url(value)
        elif key == "exception.message":
            redacted[key] = privacy.REDACTED
        elif key == "exception.stacktrace" and isinstance(value, str):
            redacted[key] = redact_stacktrace(value)
        elif isinstance(value, str):
            redacted[key] = privacy.redact_text(value)
        elif isinstance(value, Sequence) and not isinstance(value, bytes):
            redacted[key] = tuple(privacy.redact_text(v) if isinstance(v, str) else v for v in value)
        else:
            redacted[key] = value
    return redacted


def _redact_status(status: Status) -> Status:
    # The SDK writes "Type: message" into the description of a span that raised.
    if not status.description:
        return status
    return Status(status.status_code, status.description.split(":", 1)[0])


def redact_span(span: ReadableSpan, settings: Settings) -> ReadableSpan:
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


class RedactingSpanExporter(SpanExporter):
    """Wraps the real exporter; every span it sends has passed :func:`redact_span`."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        settings = sdk.current_settings()
        return self._exporter.export([redact_span(span, settings) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
