"""The native stack as the benchmark sees it (its addresses: scripts/stackctl/components.py): the
collector's own metrics and span metrics, the benchmark's database on its PostgreSQL, and a
closed loopback port for the collector-down variants. The benchmark never stops a component."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from scripts.stackctl.components import COLLECTOR_METRICS_PORT, COLLECTOR_PROM_PORT, HOST
from tests.support.service import REPO

COLLECTOR_METRICS = f"http://{HOST}:{COLLECTOR_METRICS_PORT}/metrics"  # the collector's own metrics
SPAN_METRICS = f"http://{HOST}:{COLLECTOR_PROM_PORT}/metrics"  # its Prometheus exporter (span-metrics connector)

def collector_binary() -> str:
    """The collector binary the stack runs (``scripts/stack.sh bin collector``), or ""."""
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "stack.sh"), "bin", "collector"], capture_output=True, text=True
    ).stdout.strip()


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def psycopg_url(url: str) -> str:
    """A ``postgres://`` URL as psycopg takes it."""
    return url.replace("postgres://", "postgresql://", 1)


def create_database(server_url: str, name: str) -> bool:
    """Create database ``name`` on the server of ``server_url`` unless it exists; whether it was created."""
    import psycopg

    with psycopg.connect(psycopg_url(server_url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
        return True


def truncate_records(database_url: str) -> None:
    """Empty the example's diagnosis records, so that every realistic run starts from the same table."""
    import psycopg

    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        conn.execute("TRUNCATE diagnosis_diagnosisrecord")


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, held for the run."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each sample in Prometheus' text format."""
    samples = []
    label_re = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([\w:]+)(\{.*\})?\s+(\S+)", line)
        if match is None:
            continue
        labels = dict(label_re.findall(match.group(2) or ""))
        try:
            samples.append((match.group(1), labels, float(match.group(3))))
        except ValueError:
            continue
    return samples


def scrape(url: str, timeout: float = 5.0) -> list[tuple[str, dict[str, str], float]] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse_prometheus(response.read().decode("utf-8", "replace"))
    except OSError:
        return None


class CollectorView:
    """Spans and log records the collector saw: its receiver totals (shared with everyone using the
    stack) and, per service name, the span-metrics connector's call counts (ours only)."""

    def __init__(self, self_metrics_url: str, span_metrics_url: str) -> None:
        self.self_metrics_url = self_metrics_url
        self.span_metrics_url = span_metrics_url
        self.spans_by_service: dict[str, float] = {}
        self.lock = threading.Lock()

    def receiver_totals(self) -> dict[str, float] | None:
        samples = scrape(self.self_metrics_url)
        if samples is None:
            return None
        totals: dict[str, float] = {}
        for name, _labels, value in samples:
            for kind in ("accepted_spans", "refused_spans", "failed_spans", "accepted_log_records"):
                if name == f"otelcol_receiver_{kind}":
                    totals[kind] = totals.get(kind, 0.0) + value
        return totals

    def update_span_metrics(self, prefix: str) -> None:
        samples = scrape(self.span_metrics_url)
        if samples is None:
            return
        seen: dict[str, float] = {}
        for name, labels, value in samples:
            service = labels.get("service_name", "")
            if name == "traces_span_metrics_calls_total" and service.startswith(prefix):
                seen[service] = seen.get(service, 0.0) + value
        with self.lock:
            for service, value in seen.items():
                self.spans_by_service[service] = max(value, self.spans_by_service.get(service, 0.0))
