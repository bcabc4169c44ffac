"""Nothing the collector accepted is lost: spans accepted while Jaeger runs, then while
Jaeger is stopped, then the collector killed with SIGKILL, then both started again --
every accepted span is in Jaeger, each exactly once. Prints the drain time and the disk
used by the collector's queue and by Jaeger's Badger store."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import psutil
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.backends import get_json, stack_env
from tests.support.service import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TRACES_PER_PHASE = 1250  # four spans each: 5,000 spans per phase, 10,000 in all
EXPORT_CHUNK = 250


def stack(*args: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "stack.sh"), *args], check=True, capture_output=True, timeout=180)


def diagnosis_traces(service: str, count: int) -> list[ReadableSpan]:
    """Traces shaped like the example service's (server span, diagnosis, two queries)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.e2e.persistence")
    for i in range(count):
        server_attributes = {
            "http.request.method": "POST", "http.route": "api/diagnose/", "url.path": "/api/diagnose/",
            "http.response.status_code": 200, "hcv.endpoint": "hcv_diagnosis",
            "hcv.request.id": secrets.token_hex(16), "server.address": "127.0.0.1",
        }  # fmt: skip
        with tracer.start_as_current_span("POST api/diagnose/", kind=SpanKind.SERVER, attributes=server_attributes):
            with tracer.start_as_current_span("SELECT hcv", kind=SpanKind.CLIENT) as query:
                query.set_attributes({"db.system": "postgresql", "db.name": "hcv", "db.statement": "SELECT 1"})
            with tracer.start_as_current_span("hcv.diagnosis") as diagnosis:
                diagnosis.set_attributes({"hcv.diagnosis.outcome": "success", "hcv.diagnosis.category": "0=Blood"})
                if i % 50 == 0:
                    diagnosis.set_status(Status(StatusCode.ERROR, "injected"))
            with tracer.start_as_current_span("INSERT hcv", kind=SpanKind.CLIENT) as insert:
                insert.set_attributes({"db.system": "postgresql", "db.name": "hcv"})
    provider.shutdown()
    return list(exporter.get_finished_spans())


def send(endpoint: str, spans: list[ReadableSpan]) -> list[str]:
    """Span ids (hex) of the spans the collector accepted (the export request succeeded)."""
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)
    accepted = []
    for start in range(0, len(spans), EXPORT_CHUNK):
        chunk = spans[start : start + EXPORT_CHUNK]
        if exporter.export(chunk) is SpanExportResult.SUCCESS:
            accepted.extend(f"{s.context.span_id:016x}" for s in chunk)
    exporter.shutdown()
    return accepted


def stored_span_ids(jaeger: str, service: str, traces: int) -> list[str]:
    """Every span id Jaeger returns for the service (duplicates included)."""
    query = urllib.parse.urlencode({"service": service, "limit": traces + 100, "lookback": "2h"})
    data = get_json(f"{jaeger}/api/traces?{query}", timeout=60)["data"]
    return [span["spanID"] for trace in data for span in trace["spans"]]


def wait_stored(jaeger: str, service: str, expected: list[str], timeout: float) -> tuple[list[str], float]:
    """Polls Jaeger until it holds as many spans as expected; returns them and the time it took."""
    start = time.monotonic()
    traces = len(expected) // 4
    stored: list[str] = []
    while time.monotonic() - start < timeout:
        try:
            stored = stored_span_ids(jaeger, service, traces)
        except OSError:
            stored = []  # Jaeger not answering yet
        if len(stored) >= len(expected):
            break
        time.sleep(1)
    return stored, time.monotonic() - start


def collector_process() -> psutil.Process:
    config = str(REPO / "collector" / "otel-config.yaml")
    found = [
        p for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and "otelcol-hcv" in p.info["cmdline"][0] and config in p.info["cmdline"]
    ]  # fmt: skip
    assert len(found) == 1, f"expected the stack's one collector, found {found}"
    return found[0]


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under path (sparse and preallocated files count what they use)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def data_dir() -> Path:
    return Path(os.environ.get("OTEL_HCV_DATA") or Path.home() / ".local" / "share" / "otel-hcv")


@pytest.fixture
def restore_stack():
    yield
    stack("start")  # whatever happened, leave every component running


def test_accepted_spans_survive_jaeger_down_and_collector_sigkill(restore_stack):
    env = stack_env()
    jaeger, endpoint = env["JAEGER_QUERY_URL"], env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    service = f"hcv-persist-{secrets.token_hex(3)}"
    queue_dir, badger_dir = data_dir() / "collector" / "queue", data_dir() / "jaeger" / "badger"
    badger_before = disk_usage(badger_dir)

    # 1. Accepted while everything runs: stored in Jaeger.
    first = send(endpoint, diagnosis_traces(service, TRACES_PER_PHASE))
    assert len(first) == 4 * TRACES_PER_PHASE, "the running collector refused spans"
    stored, _ = wait_stored(jaeger, service, first, timeout=120)
    assert sorted(stored) == sorted(first)

    # 2. Jaeger stopped: the collector still accepts, into its queue on disk.
    stack("stop", "jaeger")
    queue_before = disk_usage(queue_dir)
    second = send(endpoint, diagnosis_traces(service, TRACES_PER_PHASE))
    assert len(second) == 4 * TRACES_PER_PHASE, "the collector refused spans while Jaeger was down"
    time.sleep(1)  # let the last export request reach the queue file
    queue_growth = disk_usage(queue_dir) - queue_before

    # 3. The collector killed without a chance to flush anything.
    collector = collector_process()
    os.kill(collector.pid, signal.SIGKILL)
    collector.wait(timeout=10)

    # 4. Both started again: the queue drains into Jaeger, which kept phase 1 on disk.
    restarted = time.monotonic()
    stack("start")
    expected = first + second
    stored, _ = wait_stored(jaeger, service, expected, timeout=300)
    drain = time.monotonic() - restarted
    missing = set(expected) - set(stored)
    assert not missing, f"{len(missing)} of {len(expected)} accepted spans never reached Jaeger"
    assert len(stored) == len(expected), f"{len(stored) - len(expected)} spans stored twice"
    assert sorted(stored) == sorted(expected)

    stack("stop", "jaeger")  # Badger writes its memtable out on a clean stop
    badger_growth = disk_usage(badger_dir) - badger_before
    stack("start", "jaeger")
    print(
        f"\n{len(expected)} accepted spans all in Jaeger, each once; drain after restarting Jaeger and the "
        f"SIGKILLed collector: {drain:.1f} s (both processes' start included)"
        f"\ncollector queue on disk: +{queue_growth / 1e6:.2f} MB for {len(second)} queued spans "
        f"({queue_growth / len(second) * 10_000 / 1e6:.2f} MB per 10k spans)"
        f"\nJaeger Badger store: +{badger_growth / 1e6:.2f} MB for {len(expected)} spans "
        f"({badger_growth / len(expected) * 10_000 / 1e6:.2f} MB per 10k spans)"
    )
