"""Sentry options, DSN validation and sentry-sdk setup.

sentry-sdk's setup patches process-wide state (integrations, the global propagator), so
everything that initialises it runs in a fresh interpreter; DSNs there point at a closed
loopback port, and nothing waits for delivery (tests/integration/test_sentry*.py do).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_hcv import conf, sentry
from otel_hcv.conf import ConfigurationError, Settings

REPO = Path(__file__).resolve().parents[2]
CLOSED_PORT_DSN = "http://0123456789abcdef@127.0.0.1:9/42"


def run_python(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        # Exporters that retry against a closed port would only slow the interpreter's exit.
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def setup_django(otel_hcv: dict, before: str = "") -> str:
    """Code that sets Django up; the otel_hcv app's ready() calls configure(), and with it
    sentry.setup(). ``before`` runs first; warnings raised meanwhile end up in ``caught``."""
    return f"""
import django, json, logging, sys, warnings
from django.conf import settings
settings.configure(SECRET_KEY="k", INSTALLED_APPS=["otel_hcv"], OTEL_HCV={{"PSEUDONYM_KEY": "pk", **{otel_hcv!r}}})
{before}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    django.setup()
"""


CAPTURE_WARNINGS_LOGGED = """
records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("otel_hcv.sentry").addHandler(handler)
"""


# Options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "environ", "expected"),
    [
        pytest.param(
            Settings(sentry_dsn="http://a@h/1", sentry_environment="staging", sentry_release="r1"),
            {"SENTRY_DSN": "http://b@h/2", "SENTRY_ENVIRONMENT": "prod", "SENTRY_RELEASE": "r2"},
            ("http://a@h/1", sentry.SETTING_DSN, "staging", "r1"),
            id="package settings win",
        ),
        pytest.param(
            Settings(environment="test", service_version="9.9"),
            {"SENTRY_DSN": " http://b@h/2 ", "SENTRY_ENVIRONMENT": "prod", "SENTRY_RELEASE": "r2"},
            ("http://b@h/2", "SENTRY_DSN", "prod", "r2"),
            id="then sentry-sdk's variables",
        ),
        pytest.param(
            Settings(environment="test", service_version="9.9"),
            {"SENTRY_DSN": "http://b@h/2"},
            ("http://b@h/2", "SENTRY_DSN", "test", "9.9"),
            id="then the service's environment and version",
        ),
        pytest.param(
            Settings(sentry_dsn="http://a@h/1", environment="test"),
            {"SENTRY_ENVIRONMENT": " ", "SENTRY_RELEASE": ""},
            ("http://a@h/1", sentry.SETTING_DSN, "test", None),
            id="no release: sentry-sdk detects one",
        ),
    ],
)
def test_options_precedence(settings, environ, expected):
    options = sentry.resolve(settings, environ)
    assert options is not None
    assert (options.dsn, options.dsn_origin, options.environment, options.release) == expected
    assert options.send_spans is False


def test_without_a_dsn_there_are_no_options():
    assert sentry.resolve(Settings(sentry_environment="x"), {"SENTRY_RELEASE": "r"}) is None
    assert sentry.resolve(Settings(sentry_dsn="  "), {"SENTRY_DSN": ""}) is None


def test_send_spans_is_a_setting_off_by_default():
    assert Settings().sentry_send_spans is False
    assert conf.load(environ={"HCV_SENTRY_SEND_SPANS": "true"}).sentry_send_spans is True
    options = sentry.resolve(Settings(sentry_dsn="http://a@h/1", sentry_send_spans=True), {})
    assert options is not None and options.send_spans is True


@pytest.mark.parametrize(
    "dsn",
    ["https://key@o1.ingest.sentry.io/123", "http://key:secret@127.0.0.1:9000/path/to/7", "http://k@h/1"],
)
def test_well_formed_dsns(dsn):
    assert conf.dsn_problem(dsn) is None


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("ftp://key@host/1", "scheme"),
        ("key@host/1", "scheme"),
        ("https://host/1", "public key"),
        ("https://key@host/", "project id"),
        ("https://key@host/abc", "project id"),
        ("https://key@host:99999/1", "not a URL"),
        ("https://key@/1", "host"),
    ],
)
def test_malformed_dsns(dsn, problem):
    assert problem in (conf.dsn_problem(dsn) or "")


@pytest.mark.parametrize(
    ("environ", "overrides", "named"),
    [
        ({"HCV_SENTRY_DSN": "https://host/1"}, {}, "HCV_SENTRY_DSN"),
        ({"SENTRY_DSN": "https://secret-key@host/abc"}, {}, "SENTRY_DSN"),
        ({}, {"sentry_dsn": "nonsense"}, "configure(sentry_dsn=...)"),
    ],
)
def test_malformed_dsn_fails_at_start_up_naming_its_source(environ, overrides, named):
    with pytest.raises(ConfigurationError) as error:
        conf.load(overrides, environ=environ)
    message = str(error.value)
    assert message.startswith(named) and "not a valid Sentry DSN" in message
    assert "secret-key" not in message  # the DSN holds the project's key


def test_package_dsn_wins_over_a_malformed_sentry_dsn_variable():
    settings = conf.load(environ={"HCV_SENTRY_DSN": "http://k@h/1", "SENTRY_DSN": "nonsense"})
    assert settings.sentry_dsn == "http://k@h/1"


def test_setup_rejects_a_malformed_dsn_from_the_environment(monkeypatch):
    monkeypatch.setenv("SENTRY_DSN", "https://host/1")
    with pytest.raises(ConfigurationError, match=r"^SENTRY_DSN is not a valid Sentry DSN"):
        sentry.setup(Settings())


def test_setup_without_dsn_returns_quietly(monkeypatch):
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert sentry.setup(Settings()) is None


# sentry-sdk in a fresh interpreter ----------------------------------------------------


def test_without_a_dsn_sentry_sdk_is_never_imported():
    result = run_python(
        setup_django({"SERVICE_NAME": "svc"})
        + """
