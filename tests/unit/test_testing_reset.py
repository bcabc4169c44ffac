"""otel_hcv.testing.reset(): set-up tested in-process, then the test run's capture restored."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_hcv import bootstrap, lifecycle, state, summary, testing


@pytest.fixture
def fresh_process(monkeypatch):
    for signal in ("TRACES", "METRICS", "LOGS"):
        monkeypatch.setenv(f"OTEL_{signal}_EXPORTER", "none")
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    run_capture = testing.install()
    testing.reset()
    yield
    testing.reset()
    # The rest of the run records into the same in-memory capture again (tracers taken
    # from it at import time included).
    assert testing.install(run_capture) is run_capture


def test_configure_after_reset_builds_real_providers_once(fresh_process):
    assert state.active() is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

    telemetry = bootstrap.configure(service_name="reset-probe")

    assert telemetry is not None and not telemetry.for_tests and state.active() is telemetry
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "reset-probe"
    assert telemetry.logging_handler in logging.getLogger().handlers
    assert bootstrap.configure(service_name="ignored") is telemetry  # idempotent


def test_reset_undoes_a_setup(fresh_process):
    telemetry = bootstrap.configure(service_name="first")
    assert telemetry is not None
    summary.current.add_diagnosis(0.01, True)

    testing.reset()

    assert state.active() is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert telemetry.logging_handler not in logging.getLogger().handlers
    assert summary.current.summary(300)["diagnosis_summary"]["total"] == 0
    again = bootstrap.configure(service_name="second")
    assert again is not None and again is not telemetry
    assert trace.get_tracer_provider().resource.attributes["service.name"] == "second"


def test_once_marks_are_forgotten_by_reset(fresh_process):
    assert lifecycle.once("probe") is True
    assert lifecycle.once("probe") is False
    testing.reset()
    assert lifecycle.once("probe") is True
