"""record_diagnosis, trace_diagnosis, track_api_metrics and MetricsCollector."""

import json

import pytest
from django.contrib.auth.models import User
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from otel_hcv import MetricsCollector, record_diagnosis, trace_diagnosis
from otel_hcv.privacy import PSEUDONYMOUS_USER_ID_KEY, REDACTED, pseudonymize_user_id
from otel_hcv.state import current_settings


def points_by_attributes(points):
    return {tuple(sorted(p.attributes.items())): p for p in points}


def test_record_diagnosis_records_histogram_and_counter(otel_capture):
    record_diagnosis(0.25, True, category="1=Hepatitis")
    record_diagnosis(0.5, False, error_type="ValueError")

    histogram = points_by_attributes(otel_capture.metric_points("hcv.diagnosis.duration"))
    success = histogram[(("hcv.diagnosis.category", "1=Hepatitis"), ("hcv.diagnosis.outcome", "success"))]
    failure = histogram[(("error.type", "ValueError"), ("hcv.diagnosis.outcome", "failure"))]
    assert (success.count, success.sum) == (1, 0.25)
    assert (failure.count, failure.sum) == (1, 0.5)
    counts = {
        p.attributes["hcv.diagnosis.outcome"]: p.value for p in otel_capture.metric_points("hcv.diagnosis.requests")
    }
    assert counts == {"success": 1, "failure": 1}


def test_user_id_goes_on_the_span_pseudonymised_never_on_metrics(otel_capture):
    tracer = __import__("opentelemetry.trace", fromlist=["get_tracer"]).get_tracer("test")
    with tracer.start_as_current_span("request"):
        record_diagnosis(0.1, True, user_id=4242, category="0=Blood Donor")

    (span,) = otel_capture.spans("request")
    expected = pseudonymize_user_id(4242, current_settings())
    assert span.attributes[PSEUDONYMOUS_USER_ID_KEY] == expected
    assert "4242" not in json.dumps(dict(span.attributes))
    for name in ("hcv.diagnosis.duration", "hcv.diagnosis.requests"):
        for point in otel_capture.metric_points(name):
            assert set(point.attributes) <= {"hcv.diagnosis.outcome", "hcv.diagnosis.category", "error.type"}


def test_trace_diagnosis_success_sets_span_and_metrics(otel_capture):
    with trace_diagnosis(model_version="m-1") as diagnosis:
        diagnosis.set_result("3=Cirrhosis", 0.75)

    (span,) = otel_capture.spans("hcv.diagnosis")
    assert span.attributes["hcv.model.version"] == "m-1"
    assert span.attributes["hcv.diagnosis.category"] == "3=Cirrhosis"
    assert span.attributes["hcv.diagnosis.probability"] == 0.75
    assert span.status.status_code is StatusCode.UNSET
    (point,) = otel_capture.metric_points("hcv.diagnosis.requests")
    assert point.attributes == {"hcv.diagnosis.outcome": "success", "hcv.diagnosis.category": "3=Cirrhosis"}


def test_trace_diagnosis_failure_marks_span_counts_and_reraises(otel_capture):
    with pytest.raises(ZeroDivisionError), trace_diagnosis():
        raise ZeroDivisionError("ast=123.4 leaked into a message")

    (span,) = otel_capture.spans("hcv.diagnosis")
    assert span.status.status_code is StatusCode.ERROR
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ZeroDivisionError"
    # Exception messages can carry lab values: only the type leaves the process.
    assert event.attributes["exception.message"] == REDACTED
    assert "123.4" not in repr(span.to_json())
    (point,) = otel_capture.metric_points("hcv.diagnosis.requests")
    assert point.attributes == {"hcv.diagnosis.outcome": "failure", "error.type": "ZeroDivisionError"}


def server_span(otel_capture):
    (span,) = [s for s in otel_capture.spans() if s.kind.name == "SERVER"]
    return span


def api_points(otel_capture):
    return {
        (p.attributes["hcv.endpoint"], p.attributes["http.response.status_code"]): p
        for p in otel_capture.metric_points("hcv.api.requests")
    }


