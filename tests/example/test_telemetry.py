"""What the example's diagnosis view hands to otel_hcv, seen through the package's pytest plugin.

These need the real otel_hcv package: ``otel_capture`` comes from its pytest plugin.
"""

import json

import pytest
from opentelemetry.trace import StatusCode

from diagnosis import model
from otel_hcv.attributes import CATEGORY, ERROR_TYPE, MODEL_VERSION

pytestmark = pytest.mark.django_db

# Distinctive values that would stand out anywhere in the captured telemetry.
CANARY_LAB_VALUES = {"alb": 41.37, "alp": 63.19, "alt": 27.83, "bil": 8.17, "crea": 81.73, "ggt": 31.67}


@pytest.fixture
def canary_lab_values(lab_values):
    return {**lab_values, **CANARY_LAB_VALUES}


def post_diagnosis(client, body, **headers):
    return client.post("/api/diagnose/", json.dumps(body), content_type="application/json", **headers)


def span_text(capture) -> str:
    spans = capture.spans()
    parts = [str(dict(span.attributes or {})) for span in spans]
    parts += [str(dict(event.attributes or {})) for span in spans for event in span.events]
    return " ".join(parts)


def log_text(capture) -> str:
    records = [record.log_record for record in capture.logs()]
    return " ".join(f"{record.body} {dict(record.attributes or {})}" for record in records)


def test_diagnosis_span_carries_the_result_and_no_lab_value(client, canary_lab_values, otel_capture):
    response = post_diagnosis(client, canary_lab_values)
    assert response.status_code == 200
    [span] = otel_capture.spans("hcv.diagnosis")
    assert span.attributes[MODEL_VERSION] == model.MODEL_VERSION
    assert span.attributes[CATEGORY] == response.json()["category"]
    captured = span_text(otel_capture) + log_text(otel_capture)
    for name, value in CANARY_LAB_VALUES.items():
        assert repr(value) not in captured, name


def test_injected_failure_marks_the_diagnosis_span(client, canary_lab_values, otel_capture, settings):
    settings.HCV_ALLOW_FAILURE_INJECTION = True
    client.raise_request_exception = False
    response = post_diagnosis(client, canary_lab_values, HTTP_X_HCV_FAIL="diagnosis")
    assert response.status_code == 500
    [span] = otel_capture.spans("hcv.diagnosis")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == "RuntimeError"
    # The diagnosis span keeps the exception type only: in a real failure the message could
    # carry patient data.
    [exception_event] = span.events
    assert exception_event.attributes["exception.type"] == "RuntimeError"
    assert "injected diagnosis failure" not in str(dict(exception_event.attributes))
    captured = span_text(otel_capture) + log_text(otel_capture)
    for name, value in CANARY_LAB_VALUES.items():
        assert repr(value) not in captured, name


def test_invalid_request_never_reaches_the_model(client, canary_lab_values, otel_capture):
    response = post_diagnosis(client, {**canary_lab_values, "alb": "lots"})
    assert response.status_code == 400
    assert otel_capture.spans("hcv.diagnosis") == []
