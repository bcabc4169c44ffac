"""The pytest plugin as a user's project sees it (a separate pytest run)."""

pytest_plugins = ["pytester"]

USER_TESTS = """
import logging
from opentelemetry import trace
from otel_hcv import record_diagnosis

def test_spans_metrics_and_logs_are_captured(otel_capture):
    with trace.get_tracer("user").start_as_current_span("user-span"):
        logging.getLogger("user").warning("something happened")
    record_diagnosis(0.1, True, category="0=Blood Donor")
    assert [s.name for s in otel_capture.spans()] == ["user-span"]
    (point,) = otel_capture.metric_points("hcv.diagnosis.requests")
    assert point.value == 1
    assert [r.log_record.body for r in otel_capture.logs()] == ["something happened"]

def test_each_test_starts_empty(otel_capture):
    assert otel_capture.spans() == []
    assert otel_capture.metric_points("hcv.diagnosis.requests") == []
    assert otel_capture.logs() == []

def test_nothing_is_exported_over_the_network():
    provider = trace.get_tracer_provider()
    processors = provider._active_span_processor._span_processors
    exporters = [p.span_exporter for p in processors]
    assert [type(e).__name__ for e in exporters] == ["RedactingSpanExporter"]
    assert type(exporters[0]._exporter).__name__ == "InMemorySpanExporter"
"""


def test_plugin_in_a_users_project(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_plugin_can_be_turned_off(pytester):
    pytester.makeini("[pytest]\notel_hcv_capture = false\n")
    pytester.makepyfile(
        test_off="""
from opentelemetry import trace
def test_no_providers_installed():
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