import otel_hcv
assert otel_hcv.configure() is not None
print(json.dumps({"sentry": sorted(m for m in sys.modules if m.startswith("sentry_sdk"))}))
"""
    )
    assert result == {"sentry": []}


CONFIGURE_WITH_DSN = """
import otel_hcv, sentry_sdk
from opentelemetry import propagate, trace
from otel_hcv import sentry, state

otel_hcv.configure()
client = sentry_sdk.get_client()
textmap = propagate.get_global_textmap()
sentry.setup(state.active().settings)  # a second setup: no second init, no second propagator
otel_hcv.configure()


def outermost_span_exporters():
    processors = trace.get_tracer_provider()._active_span_processor._span_processors
    return [p.span_exporter for p in processors if hasattr(p, "span_exporter")]


def span_exporters():
    return [getattr(e, "_exporter", e) for e in outermost_span_exporters()]  # behind otel_hcv's redaction


options = client.options
print(json.dumps({
    "active": client.is_active(),
    "same_client": sentry_sdk.get_client() is client,
    "same_textmap": propagate.get_global_textmap() is textmap,
    "textmap": [type(p).__name__ for p in textmap._propagators],
    "fields": sorted(textmap.fields),
    "integrations": sorted(client.integrations),
    "otlp": vars(client.get_integration("otlp")),
    "traces_sample_rate": options["traces_sample_rate"],
    "traces_sampler": options["traces_sampler"],
    "include_local_variables": options["include_local_variables"],
    "max_request_body_size": options["max_request_body_size"],
    "data_collection": options.get("data_collection"),
    "send_default_pii": options["send_default_pii"],
    "environment": options["environment"],
    "release": options["release"],
    "before_send": options["before_send"].__module__,
    "exporters": [getattr(e, "_endpoint", "") for e in span_exporters()],
    "wrapped": [type(e).__name__ for e in outermost_span_exporters()],
    "sentry_warnings": [str(w.message) for w in caught if "sentry" in (w.filename + str(w.message)).lower()],
    "captured": bool(sentry_sdk.capture_message("unreachable on purpose")),
    "flushed": client.flush(timeout=2) is None,
}))
"""


def test_setup_initialises_sentry_once_without_its_tracing():
    result = run_python(
        setup_django(
            {"SERVICE_NAME": "svc", "SENTRY_DSN": CLOSED_PORT_DSN, "ENVIRONMENT": "ci", "SERVICE_VERSION": "3.1"}
        )
        + CONFIGURE_WITH_DSN
    )
    assert result["active"] and result["same_client"] and result["same_textmap"]
    assert result["sentry_warnings"] == []  # e.g. no deprecated option
    assert {"otlp", "logging", "django", "dedupe"} <= set(result["integrations"])
    assert result["otlp"] == {
        "setup_otlp_traces_exporter": False,
        "collector_url": None,
        "setup_propagator": False,
        "capture_exceptions": False,
    }
    # No second tracing system.
    assert result["traces_sample_rate"] is None and result["traces_sampler"] is None
    # No personal data, no frame locals, no bodies.
    assert result["include_local_variables"] is False
    assert result["max_request_body_size"] == "never"
    if result["data_collection"] is not None and result["data_collection"].get("provided_by_user"):
        collection = result["data_collection"]
        assert collection["user_info"] is False
        assert collection["cookies"] == {"mode": "off"}
        assert collection["http_bodies"] == []
        assert collection["url_query_params"] == {"mode": "off"}
        assert collection["stack_frame_variables"] is False
    else:
        assert result["send_default_pii"] is False
    assert result["before_send"] == "otel_hcv.sentry"
    assert (result["environment"], result["release"]) == ("ci", "3.1")
    # Spans go to the configured exporters only (none here).
    assert not any("/integration/otlp/" in e for e in result["exporters"])
    # An unreachable DSN breaks nothing.
    assert result["captured"] and result["flushed"]


def test_sentry_propagator_is_added_to_trace_context_and_baggage():
    result = run_python(setup_django({"SERVICE_NAME": "svc", "SENTRY_DSN": CLOSED_PORT_DSN}) + CONFIGURE_WITH_DSN)
    assert result["textmap"] == ["SentryOTLPPropagator", "CompositePropagator"]
    assert {"traceparent", "tracestate", "baggage", "sentry-trace"} <= set(result["fields"])


def test_send_spans_adds_sentrys_otlp_exporter():
    result = run_python(
        setup_django({"SERVICE_NAME": "svc", "SENTRY_DSN": CLOSED_PORT_DSN, "SENTRY_SEND_SPANS": True})
        + CONFIGURE_WITH_DSN
    )
    sentry_exporters = [e for e in result["exporters"] if e == "http://127.0.0.1:9/api/42/integration/otlp/v1/traces/"]
    assert len(sentry_exporters) == 1  # what it sends: tests/integration/test_sentry.py
    # Added by otel_hcv behind the span redaction, not by the integration.
    assert result["otlp"]["setup_otlp_traces_exporter"] is False
    assert result["wrapped"].count("RedactingSpanExporter") == 1


def test_incoming_and_outgoing_trace_headers():
    result = run_python(
        setup_django({"SERVICE_NAME": "svc", "SENTRY_DSN": CLOSED_PORT_DSN})
        + """
