"""Exporter wrappers: spans leave through the privacy rules, and lost telemetry is counted.

Redacting in the exporter (not in a span processor's ``on_end``) keeps the work off the
request path and catches every attribute, whoever set it: our code, an instrumentation, or
the SDK recording an exception. The rules themselves live in :mod:`otel_hcv.privacy`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext, Status, TraceState

from otel_hcv import accounting, privacy
from otel_hcv.conf import Settings

SettingsSource = Callable[[], Settings]


def _screen_status(status: Status, settings: Settings) -> Status:
    # The SDK writes "Type: message" into the description of a span that raised: the type stays.
    if not status.description:
        return status
    head = status.description.split(":", 1)[0].strip()
    if privacy.TYPE_NAME.fullmatch(head):
        return Status(status.status_code, head)
    return Status(status.status_code, privacy.screen_name(status.description, settings))


def _screen_context(context: SpanContext | None, settings: Settings) -> SpanContext | None:
    if context is None or not context.trace_state:
        return context
    entries = list(context.trace_state.items())
    kept = privacy.screen_trace_state(entries, settings)
    if len(kept) == len(entries):
        return context
    return SpanContext(
        context.trace_id, context.span_id, context.is_remote, context.trace_flags, TraceState(kept)
    )


def _screen_event(event: Event, settings: Settings) -> Event:
    attributes = privacy.screen_attributes(event.attributes, settings)
    name = privacy.screen_name(event.name, settings)
    if attributes is None and name == event.name:
        return event
    return Event(name, event.attributes if attributes is None else attributes, event.timestamp)


def _screen_link(link: Link, settings: Settings) -> Link:
    attributes = privacy.screen_attributes(link.attributes, settings)
    context = _screen_context(link.context, settings)
    if attributes is None and context is link.context:
        return link
    return Link(context, link.attributes if attributes is None else attributes)


def redact_span(span: ReadableSpan, settings: Settings) -> ReadableSpan:
    """``span`` as it may leave the process; ``span`` itself when nothing in it changes (the
    common case: no copy). Fails closed: a span that cannot be screened is not exported."""
    attributes = privacy.screen_attributes(span.attributes, settings)
    name = privacy.screen_name(span.name, settings)
    events = [_screen_event(event, settings) for event in span.events]
    links = [_screen_link(link, settings) for link in span.links]
    status = _screen_status(span.status, settings)
    context = _screen_context(span.context, settings)
    parent = _screen_context(span.parent, settings)
    if (
        attributes is None
        and name == span.name
        and status is span.status
        and context is span.context
        and parent is span.parent
        and all(new is old for new, old in zip(events, span.events, strict=True))
        and all(new is old for new, old in zip(links, span.links, strict=True))
    ):
        return span
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=span.resource,
        attributes=span.attributes if attributes is None else attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Wraps the real exporter; every span it sends has passed :func:`redact_span` with the
    settings its source gives, and spans it could not send are counted."""

    def __init__(self, exporter: SpanExporter, settings: SettingsSource) -> None:
        self._exporter = exporter
        self._settings = settings

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        settings = self._settings()
        screened = []
        for span in spans:
            try:
                screened.append(redact_span(span, settings))
            except Exception:  # fail closed: a span the rules cannot handle does not leave
                accounting.count_dropped("traces", "redaction_failed")
        result = self._exporter.export(screened)
        if result is not SpanExportResult.SUCCESS:
            accounting.count_dropped("traces", "export_failed", len(spans))
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
            accounting.count_dropped("logs", "export_failed", len(batch))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
