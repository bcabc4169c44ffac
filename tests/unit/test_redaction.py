"""Every signal goes through the privacy rules: spans (attributes, events, status), log
records (message arguments and extras) and metric attributes (an allow-list)."""

import logging
import traceback

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from otel_hcv import privacy
from otel_hcv.conf import Settings
from otel_hcv.privacy import REDACTED

SETTINGS = Settings(pseudonym_key="k", sensitive_keys=("mrn",))


def redact_attributes(attributes, settings):
    screened = privacy.screen_attributes(attributes, settings)
    return dict(attributes) if screened is None else screened


def redact_url(value):
    return privacy.screen_url(value, SETTINGS)


redact_stacktrace = privacy.screen_stacktrace


def test_span_attribute_rules():
    redacted = redact_attributes(
        {
            "hcv.lab.alb": 41.2,
            "ALT": 30,
            "http.request.header.authorization": ("Token abc",),
            "http.request.header.cookie": ("sessionid=1",),
            "mrn": "12345",
            "url.query": "alb=41.2&ast=30",
            "url.full": "http://h/api/diagnose/?email=a@b.org#x",
            "http.target": "/api/diagnose/?ggt=31",
            "hcv.note": "mail jane@example.org, Bearer eyJhbGciOi.eyJzdWIi.sig",
            "hcv.tags": ("ok", "to jane@example.org"),
            "http.response.status_code": 200,
            "url.path": "/api/diagnose/",
        },
        SETTINGS,
    )
    assert redacted == {
        "hcv.lab.alb": REDACTED,
        "ALT": REDACTED,
        "http.request.header.authorization": REDACTED,
        "http.request.header.cookie": REDACTED,
        "mrn": REDACTED,
        "url.query": REDACTED,
        "url.full": f"http://h/api/diagnose/?{REDACTED}",
        "http.target": f"/api/diagnose/?{REDACTED}",
        "hcv.note": f"mail {REDACTED}, {REDACTED}",
        "hcv.tags": ("ok", f"to {REDACTED}"),
        "http.response.status_code": 200,
        "url.path": "/api/diagnose/",
    }


def test_url_without_query_is_unchanged():
    assert redact_url("https://h/a/b") == "https://h/a/b"


def test_stacktrace_keeps_frames_and_types_not_messages():
    alb, ast = 41.37, 29.9  # data in hand when the code fails (source lines show names only)
    try:
        try:
            raise KeyError(f"alb={alb}")
        except KeyError as inner:
            raise RuntimeError(f"could not diagnose\nvalues: {alb}, {ast}") from inner
    except RuntimeError as exc:
        text = "".join(traceback.format_exception(exc))
    redacted = redact_stacktrace(text)
    assert "41.37" not in redacted and "29.9" not in redacted
    assert f"RuntimeError: {REDACTED}" in redacted
    assert f"KeyError: {REDACTED}" in redacted
    assert 'raise RuntimeError(f"could not diagnose' in redacted  # source lines stay (they are code)
    assert "test_redaction.py" in redacted


def test_exported_spans_are_redacted(otel_capture):
    tracer = trace.get_tracer("third-party")
    crea = 81.73
    try:
        with tracer.start_as_current_span("careless", attributes={"crea": crea, "url.query": "q=1"}):
            raise ValueError(f"crea was {crea}")
    except ValueError:
        pass
    (span,) = otel_capture.spans("careless")
    assert span.attributes["crea"] == REDACTED
    assert span.attributes["url.query"] == REDACTED
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"
    (event,) = span.events
    assert event.attributes["exception.message"] == REDACTED
    assert "81.73" not in span.to_json()


def test_status_without_description_is_kept(otel_capture):
    with trace.get_tracer("t").start_as_current_span("plain") as span:
        span.set_status(Status(StatusCode.OK))
    (exported,) = otel_capture.spans("plain")
    assert exported.status.status_code is StatusCode.OK


def test_log_message_arguments_are_redacted_before_formatting(otel_capture, caplog):
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("careless")
    logger.info("request data: %s", {"alb": 41.37, "sex": "f", "note": "fine"})
    logger.info("by name %(ast)s and %(who)s", {"ast": 29.91, "who": "x@y.org"})
    bodies = [r.log_record.body for r in otel_capture.logs() if r.log_record.body.startswith(("request", "by"))]
    assert bodies == [
        f"request data: {{'alb': '{REDACTED}', 'sex': '{REDACTED}', 'note': 'fine'}}",
        f"by name {REDACTED} and {REDACTED}",
    ]


def test_metric_attributes_outside_the_allow_list_never_become_labels(otel_capture):
    counter = metrics.get_meter("third-party").create_counter("careless.requests")
    counter.add(1, {"http.route": "api/diagnose/", "enduser.id": "42", "user.email": "a@b.org", "alb": 41.2})
    (point,) = otel_capture.metric_points("careless.requests")
    assert dict(point.attributes) == {"http.route": "api/diagnose/"}
