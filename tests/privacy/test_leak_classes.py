"""Careless application code against the privacy promise, one class of leak at a time.

Each test writes the code an application team writes on a busy day, through the package's real
paths (the redacting span exporter, the OTLP logging handler, the JSON formatter, the metric
views, Django's instrumentation and otel_hcv's middleware), and looks for the canaries in what
left: OTLP protobuf bytes of spans, log records and metrics, and the console's JSON lines.
The Sentry classes run in test_sentry_leaks.py (a real sentry-sdk in its own process).
"""

from __future__ import annotations

import decimal
import logging
import sys
from collections import namedtuple

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import RequestFactory
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import Status, StatusCode

from otel_hcv import MetricsCollector, bootstrap, privacy, state
from otel_hcv.conf import ConfigurationError, Settings
from otel_hcv.metrics import allow_list_views
from tests.privacy.canaries import CLIENT_IP, EMAIL, FIRST, LABS, LAST, SECRET, TOKEN, USER_ID, USERNAME, find_leaks

log = logging.getLogger("careless.app")
tracer = trace.get_tracer("careless.app")
ALB, ALT, CREA, GGT, CHE = LABS["alb"], LABS["alt"], LABS["crea"], LABS["ggt"], LABS["che"]


def assert_no_leaks(outputs, *extra: str) -> None:
    leaks = outputs.leaks(*extra)
    assert leaks == [], leaks


# 1. Exception text inside stack traces -------------------------------------------------------


def _group_with_notes() -> ExceptionGroup:
    inner = ValueError(f"alb={ALB}")
    inner.add_note(f"note: crea {CREA}, patient {FIRST} {LAST}")
    return ExceptionGroup(f"group of {ALT}", [inner, KeyError(f"ggt {GGT}")])


def _nested_group() -> ExceptionGroup:
    return ExceptionGroup("outer", [ExceptionGroup(f"inner {CHE}", [RuntimeError(f"mail {EMAIL}\nline 2 {ALB}")])])


def _chained() -> Exception:
    try:
        raise KeyError(f"token {TOKEN}")
    except KeyError as cause:
        try:
            raise RuntimeError(f"multi\nline {CREA}\n  File \"x.py\", line 1, in f\n    alb = {ALB}") from cause
        except RuntimeError as exc:
            return exc


EXCEPTIONS = {
    "group with notes": _group_with_notes,
    "nested groups, multi-line member": _nested_group,
    "chained, message mimicking a frame": _chained,
    "plain multi-line message": lambda: ValueError(f"first {ALB}\nsecond {USERNAME}\n\tthird {GGT}"),
    "message of only a note": lambda: _noted(TypeError(), f"{EMAIL} {ALT}"),
}


def _noted(exc: BaseException, note: str) -> BaseException:
    exc.add_note(note)
    return exc


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize("make", EXCEPTIONS.values(), ids=EXCEPTIONS.keys())
def test_stack_traces_carry_frames_and_types_never_messages(outputs, make):
    exc = make()
    with pytest.raises(type(exc)), tracer.start_as_current_span("careless.work"):  # the SDK records it
        _raise(exc)
    try:
        _raise(exc)
    except BaseException:
        log.exception("work failed")  # console JSON and OTLP record, with the stack
    assert_no_leaks(outputs, "line 2", "third")
    (span,) = outputs.capture.spans("careless.work")
    (event,) = span.events
    stack = event.attributes["exception.stacktrace"]
    assert "test_leak_classes.py" in stack and "_raise" in stack  # the frames are there
    assert type(exc).__name__ in stack
    (record,) = [r for r in outputs.capture.logs() if r.log_record.body == "work failed"]
    assert "_raise" in record.log_record.attributes["exception.stacktrace"]


# 3. Values in log message text ------------------------------------------------------------------

Panel = namedtuple("Panel", "alb alt")

