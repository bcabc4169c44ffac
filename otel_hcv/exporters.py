"""Exporter wrappers: spans leave through the privacy rules, and lost telemetry is counted.

Redacting in the exporter (not in a span processor's ``on_end``) keeps the work off the
request path and catches every attribute, whoever set it: our code, an instrumentation, or
the SDK recording an exception. The rules themselves live in :mod:`otel_hcv.privacy`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
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


class RedactingSpanProcessor(SpanProcessor):
    """Wraps a span processor that encodes and sends spans itself, with no exporter to wrap
    (fastotel's native ``OTLPSpanProcessor``): each ended span passes :func:`redact_span` before
    the wrapped processor sees it. The screening runs in ``on_end``, on the thread that ended
    the span (the request's), not on an export thread as with :class:`RedactingSpanExporter`.

    ``build`` makes the wrapped processor, here and again in a forked child: a native export
    thread does not survive a fork, and unlike the SDK's batch processor the wrapped one may not
    start a new one (fastotel 0.9 does not). ``losses``, when given, reads the wrapped
    processor's running counts of spans it dropped (queue full) and failed to export; new ones
    are handed to ``report_dropped`` and counted."""

    def __init__(
        self,
        build: Callable[[], SpanProcessor],
        settings: SettingsSource,
        losses: Callable[[SpanProcessor], tuple[int, int]] | None = None,
        report_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._build = build
        self._processor = build()
        self._settings = settings
        self._losses = losses
        self._report_dropped = report_dropped
        self._seen_losses = (0, 0)
        # Processors a fork left behind in this process: kept, never shut down or freed, since a
        # thread that no longer exists may have held their locks.
        self._left_by_fork: list[SpanProcessor] = []
        if hasattr(os, "register_at_fork"):
            me = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _rebuild_after_fork(me))

    def _after_fork(self) -> None:
        self._left_by_fork.append(self._processor)
        self._processor = self._build()
        self._seen_losses = (0, 0)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None  # the wrapped processor is one that only exports

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return  # not exported: nothing to screen
        try:
            screened = redact_span(span, self._settings())
        except Exception:  # fail closed, as the exporter wrapper does
            accounting.count_dropped("traces", "redaction_failed")
            return
        self._processor.on_end(screened)
        if self._losses is not None:
            self._count_losses(self._losses(self._processor))

    def _count_losses(self, losses: tuple[int, int]) -> None:
        if losses == self._seen_losses:
            return
        (dropped, failed), (seen_dropped, seen_failed) = losses, self._seen_losses
        self._seen_losses = losses  # two threads racing here may count a loss twice: harmless
        if failed > seen_failed:
            accounting.count_dropped("traces", "export_failed", failed - seen_failed)
        if dropped > seen_dropped:
            if self._report_dropped is not None:
                self._report_dropped(dropped - seen_dropped)
            else:
                accounting.count_dropped("traces", "queue_full", dropped - seen_dropped)

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._processor.force_flush(timeout_millis)


def _rebuild_after_fork(processor: weakref.ref[RedactingSpanProcessor]) -> None:
    alive = processor()
    if alive is not None:
        alive._after_fork()


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