@pytest.mark.django_db
def test_drf_view_success_with_authenticated_user(client, otel_capture):
    user = User.objects.create_user("clinician", password="pw")
    client.force_login(user)

    response = client.post("/diagnose/", {"value": 7}, content_type="application/json")

    assert response.status_code == 200
    server = server_span(otel_capture)
    pseudonym = pseudonymize_user_id(user.pk, current_settings())
    assert server.attributes["hcv.endpoint"] == "test_diagnosis"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes[PSEUDONYMOUS_USER_ID_KEY] == pseudonym
    (diagnosis_span,) = otel_capture.spans("hcv.diagnosis")
    assert diagnosis_span.parent.span_id == server.context.span_id
    assert len(otel_capture.spans()) == 2  # the server span and the diagnosis: no extra span per view
    assert diagnosis_span.attributes[PSEUDONYMOUS_USER_ID_KEY] == pseudonym
    point = api_points(otel_capture)[("test_diagnosis", 200)]
    assert point.value == 1
    assert point.attributes["http.request.method"] == "POST"
    assert PSEUDONYMOUS_USER_ID_KEY not in point.attributes


@pytest.mark.django_db
def test_validation_error_is_a_4xx_not_an_error_span(client, otel_capture):
    response = client.post("/diagnose/", {"value": -1}, content_type="application/json")

    assert response.status_code == 400
    span = server_span(otel_capture)
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["http.response.status_code"] == 400
    assert "error.type" not in span.attributes  # a 4xx is the client's error, not the server's
    assert not [e for e in span.events if e.name == "exception"]
    assert "error.type" not in api_points(otel_capture)[("test_diagnosis", 400)].attributes
    (duration,) = [p for p in otel_capture.metric_points("http.server.request.duration")]
    assert duration.attributes["http.response.status_code"] == 400
    assert "error.type" not in duration.attributes


@pytest.mark.django_db
def test_exception_is_status_500_with_exception_event_and_reraised(client, otel_capture):
    client.raise_request_exception = True
    with pytest.raises(RuntimeError, match="unlucky"):
        client.post("/diagnose/", {"value": 13}, content_type="application/json")

    span = server_span(otel_capture)
    assert span.status.status_code is StatusCode.ERROR
    # One exception event, recorded by Django's instrumentation as the exception passes.
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == REDACTED
    # One error.type for the request on the span and both metrics; the event has the class.
    assert span.attributes["error.type"] == "500"
    point = api_points(otel_capture)[("test_diagnosis", 500)]
    assert point.attributes["error.type"] == "500"
    (duration,) = [p for p in otel_capture.metric_points("http.server.request.duration")]
    assert duration.attributes["error.type"] == "500"
    # The diagnosis is an operation, not a request: its error.type is the exception's class.
    (diagnosis,) = otel_capture.spans("hcv.diagnosis")
    assert diagnosis.attributes["error.type"] == "RuntimeError"


@pytest.mark.django_db
def test_plain_function_view_uses_its_name(client, otel_capture):
    response = client.get("/plain/")

    assert response.status_code == 201
    assert api_points(otel_capture)[("plain_view", 201)].attributes["http.request.method"] == "GET"
    span = server_span(otel_capture)
    assert span.attributes["hcv.endpoint"] == "plain_view"
    assert PSEUDONYMOUS_USER_ID_KEY not in span.attributes  # anonymous request


@pytest.mark.django_db
async def test_async_views(async_client, otel_capture):
    response = await async_client.get("/async/")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        await async_client.get("/async-fail/")

    points = api_points(otel_capture)
    assert points[("async_endpoint", 200)].value == 1
    assert points[("failing_async", 500)].attributes["error.type"] == "500"
    (failed,) = [s for s in otel_capture.spans() if s.attributes.get("hcv.endpoint") == "failing_async"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in failed.events if e.name == "exception"] == ["ValueError"]