MESSAGES = {
    "f-string pair": lambda: log.info(f"alb={ALB}"),
    "argument number": lambda: log.info("alt %s", ALT),
    "argument %f": lambda: log.info("crea %.3f mmol", CREA),
    "argument %d of an id": lambda: log.info("user %d logged in", USER_ID),
    "argument Decimal": lambda: log.info("value %s", decimal.Decimal(str(GGT))),
    "argument dict": lambda: log.info("data %s", {"albumin": ALB, "creatinine": CREA}),
    "argument namedtuple": lambda: log.info("panel %s", Panel(ALB, ALT)),
    "argument list": lambda: log.warning("values %r", [ALB, ALT, CREA]),
    "named arguments": lambda: log.info("%(a)s and %(b)s", {"a": ALB, "b": EMAIL}),
    "request object": lambda: log.info("handling %s", RequestFactory().get(f"/api/x/?alb={ALB}&u={USERNAME}")),
    "extra list": lambda: log.info("panel", extra={"panel": [CHE, GGT]}),
    "extra FHIR-like": lambda: log.info("obs", extra={"observations": [{"code": "ALB", "value": ALB}]}),
    "FHIR-like text": lambda: log.info(f'[{{"code": "ALB", "value": {ALB}}}, {{"code": "CREA", "value": {CREA}}}]'),
    "synonym with unit": lambda: log.info(f"Albumin (g/L): {ALB}; Creatinine of {CREA} umol/l"),
    "arrow and colon": lambda: log.info(f"alt => {ALT}, AST: {LABS['ast']}"),
    "decimal comma": lambda: log.info(f"alb={ALB:.3f}".replace(".", ",")),
    "bare decimals": lambda: log.info(f"measured {ALB} and {CREA} today"),
    "credentials": lambda: log.info(f"password={SECRET} auth Bearer {TOKEN} to {EMAIL}"),
    "DSN with password": lambda: log.info(f"connecting to https://user:{SECRET}@db.example/1"),
    "exception as argument": lambda: log.error("failed: %s", ValueError(f"alb {ALB}")),
}


@pytest.mark.parametrize("emit", MESSAGES.values(), ids=MESSAGES.keys())
def test_log_text_and_arguments_leave_no_value(outputs, emit):
    emit()
    assert outputs.console.getvalue()  # the record was written
    assert outputs.capture.logs()  # and exported
    assert_no_leaks(outputs)


def test_safe_loggers_and_keys_are_the_operators_opt_in(outputs, otel_capture):
    settings = Settings(pseudonym_key="k", safe_loggers=("inventory",), safe_keys=("items",))
    assert privacy.format_log_message("moved %d items in %.1f s", (5, 0.5), "inventory", settings) == (
        "moved 5 items in 0.5 s"
    )
    assert privacy.format_log_message("moved %d items in %.1f s", (5, 0.5), "other", settings) == (
        f"moved {privacy.REDACTED} items in {privacy.REDACTED} s"
    )
    assert privacy.safe_structure({"items": 5, "count": 5}, settings) == {"items": 5, "count": privacy.REDACTED}


# 4. Key matching by name tokens -----------------------------------------------------------------

KEYS = ["hcv.lab_alb", "patient_age", "crea_umol_l", "lab_alt", "enduser.username", "username", "labAlbumin",
        "GGT-Value", "Patient.Name", "user_email", "x-auth-token", "firstName", "date_of_birth", "phoneNumber",
        "bilirubinTotal", "sgpt", "gamma_gt"]  # fmt: skip


@pytest.mark.parametrize("key", KEYS)
def test_keys_are_matched_by_token(outputs, key):
    value = f"{USERNAME} {EMAIL}" if "name" in key.lower() or "mail" in key.lower() else ALB
    with tracer.start_as_current_span("careless.keys") as span:
        span.set_attribute(key, value)
        span.add_event("observed", {key: value})
    log.info("keys", extra={key: value})
    assert_no_leaks(outputs)
    (exported,) = outputs.capture.spans("careless.keys")
    assert exported.attributes[key] == privacy.REDACTED


def test_objects_that_stand_for_a_person(outputs, db):
    user = User(id=USER_ID, username=USERNAME, email=EMAIL, first_name=FIRST, last_name=LAST)
    log.info("user %s did it", user, extra={"user": user, "actor": user, "visitor": AnonymousUser()})
    log.info("by %(who)s", {"who": user}, extra={"who": {"profile": user}})
    assert_no_leaks(outputs, "AnonymousUser")