import otel_hcv
from opentelemetry import baggage, context, propagate, trace

otel_hcv.configure()
W3C = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SENTRY = "771a43a4192642f0b136d5159a501700-a1b2c3d4e5f60718-1"


def trace_id(carrier):
    span_context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


incoming_baggage = baggage.get_all(propagate.extract({"baggage": "tenant=t1,sentry-trace_id=771a"}))
tracer = trace.get_tracer("t")
token = context.attach(baggage.set_baggage("tenant", "t1"))
with tracer.start_as_current_span("outgoing") as span:
    outgoing = {}
    propagate.inject(outgoing)
    span_context = span.get_span_context()
    ids = (trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id))
context.detach(token)
print(json.dumps({
    "w3c": trace_id({"traceparent": W3C}),
    "sentry": trace_id({"sentry-trace": SENTRY}),
    "both": trace_id({"traceparent": W3C, "sentry-trace": SENTRY}),
    "baggage": dict(incoming_baggage),
    "outgoing": outgoing,
    "ids": ids,
}))
"""
    )
    assert result["w3c"] == "0af7651916cd43dd8448eb211c80319c"
    assert result["sentry"] == "771a43a4192642f0b136d5159a501700"  # from a Sentry-instrumented frontend
    assert result["both"] == "0af7651916cd43dd8448eb211c80319c"  # the W3C header wins
    assert result["baggage"] == {"tenant": "t1", "sentry-trace_id": "771a"}
    trace_id, span_id = result["ids"]
    assert result["outgoing"]["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert result["outgoing"]["sentry-trace"] == f"{trace_id}-{span_id}-1"
    assert result["outgoing"]["baggage"] == "tenant=t1"


def test_an_application_that_initialised_sentry_itself_keeps_its_setup():
    result = run_python(
        setup_django(
            {"SERVICE_NAME": "svc", "SENTRY_DSN": CLOSED_PORT_DSN},
            before=CAPTURE_WARNINGS_LOGGED + 'import sentry_sdk; sentry_sdk.init(dsn="http://other@127.0.0.1:9/7")',
        )
        + """
import otel_hcv
otel_hcv.configure()
print(json.dumps({
    "dsn": sentry_sdk.get_client().dsn,
    "otlp": sentry_sdk.get_client().get_integration("otlp") is not None,
    "warned": [r.getMessage() for r in records if r.levelno == logging.WARNING],
}))
"""
    )
    assert result["dsn"] == "http://other@127.0.0.1:9/7" and not result["otlp"]
    assert len(result["warned"]) == 1 and "already called" in result["warned"][0]


def test_missing_sentry_sdk_is_a_warning_not_a_crash(tmp_path):
    # A stand-in package that fails to import, found before the installed one.
    (tmp_path / "sentry_sdk").mkdir()
    (tmp_path / "sentry_sdk" / "__init__.py").write_text("raise ImportError('sentry_sdk is not installed')\n")
    result = run_python(
        setup_django(
            {"SERVICE_NAME": "svc", "SENTRY_DSN": CLOSED_PORT_DSN},
            before=f"sys.path.insert(0, {str(tmp_path)!r})\n" + CAPTURE_WARNINGS_LOGGED,
        )
        + """
import otel_hcv
print(json.dumps({"configured": otel_hcv.configure() is not None, "warned": [r.getMessage() for r in records]}))
"""
    )
    assert result["configured"]
    assert len(result["warned"]) == 1 and "install otel-hcv[sentry]" in result["warned"][0]
    assert CLOSED_PORT_DSN not in result["warned"][0]
