"""A pytest plugin for tests of code that otel_hcv instruments.

Installed with the package (``pytest11`` entry point). At start-up, before Django is set
up, it installs in-memory providers in place of the OTLP exporters, so test runs never
export over the network. The ``otel_capture`` fixture hands a test the spans, metric
points and log records its code produced::

    def test_diagnose(client, otel_capture):
        client.post("/api/diagnose/", {...}, content_type="application/json")
        assert otel_capture.spans("hcv.diagnosis")
        assert otel_capture.metric_points("hcv.diagnosis.requests")

Turn it off with ``-p no:otel_hcv`` or ``otel_hcv_capture = false`` in the ini file.

:func:`reset` returns the process to the state before any setup, so a test can call
:func:`otel_hcv.configure` (or :func:`install`) again in-process and see what it does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, Sum
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_hcv import bootstrap, conf, lifecycle, state
from otel_hcv.exporters import RedactingSpanExporter
from otel_hcv.metrics import allow_list_views


@dataclass
class Capture:
    """What the code under test exported, held in memory."""

    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    log_exporter: InMemoryLogRecordExporter
    providers: tuple[TracerProvider, MeterProvider, LoggerProvider] | None = None
    _collected: list[tuple[str, Any]] = field(default_factory=list)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.span_exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def _collect(self) -> None:
        data = self.metric_reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    # A counter observed at collection (hcv.api.requests) reports every
                    # attribute set each time; a delta of 0 there means nothing happened.
                    idle = isinstance(metric.data, Sum) and metric.data.is_monotonic
                    self._collected.extend(
                        (metric.name, p) for p in metric.data.data_points if not (idle and p.value == 0)
                    )

    def metric_points(self, name: str) -> list[Any]:
        """Data points of metric ``name`` recorded during the test.

        Points are deltas, one per attribute set per collection: asking again after
        more measurements returns the earlier points plus new ones. A counter's point
        that counted nothing in its interval is left out.
        """
        self._collect()
        return [point for metric_name, point in self._collected if metric_name == name]

    def logs(self) -> list[ReadableLogRecord]:
        return list(self.log_exporter.get_finished_logs())

    def clear(self) -> None:
        self.span_exporter.clear()
        self.metric_reader.get_metrics_data()  # drops what was recorded so far
        self._collected.clear()
        self.log_exporter.clear()


_capture: Capture | None = None


def install(capture: Capture | None = None) -> Capture:
    """Install in-memory providers as this process's telemetry setup (once).

    After :func:`reset`, ``install(capture)`` puts an earlier capture's providers back, so
    tracers and meters taken from them before the reset record into it again.
    """
    global _capture
    if _capture is not None:
        return _capture
    settings = conf.Settings()
    if capture is not None and capture.providers is not None:
        bootstrap.install_for_tests(settings, *capture.providers)
        _capture = capture
        return capture
    resource = Resource.create(bootstrap.resource_attributes(settings))
    span_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    # Tests see spans as they would leave the process: redacted.
    redacting = RedactingSpanExporter(span_exporter, state.current_settings)
    tracer_provider.add_span_processor(SimpleSpanProcessor(redacting))
    delta = AggregationTemporality.DELTA
    metric_reader = InMemoryMetricReader(
        preferred_temporality={Counter: delta, ObservableCounter: delta, UpDownCounter: delta, Histogram: delta}
    )
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[metric_reader], views=allow_list_views()
    )
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    bootstrap.install_for_tests(settings, tracer_provider, meter_provider, logger_provider)
    _capture = Capture(
        span_exporter, metric_reader, log_exporter, providers=(tracer_provider, meter_provider, logger_provider)
    )
    return _capture


def reset(timeout_seconds: float = 1.0) -> None:
    """Undo every setup of this process, as if otel-hcv had never run in it.

    Shuts the active providers down (waiting at most ``timeout_seconds``), takes the OTLP
    logging handler off the root logger, un-instruments Django, forgets the active setup,
    the launch flags, every "done once" mark and each module's per-process state (the same
    resets a forked child runs), and clears the OpenTelemetry API's global providers, which
    the API lets a process set only once (its own test utilities clear them the same way).
    For tests only.
    """
    global _capture
    telemetry = state.active()
    if telemetry is not None:
        if telemetry.providers is not None:
            bootstrap.shutdown(timeout_seconds)
        if telemetry.logging_handler is not None:
            logging.getLogger().removeHandler(telemetry.logging_handler)
    bootstrap.uninstrument_django()
    lifecycle.reset_process_state()
    state.reset_launch()
    _clear_global_providers()
    _capture = None


def _clear_global_providers() -> None:
    from opentelemetry import trace
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal._PROXY_LOGGER_PROVIDER = logs_internal.ProxyLoggerProvider()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "otel_hcv_capture",
        "Install otel_hcv's in-memory telemetry providers for the test run (default true).",
        type="bool",
        default=True,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # Before pytest-django sets Django up, whose app ready() would install OTLP exporters.
    if early_config.getini("otel_hcv_capture"):
        install()


@pytest.fixture
def otel_capture() -> Iterator[Capture]:
    """Spans, metric points and log records produced during the test."""
    capture = install()
    capture.clear()
    yield capture
