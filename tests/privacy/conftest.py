"""What left the process in a test, gathered for the canary search: spans and log records as the
OTLP exporters encode them (protobuf bytes), metrics likewise, and the JSON console lines.

With ``HCV_TEST_SPAN_PROCESSOR=fastotel`` (and the extra ``otel-hcv[fastotel]`` installed) every span
also goes through the processor ``SPAN_PROCESSOR="fastotel"`` builds, to a loopback receiver, and
the bytes fastotel sent are searched too."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import SpanProcessor

from otel_hcv import bootstrap, conf, state
from otel_hcv.logging import JsonStreamHandler, StructuredFormatter
from otel_hcv.receiver import OtlpReceiver
from otel_hcv.testing import Capture, install
from tests.privacy.canaries import Leak, find_leaks

SPAN_PROCESSOR_UNDER_TEST = os.environ.get("HCV_TEST_SPAN_PROCESSOR", "sdk")


@dataclass
class NativeExport:
    """The span processor a non-default SPAN_PROCESSOR builds, sending to ``receiver``."""

    processor: SpanProcessor
    receiver: OtlpReceiver

    def take(self) -> list[bytes]:
        """The requests received since the last call, as sent (only spans are sent here)."""
        assert self.processor.force_flush(10_000)
        with self.receiver.lock:
            raw = list(self.receiver.raw)
            self.receiver.raw.clear()
            self.receiver.requests["traces"].clear()
        return raw


def _spans_of(request: ExportTraceServiceRequest) -> Iterator[Any]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


@dataclass
class Outputs:
    capture: Capture
    console: io.StringIO
    native: NativeExport | None = field(default=None)

    def gathered(self) -> list[tuple[str, bytes | str]]:
        spans = self.capture.spans()
        logs = self.capture.logs()
        metrics = self.capture.metric_reader.get_metrics_data()
        found: list[tuple[str, bytes | str]] = [("console JSON lines", self.console.getvalue())]
        if self.native is not None:
            sent = self.native.take()
            requests = [ExportTraceServiceRequest.FromString(body) for body in sent]
            span_ids = {span.span_id for request in requests for span in _spans_of(request)}
            # The native path exported exactly the spans the in-memory path saw: the search below covers them.
            assert span_ids == {span.context.span_id.to_bytes(8, "big") for span in spans}
            found.append((f"OTLP spans sent by {SPAN_PROCESSOR_UNDER_TEST}", b"".join(sent)))
        if spans:
            found.append(("OTLP spans", encode_spans(spans).SerializeToString()))
            found.extend((f"span {span.name}", span.to_json()) for span in spans)
        if logs:
            found.append(("OTLP log records", encode_logs(logs).SerializeToString()))
        if metrics is not None:
            found.append(("OTLP metrics", encode_metrics(metrics).SerializeToString()))
        return found

    def leaks(self, *extra: str) -> list[Leak]:
        return find_leaks(self.gathered(), extra)


@pytest.fixture(scope="session")
def native_export() -> Iterator[NativeExport | None]:
    """The processor SPAN_PROCESSOR=HCV_TEST_SPAN_PROCESSOR builds, beside the in-memory one, for the
    whole session (a tracer provider cannot take a processor off again)."""
    if SPAN_PROCESSOR_UNDER_TEST == "sdk":
        yield None
        return
    settings = conf.Settings(span_processor=SPAN_PROCESSOR_UNDER_TEST)
    capture = install()
    assert capture.providers is not None
    with OtlpReceiver() as receiver:
        variables = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.endpoint}/v1/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            processor = bootstrap._span_processor(settings, bootstrap.OTLP_HTTP_EXPORTER, OTLPSpanExporter)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        # Not silently the SDK's: the processor asked for, behind the privacy rules.
        assert type(processor).__name__ == "RedactingSpanProcessor", processor
        assert processor._settings is state.current_settings
        capture.providers[0].add_span_processor(processor)
        yield NativeExport(processor, receiver)
        processor.shutdown()


@pytest.fixture
def outputs(otel_capture: Capture, native_export: NativeExport | None) -> Iterator[Outputs]:
    if native_export is not None:
        native_export.take()  # what earlier tests left
    console = io.StringIO()
    handler = JsonStreamHandler(console)
    handler.setFormatter(StructuredFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield Outputs(otel_capture, console, native_export)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