# 5. Redaction never raises, never falls back to raw output -------------------------------------


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError(f"str failed {ALB}")

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq failed")

    __hash__ = object.__hash__


class BrokenMapping(dict):
    def items(self):  # type: ignore[override]
        raise RuntimeError(f"items failed {CREA}")


def test_hostile_values_are_dropped_not_printed(outputs, capsys, monkeypatch):
    # pytest's own capture handlers format records as they are (and raise on hostile ones): out of
    # the way, so that only the application's handlers (otel-hcv's) see the records.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if "_pytest" not in type(h).__module__])
    looped: list = [ALB]
    looped.append(looped)
    log.info("panel %s", Panel(ALB, ALT))
    log.info("hostile %s %s", Hostile(), looped)
    log.info("mapping %s", BrokenMapping(alb=ALB), extra={"bad": BrokenMapping(crea=CREA), "h": Hostile()})
    log.info("%s %s", ALB)  # too few arguments
    log.info(Hostile())  # a message that is not a string
    captured = capsys.readouterr()
    assert_no_leaks(outputs)
    assert find_leaks([("stderr", captured.err), ("stdout", captured.out)]) == []
    assert "Traceback" not in captured.err  # logging's handleError printed nothing
    assert len(outputs.capture.logs()) == 5  # nothing lost


# 6. One IP policy for every signal ------------------------------------------------------------


@pytest.mark.parametrize(("mode", "expected"), [("truncate", "198.51.100.0"), ("drop", None)])
def test_client_address_on_server_spans_follows_the_ip_policy(outputs, client, mode, expected):
    with _settings(ip_addresses=mode):
        client.get("/plain/", REMOTE_ADDR=CLIENT_IP, HTTP_X_FORWARDED_FOR=f"{CLIENT_IP}, 10.0.0.1")
    (span,) = [s for s in outputs.capture.spans() if s.kind is trace.SpanKind.SERVER]
    assert span.attributes.get("client.address") == expected
    assert_no_leaks(outputs)


class _settings:
    """Swap the active settings for one block (the exporter reads them at export)."""

    def __init__(self, **values: object) -> None:
        self.values = values

    def __enter__(self) -> Settings:
        telemetry = state.active()
        assert telemetry is not None
        self.telemetry, self.before = telemetry, telemetry.settings
        telemetry.settings = Settings(**{**self.before.__dict__, **self.values})
        return telemetry.settings

    def __exit__(self, *exc: object) -> None:
        self.telemetry.settings = self.before


# 7. Standard settings that could switch redaction off --------------------------------------------


def test_exemplars_keep_no_filtered_attributes():
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], views=allow_list_views(), exemplar_filter=AlwaysOnExemplarFilter()
    )
    histogram = provider.get_meter("careless").create_histogram("careless.duration")
    counter = provider.get_meter("careless").create_counter("careless.count")
    span_tracer = trace.get_tracer("careless.exemplars")
    with span_tracer.start_as_current_span("measured"):
        attributes = {"http.route": "api/x/", "enduser.id": str(USER_ID), "user.email": EMAIL, "alb": ALB}
        histogram.record(0.2, attributes)
        counter.add(1, attributes)
    data = reader.get_metrics_data()
    exemplars = [
        exemplar
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
        for exemplar in point.exemplars
    ]
    assert exemplars and all(exemplar.trace_id for exemplar in exemplars)  # the trace link stays
    assert all(not exemplar.filtered_attributes for exemplar in exemplars)
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    assert find_leaks([("metrics", encode_metrics(data).SerializeToString())]) == []


