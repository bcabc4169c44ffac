"""sentry-sdk set up by otel_hcv in a plain Python process, sending real envelopes to the
loopback ingest stand-in: error log records, users, a wrong key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_hcv.conf import Settings
from otel_hcv.privacy import REDACTED, pseudonymize_user_id
from tests.support.sentry_ingest import SentryIngest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
PSEUDONYM_KEY = "sentry-logging-pseudonym-key"


def run_python(code: str, otel_hcv: dict) -> dict:
    """Set Django up with ``otel_hcv`` settings, configure telemetry (and so Sentry) as a
    script would, run ``code``, return its last stdout line as JSON."""
    program = f"""
import django, json, logging, sys
from django.conf import settings
settings.configure(SECRET_KEY="k", INSTALLED_APPS=["otel_hcv"], OTEL_HCV={{"PSEUDONYM_KEY": "pk", **{otel_hcv!r}}})
django.setup()
import otel_hcv
otel_hcv.configure()
import sentry_sdk
from opentelemetry import trace
{textwrap.dedent(code)}
"""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=environ, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_error_records_become_events_linked_to_the_current_span():
    with SentryIngest() as ingest:
        result = run_python(
            """
from otel_hcv import sentry, state
sentry.setup(state.active().settings)  # a second setup changes nothing
log = logging.getLogger("diagnosis.store")
log.setLevel(logging.INFO)  # as the service's LOGGING does; the root logger's default is WARNING
with trace.get_tracer("test").start_as_current_span("store") as span:
    log.info("received alb=39.71")
    log.warning("store is slow")
    log.error("storing failed for %s", {"alb": 39.71}, extra={"ggt": 43.13, "endpoint": "hcv_diagnosis"})
    context = span.get_span_context()
sentry_sdk.get_client().flush(timeout=10)
ids = {"trace_id": trace.format_trace_id(context.trace_id), "span_id": trace.format_span_id(context.span_id)}
print(json.dumps(ids))
""",
            {"SENTRY_DSN": ingest.dsn, "PSEUDONYM_KEY": PSEUDONYM_KEY},
        )
        assert ingest.wait_for(lambda: len(ingest.events()) >= 1, timeout=10)
    assert ingest.rejected == []
    (event,) = ingest.events()  # the warning and the info line are breadcrumbs, not events
    assert event["level"] == "error"
    assert event["logger"] == "diagnosis.store"
    assert event["contexts"]["trace"] == {"trace_id": result["trace_id"], "span_id": result["span_id"]}
    assert event["logentry"]["message"] == "storing failed for %s"
    assert event["logentry"]["formatted"] == f"storing failed for {{'alb': {REDACTED}}}"
    assert event["extra"]["ggt"] == REDACTED and event["extra"]["endpoint"] == "hcv_diagnosis"
    crumbs = [(crumb.get("level"), crumb.get("message")) for crumb in event["breadcrumbs"]["values"]]
    assert ("info", f"received alb={REDACTED}") in crumbs
    assert ("warning", "store is slow") in crumbs
    assert b"39.71" not in b"".join(ingest.decoded) and b"43.13" not in b"".join(ingest.decoded)


def test_a_user_set_by_code_leaves_as_its_pseudonym_only():
    with SentryIngest() as ingest:
        run_python(
            """
sentry_sdk.set_user({"id": 4711, "email": "jane@example.org", "username": "jane.doe", "ip_address": "203.0.113.9"})
sentry_sdk.capture_message("with a user", level="error")
sentry_sdk.get_client().flush(timeout=10)
print("{}")
""",
            {"SENTRY_DSN": ingest.dsn, "PSEUDONYM_KEY": PSEUDONYM_KEY},
        )
        assert ingest.wait_for(lambda: len(ingest.events()) >= 1, timeout=10)
    (event,) = ingest.events()
    assert event["user"] == {"id": pseudonymize_user_id(4711, Settings(pseudonym_key=PSEUDONYM_KEY))}
    everything = b"".join(ingest.decoded)
    for personal in (b"4711", b"jane", b"203.0.113"):
        assert personal not in everything, personal


def test_a_wrong_key_is_refused_and_the_process_carries_on():
    with SentryIngest() as ingest:
        wrong_key_dsn = ingest.dsn.replace(ingest.public_key, "ffffffffffffffffffffffffffffffff")
        result = run_python(
            """
event_id = sentry_sdk.capture_message("nobody will read this", level="error")
sentry_sdk.get_client().flush(timeout=10)
print(json.dumps({"event_id": event_id}))
""",
            {"SENTRY_DSN": wrong_key_dsn},
        )
        assert ingest.wait_for(lambda: bool(ingest.rejected), timeout=10)
    assert result["event_id"]
    assert ingest.envelopes == []
    # The event, then sentry-sdk's report of having lost it: each refused, none raised.
    assert ingest.rejected
    assert set(ingest.rejected) == {
        (ingest.envelope_path, "wrong or missing sentry_key 'ffffffffffffffffffffffffffffffff'")
    }
