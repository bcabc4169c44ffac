"""The JSON formatter, the LOGGING helper and the OTLP log handler."""

import io
import json
import logging
import logging.config

import pytest
from opentelemetry import trace

from otel_hcv import context
from otel_hcv.logging import StructuredFormatter, logging_config
from otel_hcv.privacy import REDACTED, pseudonymize_user_id
from otel_hcv.state import current_settings


def render(message="hello %s", args=("world",), **extra):
    record = logging.LogRecord("diagnosis", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return StructuredFormatter().format(record)


def test_record_outside_any_request_is_valid_json_without_ids():
    line = render()
    entry = json.loads(line)
    assert entry["message"] == "hello world"
    assert entry["level"] == "INFO" and entry["logger"] == "diagnosis"
    assert entry["timestamp"].endswith("Z") and "T" in entry["timestamp"]
    assert not {"trace_id", "span_id", "request_id", "user_id"} & set(entry)


def test_trace_and_request_ids_inside_a_span():
    tracer = trace.get_tracer("test")
    token = context.request_id.set("req-123")
    try:
        with tracer.start_as_current_span("work") as span:
            entry = json.loads(render())
            expected = span.get_span_context()
    finally:
        context.request_id.reset(token)
    assert entry["trace_id"] == format(expected.trace_id, "032x")
    assert entry["span_id"] == format(expected.span_id, "016x")
    assert int(entry["trace_flags"], 16) & 0x01  # sampled
    assert entry["request_id"] == "req-123"


def test_plan_extras_keep_working_with_privacy_applied():
    entry = json.loads(render(user_id=42, request_id="abc", ip_address="203.0.113.77", endpoint="hcv_diagnosis"))
    assert entry["user_id"] == pseudonymize_user_id(42, current_settings())
    assert entry["request_id"] == "abc"
    assert entry["ip_address"] == "203.0.113.0"  # truncated to its /24 by default
    assert entry["endpoint"] == "hcv_diagnosis"


@pytest.mark.parametrize(
    "message",
    [
        'innocent"}\n{"level":"CRITICAL","message":"forged',
        "line one\r\nline two\u2028line three",
        'quote " backslash \\ tab \t nul \x00',
    ],
)
def test_messages_cannot_forge_a_second_record(message):
    line = render(message, ())
    assert "\n" not in line and "\r" not in line
    assert json.loads(line)["message"] == message
    assert json.loads(line)["level"] == "INFO"


def test_non_serialisable_and_broken_extras_are_written_safely():
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    entry = json.loads(render(payload={"when": object(), "items": {1, 2}}, odd=Unprintable(), blob=b"\x00\xff"))
    # Numbers under keys nobody declared safe, and objects (whose text could be anything), do not
    # leave as they are: the record is still written, with their shape.
    assert entry["payload"]["items"] == [REDACTED, REDACTED]
    assert entry["payload"]["when"] == "<object>"
    assert entry["odd"] == "<Unprintable>"
    assert entry["blob"] == "<bytes: 2>"


def test_sensitive_extras_and_values_are_redacted():
    entry = json.loads(
        render("contact jane@example.org", (), alb=41.2, data={"ast": 30.1, "note": "ok"}, authorization="Token x")
    )
    assert entry["message"] == f"contact {REDACTED}"
    assert entry["alb"] == REDACTED
    assert entry["data"] == {"ast": REDACTED, "note": "ok"}
    assert entry["authorization"] == REDACTED


def test_wrong_format_arguments_do_not_lose_the_record():
    entry = json.loads(render("%d items", ("not a number",)))
    assert entry["message"] == "not a number items"  # "%d" became "%s" for the screened argument
    entry = json.loads(render("%s and %s", ("one",)))
    assert entry["message"] == "%s and %s"  # too few arguments: the template alone


def test_exception_type_message_and_stack():
    try:
        raise ValueError("bad value for jane@example.org")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    entry = json.loads(StructuredFormatter().format(record))
    assert entry["exception"]["type"] == "ValueError"
    assert entry["exception"]["message"] == REDACTED  # messages carry whatever data the code had
    assert "Traceback" in entry["exception"]["stack"] and "jane@example.org" not in entry["exception"]["stack"]
    assert f"ValueError: {REDACTED}" in entry["exception"]["stack"]


def test_access_log_lines_carry_the_finished_request_ids():
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        served = span.get_span_context()
    context.set_finished_request(context.RequestIds(served, "req-done"))
    try:
        record = logging.LogRecord("django.server", logging.INFO, __file__, 1, '"GET / HTTP/1.1" 200', (), None)
        entry = json.loads(StructuredFormatter().format(record))
        other = json.loads(render())  # not an access logger: no borrowed ids
    finally:
        context.set_finished_request(None)
    assert entry["trace_id"] == format(served.trace_id, "032x")
    assert entry["request_id"] == "req-done"
    assert "trace_id" not in other


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("django", "django.server"):
        logging.getLogger(name).handlers.clear()


def test_logging_config_writes_json_lines_for_django_loggers(restore_logging, capsys):
    logging.config.dictConfig(logging_config("INFO"))

    logging.getLogger("django.server").info('"GET /x HTTP/1.1" 200 1')

    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["logger"] == "django.server"
    assert logging.getLogger("django").handlers == []
    # The OTLP handler survives dictConfig: it is not the console's to remove.
    assert any(type(h).__name__ == "OtlpLoggingHandler" for h in logging.getLogger().handlers)


def test_otlp_records_are_redacted_and_carry_context(otel_capture):
    logger = logging.getLogger("diagnosis")
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        logger.warning("mail jane@example.org", extra={"alb": 40.0, "endpoint": "e", "request": object()})
    (record,) = [r for r in otel_capture.logs() if r.log_record.body == f"mail {REDACTED}"]
    attributes = dict(record.log_record.attributes)
    assert attributes["alb"] == REDACTED
    assert attributes["endpoint"] == "e"
    assert "request" not in attributes
    assert record.log_record.trace_id == span.get_span_context().trace_id


def test_access_log_lines_lose_their_query_strings():
    record = logging.LogRecord(
        "django.server",
        logging.ERROR,
        __file__,
        1,
        '"%s" %s %s',
        ("POST /api/diagnose/?alb=41.37&x=1 HTTP/1.1", 500, 145),
        None,
    )
    entry = json.loads(StructuredFormatter().format(record))
    assert entry["message"] == f'"POST /api/diagnose/?{REDACTED} HTTP/1.1" 500 145'


def test_release_strings_are_not_mistaken_for_email_addresses():
    assert json.loads(render("deployed hcv@1.2.3 for ops@clinic.example", ()))["message"] == (
        f"deployed hcv@1.2.3 for {REDACTED}"
    )


def test_queue_full_warnings_are_summarised():
    from otel_hcv.logging import DropReport

    report = DropReport(interval_seconds=60)
    records = [
        logging.LogRecord("opentelemetry.sdk._shared_internal", logging.WARNING, __file__, 1,
                          "Queue full, dropping %s.", ("Span",), None)
        for _ in range(1000)
    ]  # fmt: skip
    passed = [r for r in records if report.filter(r)]
    assert len(passed) == 1
    assert passed[0].getMessage() == "Telemetry queue full: dropped 1 span(s); is the collector reachable?"
    assert report.unreported["Span"] == 999
    other = logging.LogRecord("opentelemetry.sdk._shared_internal", logging.WARNING, __file__, 1, "x", (), None)
    assert report.filter(other)  # other warnings pass untouched


def test_summary_after_the_interval_carries_the_count():
    from otel_hcv.logging import DropReport

    report = DropReport(interval_seconds=0.05)

    def drop():
        record = logging.LogRecord("o", logging.WARNING, __file__, 1, "Queue full, dropping %s.", ("LogRecord",), None)
        return record if report.filter(record) else None

    assert drop() is not None
    assert [drop() for _ in range(10)] == [None] * 10
    __import__("time").sleep(0.06)
    summary = drop()
    assert summary is not None and summary.getMessage().startswith(
        "Telemetry queue full: dropped 11 logrecord(s) in the last"
    )


def test_every_queue_full_drop_is_counted_despite_the_sdks_duplicate_filter(otel_capture):
    from opentelemetry.sdk import _shared_internal

    from otel_hcv.accounting import dropped_observations

    def queue_full_spans() -> int:
        return sum(o.value for o in dropped_observations(None) if o.attributes == {
            "otel.signal": "traces", "error.type": "queue_full"})  # fmt: skip

    before = queue_full_spans()
    for _ in range(250):  # what the SDK's batch processor logs for each dropped span
        _shared_internal._logger.warning("Queue full, dropping %s.", "Span")
    assert queue_full_spans() - before == 250


def test_safe_fields_are_worked_out_once_and_leave_the_record_alone(otel_capture, monkeypatch):
    from opentelemetry._logs import get_logger_provider

    from otel_hcv import logging as hcv_logging

    calls = []
    original = hcv_logging.safe_extras
    monkeypatch.setattr(hcv_logging, "safe_extras", lambda *args: calls.append(1) or original(*args))
    seen = []

    class Recorder(logging.Handler):
        def emit(self, record):
            seen.append(set(vars(record)))

    console = logging.StreamHandler(io.StringIO())
    console.setFormatter(StructuredFormatter())
    otlp = hcv_logging.OtlpLoggingHandler(logger_provider=get_logger_provider())
    test_logger = logging.getLogger("otel_hcv.test.once")
    test_logger.propagate = False
    for handler in (console, otlp, Recorder()):
        test_logger.addHandler(handler)
    otel_capture.clear()

    test_logger.warning("one record, two exporting handlers")

    assert len(calls) == 1
    assert [r.log_record.body for r in otel_capture.logs()] == ["one record, two exporting handlers"]
    assert json.loads(console.stream.getvalue())["message"] == "one record, two exporting handlers"
    # Nothing added to the record: other handlers export a record's attributes.
    standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
    assert seen[0] <= standard
