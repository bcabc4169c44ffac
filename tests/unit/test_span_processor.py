"""SPAN_PROCESSOR: the SDK's batch processor by default, fastotel's native one on request, and
spans pass the privacy rules on either path (otel_hcv.exporters.RedactingSpanProcessor screens
them before a processor that encodes and sends them itself sees them)."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_hcv import accounting, bootstrap
from otel_hcv.conf import ConfigurationError, Settings, load
from otel_hcv.exporters import RedactingSpanExporter, RedactingSpanProcessor
from otel_hcv.privacy import REDACTED
from otel_hcv.receiver import OtlpReceiver, attributes

SETTINGS = Settings(pseudonym_key="k")
HAS_FASTOTEL = importlib.util.find_spec("fastotel") is not None


class Recording(SpanProcessor):
    """Stands in for a processor that exports: keeps what it was handed, counts losses."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []
        self.dropped = 0
        self.failed = 0
        self.pid = os.getpid()

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)

    def losses(self) -> tuple[int, int]:
        return self.dropped, self.failed


def end_span(processor: SpanProcessor, sampler=None, **attributes) -> None:
    provider = TracerProvider(**({"sampler": sampler} if sampler else {}))
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span("work", attributes=attributes):
        pass


def test_the_wrapped_processor_sees_spans_screened():
    inner = Recording()
    end_span(RedactingSpanProcessor(lambda: inner, lambda: SETTINGS), **{"hcv.lab.alb": 41.2, "url.path": "/api/"})
    (span,) = inner.ended
    assert span.attributes["hcv.lab.alb"] == REDACTED
    assert span.attributes["url.path"] == "/api/"


def test_unsampled_spans_are_neither_screened_nor_handed_on():
    inner = Recording()
    end_span(RedactingSpanProcessor(lambda: inner, lambda: SETTINGS), sampler=ALWAYS_OFF, alb=41.2)
    assert inner.ended == []


def test_a_span_the_rules_cannot_screen_is_dropped_and_counted():
    def broken_settings() -> Settings:
        raise RuntimeError("rules unavailable")

    inner = Recording()
    before = accounting.dropped_count("traces", "redaction_failed")
    end_span(RedactingSpanProcessor(lambda: inner, broken_settings), alb=41.2)
    assert inner.ended == []
    assert accounting.dropped_count("traces", "redaction_failed") == before + 1


def test_losses_of_the_wrapped_processor_are_counted_once():
    inner = Recording()
    reported: list[int] = []
    processor = RedactingSpanProcessor(lambda: inner, lambda: SETTINGS, Recording.losses, reported.append)
    failed_before = accounting.dropped_count("traces", "export_failed")
    end_span(processor)
    inner.dropped, inner.failed = 3, 2
    end_span(processor)
    end_span(processor)  # nothing new
    inner.dropped = 4
    end_span(processor)
    assert reported == [3, 1]
    assert accounting.dropped_count("traces", "export_failed") == failed_before + 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_processor_of_its_own():
    processor = RedactingSpanProcessor(Recording, lambda: SETTINGS)
    parents = processor._processor
    child = os.fork()
    if child == 0:  # the child reports through its exit code only
        ok = processor._processor is not parents and processor._processor.pid == os.getpid()
        os._exit(0 if ok and processor._left_by_fork == [parents] else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert processor._processor is parents  # the parent keeps its own


def test_the_sdk_processor_is_the_default():
    processor = bootstrap._span_processor(Settings(), bootstrap.OTLP_HTTP_EXPORTER, OTLPSpanExporter)
    assert isinstance(processor, BatchSpanProcessor)
    assert isinstance(processor._batch_processor._exporter, RedactingSpanExporter)
    processor.shutdown()


def test_fastotel_over_grpc_falls_back_to_the_sdk_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="otel_hcv.bootstrap"):
        processor = bootstrap._span_processor(Settings(span_processor="fastotel"), "otlp_proto_grpc", OTLPSpanExporter)
    assert isinstance(processor, BatchSpanProcessor)
    assert "OTLP over HTTP only" in caplog.text
    processor.shutdown()


def test_fastotel_not_installed_falls_back_to_the_sdk_and_names_the_extra(caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastotel", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="otel_hcv.bootstrap"):
        processor = bootstrap._span_processor(
            Settings(span_processor="fastotel"), bootstrap.OTLP_HTTP_EXPORTER, OTLPSpanExporter
        )
    assert isinstance(processor, BatchSpanProcessor)
    assert "otel-hcv[fastotel]" in caplog.text
    processor.shutdown()


@pytest.mark.skipif(not HAS_FASTOTEL, reason="the optional extra otel-hcv[fastotel] is not installed")
def test_fastotel_sends_behind_the_privacy_rules(monkeypatch):
    from fastotel import OTLPSpanProcessor

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    processor = bootstrap._span_processor(
        Settings(span_processor="fastotel"), bootstrap.OTLP_HTTP_EXPORTER, OTLPSpanExporter
    )
    try:
        assert isinstance(processor, RedactingSpanProcessor)
        assert isinstance(processor._processor, OTLPSpanProcessor)
        assert processor._losses is not None and processor._losses(processor._processor) == (0, 0)
    finally:
        processor.shutdown()  # nothing queued: returns at once


@pytest.mark.skipif(not HAS_FASTOTEL, reason="the optional extra otel-hcv[fastotel] is not installed")
def test_fastotel_exports_from_a_child_forked_after_spans_were_sent():
    # fastotel 0.9 alone exports nothing from such a child (its README says so); the wrapper
    # builds the child a processor of its own.
    from fastotel import OTLPSpanProcessor

    with OtlpReceiver() as receiver:
        endpoint = f"{receiver.endpoint}/v1/traces"
        processor = RedactingSpanProcessor(
            lambda: OTLPSpanProcessor(endpoint=endpoint, schedule_delay_millis=50), lambda: SETTINGS
        )
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("before-fork"):
            pass
        assert processor.force_flush(5000)
        child = os.fork()
        if child == 0:
            with tracer.start_as_current_span("in-child", attributes={"alb": 41.2}):
                pass
            os._exit(0 if processor.force_flush(5000) else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        processor.shutdown()
        spans = {span.name: attributes(span.attributes) for _, span in receiver.spans()}
    assert set(spans) == {"before-fork", "in-child"}
    assert spans["in-child"]["alb"] == REDACTED


def test_span_processor_setting_is_checked():
    assert load(environ={"HCV_SPAN_PROCESSOR": "fastotel"}).span_processor == "fastotel"
    with pytest.raises(ConfigurationError, match="HCV_SPAN_PROCESSOR must be 'sdk' or 'fastotel'"):
        load(environ={"HCV_SPAN_PROCESSOR": "rust"})
