"""What left the process in a test, gathered for the canary search: spans and log records as the
OTLP exporters encode them (protobuf bytes), metrics likewise, and the JSON console lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_hcv.logging import JsonStreamHandler, StructuredFormatter
from otel_hcv.testing import Capture
from tests.privacy.canaries import Leak, find_leaks


@dataclass
class Outputs:
    capture: Capture
    console: io.StringIO

    def gathered(self) -> list[tuple[str, bytes | str]]:
        spans = self.capture.spans()
        logs = self.capture.logs()
        metrics = self.capture.metric_reader.get_metrics_data()
        found: list[tuple[str, bytes | str]] = [("console JSON lines", self.console.getvalue())]
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


@pytest.fixture
def outputs(otel_capture: Capture) -> Iterator[Outputs]:
    console = io.StringIO()
    handler = JsonStreamHandler(console)
    handler.setFormatter(StructuredFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield Outputs(otel_capture, console)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