def test_captured_credential_headers_are_redacted(outputs, client, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", ".*")
    client.get(
        "/plain/",
        HTTP_X_API_KEY=SECRET,
        HTTP_X_CSRFTOKEN=TOKEN,
        HTTP_X_AUTH_TOKEN=SECRET + "2",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        HTTP_COOKIE=f"remember={SECRET}",
        HTTP_X_PATIENT_NAME=f"{FIRST} {LAST}",
        HTTP_X_REAL_IP=CLIENT_IP,
        HTTP_X_HARMLESS="kept",
        HTTP_TRACESTATE=f"who={USERNAME}",
        HTTP_BAGGAGE=f"user={USERNAME}",
    )
    (span,) = [s for s in outputs.capture.spans() if s.kind is trace.SpanKind.SERVER]
    headers = {k: v for k, v in span.attributes.items() if k.startswith("http.request.header.")}
    assert ("kept",) in headers.values()  # a harmless header is captured as configured
    assert_no_leaks(outputs, SECRET + "2")


def test_a_second_unredacted_logging_handler_is_taken_off(outputs):
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    upstream = LoggingHandler(logger_provider=get_logger_provider())
    logging.getLogger().addHandler(upstream)
    try:
        bootstrap.attach_logging_handler()
        assert upstream not in logging.getLogger().handlers
        log.info(f"alb={ALB}", extra={"crea": CREA})
        assert_no_leaks(outputs)
    finally:
        logging.getLogger().removeHandler(upstream)


# 8. Metric attribute values ---------------------------------------------------------------------


def test_raw_paths_never_become_endpoint_labels(outputs, client):
    for path in (f"/api/users/{EMAIL}/?q={SECRET}", f"/plain/?alb={ALB}", f"/diagnose/{USERNAME}/%3Fx={SECRET}"):
        MetricsCollector.record_api_metrics(path, "GET", 200, 0.01)
    summary = client.get("/metrics/").content.decode()
    assert find_leaks([("metrics summary", summary)]) == []
    labels = {p.attributes.get("hcv.endpoint") for p in outputs.capture.metric_points("hcv.api.requests")}
    assert labels <= {"plain/", "_OTHER"} and labels
    assert_no_leaks(outputs)


# 9. Client-supplied text and names set by code ------------------------------------------------


def test_trace_state_paths_and_names_from_clients_and_code(outputs, client):
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client.get("/plain/", HTTP_TRACEPARENT=parent, HTTP_TRACESTATE=f"ot=th:8,who={USERNAME},mail={EMAIL},lab=alb-{ALB}")
    client.get(f"/missing/alb={ALB}/")
    client.get(f"/missing/x%3Falb%3D{CREA}")
    client.get(f"/plain/%3Fcrea={CREA}")
    with tracer.start_as_current_span(f"diagnose alb={ALB} for {EMAIL}") as span:
        span.add_event(f"ggt measured {GGT}")
        span.set_status(Status(StatusCode.ERROR, f"bad value crea={CREA}"))
    assert_no_leaks(outputs)
    server = [s for s in outputs.capture.spans() if s.kind is trace.SpanKind.SERVER]
    continued = [s for s in server if s.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C]
    assert continued and dict(continued[0].context.trace_state) == {"ot": "th:8"}  # OpenTelemetry's own entry


# 10. Pseudonyms are only as safe as their key ----------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "debug", "refused"),
    [
        ("django-insecure-hcv-example-development-key", False, True),
        ("short", False, True),
        ("", False, True),
        ("django-insecure-hcv-example-development-key", True, False),
        ("a" * 50, False, False),
    ],
)
def test_a_reversible_pseudonym_key_is_refused_outside_debug(settings, secret, debug, refused):
    settings.SECRET_KEY, settings.DEBUG = secret, debug
    if refused:
        with pytest.raises(ConfigurationError, match="PSEUDONYM_KEY"):
            privacy.check_pseudonym_key(Settings())
    else:
        privacy.check_pseudonym_key(Settings())
    privacy.check_pseudonym_key(Settings(pseudonym_key="an explicit key"))  # always accepted
    privacy.check_pseudonym_key(Settings(pseudonymize_user_ids=False))  # nothing to protect


def test_the_refusal_stops_start_up(tmp_path):
    import subprocess

    code = (
        "import django; from django.conf import settings; "
        "settings.configure(SECRET_KEY='django-insecure-x', INSTALLED_APPS=['otel_hcv']); django.setup(); "
        "import otel_hcv; otel_hcv.configure()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        check=False,
    )
    assert result.returncode != 0
    assert "PSEUDONYM_KEY" in result.stderr and "secrets.token_urlsafe" in result.stderr