def test_metrics_collector_keeps_the_plan_names(otel_capture):
    MetricsCollector.record_diagnosis_metrics(duration=0.2, success=True, user_id=None)
    MetricsCollector.record_api_metrics(endpoint="hcv_diagnosis", method="post", status_code=201, duration=0.3)

    (diagnosis,) = otel_capture.metric_points("hcv.diagnosis.duration")
    assert (diagnosis.count, diagnosis.sum) == (1, 0.2)
    (api,) = otel_capture.metric_points("hcv.api.request.duration")
    assert api.attributes == {
        "hcv.endpoint": "hcv_diagnosis",
        "http.request.method": "POST",
        "http.response.status_code": 201,
    }
    assert (api.count, api.sum) == (1, 0.3)


def test_unknown_http_methods_collapse_to_other(otel_capture):
    MetricsCollector.record_api_metrics("x", "BREW", 418, 0.01)
    (point,) = otel_capture.metric_points("hcv.api.requests")
    assert point.attributes["http.request.method"] == "_OTHER"


@pytest.mark.django_db
def test_server_span_carries_endpoint_route_and_user(client, otel_capture):
    user = User.objects.create_user("nurse", password="pw")
    client.force_login(user)

    client.post("/diagnose/", {"value": 1}, content_type="application/json")

    server = server_span(otel_capture)
    assert server.attributes["http.route"] == "diagnose/"
    assert server.attributes["http.request.method"] == "POST"  # stable HTTP conventions
    assert server.attributes["hcv.endpoint"] == "test_diagnosis"
    assert server.attributes[PSEUDONYMOUS_USER_ID_KEY] == pseudonymize_user_id(user.pk, current_settings())


def test_health_and_metrics_urls_are_not_traced(client, otel_capture):
    assert client.get("/metrics/").status_code == 200
    assert otel_capture.spans() == []


def test_exception_outside_a_server_span_is_recorded_by_the_decorator(otel_capture):
    from django.test import RequestFactory

    from tests.testapp.views import DiagnoseView

    request = RequestFactory().post("/diagnose/", {"value": 13}, content_type="application/json")
    with trace.get_tracer("job").start_as_current_span("batch job"), pytest.raises(RuntimeError):
        DiagnoseView.as_view()(request)
    (span,) = otel_capture.spans("batch job")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in span.events] == ["RuntimeError"]


def test_request_counters_are_the_histogram_counts_recorded_once(otel_capture):
    """hcv.api.requests and hcv.diagnosis.requests count what their duration histograms
    measured, attribute set by attribute set, across collections and without a second
    measurement per request."""
    calls = [("diagnose", "POST", 200), ("diagnose", "POST", 400), ("health", "GET", 200), ("diagnose", "POST", 500)]
    for round_ in range(3):
        for endpoint, method, status in calls[: round_ + 2]:
            MetricsCollector.record_api_metrics(endpoint, method, status, 0.01)
        record_diagnosis(0.02, True, category="0=Blood Donor")
        record_diagnosis(0.03, round_ != 1, error_type="ValueError")
        for histogram, counter in (
            ("hcv.api.request.duration", "hcv.api.requests"),
            ("hcv.diagnosis.duration", "hcv.diagnosis.requests"),
        ):
            durations = otel_capture.metric_points(histogram)
            counts = otel_capture.metric_points(counter)
            expected: dict = {}
            for point in durations:
                key = tuple(sorted(point.attributes.items()))
                expected[key] = expected.get(key, 0) + point.count
            got: dict = {}
            for point in counts:
                key = tuple(sorted(point.attributes.items()))
                got[key] = got.get(key, 0) + point.value
            assert got == expected and got, (round_, counter)
    api_total = sum(p.value for p in otel_capture.metric_points("hcv.api.requests"))
    assert api_total == 2 + 3 + 4


def test_a_forked_child_counts_its_own_requests_only(otel_capture):
    import os

    from otel_hcv import metrics

    MetricsCollector.record_api_metrics("diagnose", "POST", 200, 0.01)
    assert metrics.api_counts.observe(None)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        os.write(write_end, b"1" if metrics.api_counts.observe(None) == [] else b"0")
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert metrics.api_counts.observe(None)  # the parent keeps its counts
