"""Helpers for the agent/gateway tier tests (tests/tier): processes, Jaeger, metrics.

They need the collector built by ``scripts/stack.sh install`` and the default stack
running (``scripts/stack.sh start``): the gateways export to its Jaeger and its
Prometheus scrapes them. The tier itself is started by the tests -- through
``scripts/stack.sh start-tier`` or directly on free loopback ports -- and stopped
again, also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.backends import Jaeger, Prometheus, get_json

ROOT = Path(__file__).resolve().parents[2]
STACK_SH = ROOT / "scripts" / "stack.sh"
AGENT_CONFIG = ROOT / "collector" / "agent.yaml"
GATEWAY_CONFIG = ROOT / "collector" / "gateway.yaml"


def stack_sh(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(STACK_SH), *args], capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
    )


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text exposition as {series: value} (series = name{labels} as written)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of metric ``name`` whose labels include ``labels``."""
    total = 0.0
    for series, value in samples.items():
        metric, _, rest = series.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class Backends:
    jaeger: Jaeger
    prometheus: Prometheus
    jaeger_otlp_http: str


def prometheus_scrape_urls(prometheus: Prometheus, job: str) -> set[str]:
    data = get_json(f"{prometheus.url}/api/v1/targets?state=any")["data"]["activeTargets"]
    return {t["scrapeUrl"] for t in data if t["labels"].get("job") == job}


# --------------------------------------------------------------------------
# Jaeger: every trace of one service, with what the tests check
# --------------------------------------------------------------------------
@dataclass
class StoredTrace:
    trace_id: str
    span_ids: list[str]  # as stored, duplicates included
    gateways: set[str]  # values of the hcv.collector.gateway process tag
    process_tags: dict[str, str]  # tags of one of its processes


def stored_traces(jaeger: Jaeger, service: str, limit: int = 50000) -> dict[str, StoredTrace]:
    out: dict[str, StoredTrace] = {}
    for data in jaeger.traces_of(service, limit=limit):
        processes = {pid: {t["key"]: str(t["value"]) for t in p["tags"]} for pid, p in data["processes"].items()}
        span_ids = [s["spanID"].rjust(16, "0") for s in data["spans"]]
        gateways = {processes[s["processID"]].get("hcv.collector.gateway", "") for s in data["spans"]}
        trace_id = data["traceID"].rjust(32, "0")
        out[trace_id] = StoredTrace(trace_id, span_ids, gateways, next(iter(processes.values()), {}))
    return out


def wait_until_stable(fetch, *, at_least: int, timeout: float, interval: float = 2.0, stable_rounds: int = 2):
    """Poll ``fetch()`` (a dict) until it holds >= at_least entries and stops changing."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while True:
        current = fetch()
        key = (len(current), sum(len(t.span_ids) for t in current.values()))
        if last == key and len(current) >= at_least:
            same += 1
            if same >= stable_rounds:
                return current
        else:
            same = 0
        last = key
        if time.monotonic() > deadline:
            return current
        time.sleep(interval)


# --------------------------------------------------------------------------
# Processes started by the tests themselves
# --------------------------------------------------------------------------
class Processes:
    """Started processes, each in its own session; all stopped at the end, whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 -- closed with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=15)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[Processes]:
    procs = Processes(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if http_ok(url):
            return True
        time.sleep(0.1)
    return False
