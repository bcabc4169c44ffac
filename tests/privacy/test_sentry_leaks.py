"""Sentry gets the rules of every other signal: the real sentry-sdk, set up by otel_hcv with its
real HTTP transport, sends to a loopback ingest; every byte that arrives is searched.

One process (sentry-sdk's setup is process-wide) runs the careless shapes: exception messages and
notes with lab values, exception groups, log arguments and extras (user id, IP address), a secret
and a DSN password on the command line, a DSN with a password in a message, and an incoming
``baggage`` header whose ``sentry-user_id`` and ``sentry-transaction`` would reach the envelope
header that ``before_send`` never sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.privacy.canaries import CLIENT_IP, EMAIL, LABS, SECRET, TOKEN, USER_ID, USERNAME, find_leaks
from tests.support.sentry_ingest import SentryIngest
from tests.support.service import REPO

pytestmark = pytest.mark.timeout(120)

CARELESS_CODE = """
import django, json, logging, sys
from django.conf import settings
settings.configure(SECRET_KEY="k" * 50, INSTALLED_APPS=["otel_hcv"],
                   OTEL_HCV={"PSEUDONYM_KEY": "sentry-leak-key", "SENTRY_DSN": DSN})
import otel_hcv
otel_hcv.configure()  # sets Sentry up with the trace bridge and the privacy hooks
django.setup()
import sentry_sdk
from opentelemetry import trace

LABS = json.loads(LABS_JSON)
log = logging.getLogger("careless.sentry")
log.setLevel(logging.INFO)
alb, crea, alt = LABS["alb"], LABS["crea"], LABS["alt"]

# exception text: message, note, multi-line, group
with trace.get_tracer("careless").start_as_current_span("work"):
    try:
        inner = ValueError(f"alb={alb} for {EMAIL}")
        inner.add_note(f"crea {crea}")
        raise ExceptionGroup(f"failed {alt}", [inner, KeyError(f"user {USERNAME}\\nline {alb}")])
    except ExceptionGroup:
        sentry_sdk.capture_exception()
    # log arguments, extras and breadcrumbs
    log.info("received %s", {"alb": alb, "crea": crea}, extra={"user_id": USER_ID, "ip_address": CLIENT_IP})
    log.error("storing failed for %s with %.3f", {"alt": alt}, crea,
              extra={"user_id": USER_ID, "ip_address": CLIENT_IP, "panel": [alb, crea], "userName": USERNAME})
    log.error(f"connecting to https://svc:{SECRET}@db.example/1 failed, alb={alb}")

# an incoming baggage header continued outside any OpenTelemetry span
with sentry_sdk.isolation_scope():
    sentry_sdk.continue_trace({
        "sentry-trace": "771a43a4192642f0b136d5159a501700-b7ad6b7169203331-1",
        "baggage": (f"sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key=public,"
                    f"sentry-user_id={USER_ID},sentry-transaction=/api/x%3Femail%3D{EMAIL},"
                    f"sentry-user_segment={USERNAME},sentry-sample_rate=1"),
    })
    sentry_sdk.capture_message(f"from a continued trace, token {TOKEN}")
sentry_sdk.get_client().flush(timeout=10)
print(json.dumps({"ok": True}))
"""


def test_no_canary_reaches_sentry():
    with SentryIngest() as ingest:
        constants = {"DSN": ingest.dsn, "LABS_JSON": json.dumps(LABS), "EMAIL": EMAIL, "USERNAME": USERNAME,
                     "USER_ID": USER_ID, "CLIENT_IP": CLIENT_IP, "SECRET": SECRET, "TOKEN": TOKEN}  # fmt: skip
        prelude = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
        result = subprocess.run(
            # The secret rides on the command line too, as `gunicorn -e HCV_SECRET_KEY=...` would put it.
            [sys.executable, "-c", prelude + textwrap.dedent(CARELESS_CODE), f"HCV_SECRET_KEY={SECRET}"],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": str(REPO)},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert ingest.wait_for(lambda: len(ingest.events()) >= 4, timeout=15), ingest.events()
    assert ingest.rejected == []
    leaks = find_leaks([("sentry body", body) for body in ingest.decoded])
    assert leaks == [], leaks
    events = ingest.events()
    # What makes an error actionable is still there.
    groups = [e for e in events if e.get("exception")]
    types = {value["type"] for e in groups for value in e["exception"]["values"]}
    assert {"ExceptionGroup", "ValueError", "KeyError"} <= types
    assert all(value["value"] == "[REDACTED]" for e in groups for value in e["exception"]["values"])
    stored = [e for e in events if e.get("logentry", {}).get("message", "").startswith("storing failed")]
    assert stored and stored[0]["extra"]["ip_address"] == "198.51.100.0"  # the IP policy, as in logs
    headers = [envelope.headers for envelope in ingest.envelopes]
    traces = [h["trace"] for h in headers if "trace" in h]
    assert traces, headers  # the continued trace's sampling context is there, cut to its sampling keys
    assert all(set(t) <= {"trace_id", "public_key", "sample_rate", "sample_rand", "sampled", "release",
                          "environment", "org_id"} for t in traces)  # fmt: skip
