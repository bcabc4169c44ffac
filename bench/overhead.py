#!/usr/bin/env python3
"""Telemetry overhead of the example service, measured side by side (issue 8).

Runs ``POST /api/diagnose/`` of the example service under gunicorn (one sync worker, pinned to one
core with taskset) and wrk (pinned to the other core), in two shapes:

* ``bare``: an anonymous request with a valid body: parsing, validation, model prediction;
* ``realistic``: a DRF-token-authenticated user: token lookup, the user's previous
  DiagnosisRecord read, the prediction, a new record stored (PostgreSQL of the native stack).

and in several variants (``--list-variants``), interleaved over rounds: every round starts a fresh
worker per variant in a rotated order, warms it up, then measures it. Afterwards a soak phase
drives chosen variants to ``--soak-requests`` requests each and samples the worker's resident
memory. The result is written between markers into ``docs/benchmarks.md`` (``--output``), with
the command line and the machine; raw results go to ``--workdir`` as JSON.

Needs the native stack (``bash scripts/stack.sh start``): the collector on 127.0.0.1:4318 (and its
own metrics on :8888, span metrics on :8889) and PostgreSQL. The benchmark uses its own database
(``--database``, created and migrated if missing) and a closed loopback port for the collector-down
variant; it never stops a stack component. Run it with the project's virtualenv::

    .venv/bin/python bench/overhead.py            # the full run (about 25 minutes)
    .venv/bin/python bench/overhead.py --quick    # a smoke run (about 4 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.service import EXAMPLE, free_port, manage, service_env  # noqa: E402

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LUA = BENCH / "wrk_post.lua"
GUNICORN_CONF = BENCH / "gunicorn_conf.py"


def markers(section: str, script: str = "bench/overhead.py") -> tuple[str, str]:
    """The comments that delimit a run's section in the Markdown output (``--section``)."""
    name = script if section == "main" else f"{script} {section}"
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


# The request body: the example model's health-probe sample (the data set's median blood donor).
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
from diagnosis.model import HEALTH_PROBE_SAMPLE  # noqa: E402

BODY = json.dumps(dict(HEALTH_PROBE_SAMPLE))

SHAPES = ("bare", "realistic")
MiB = 1024 * 1024


# Variants ---------------------------------------------------------------------------------------
# "{collector}" is replaced by the collector's OTLP/HTTP endpoint, "{collector_grpc}" by its gRPC
# endpoint and "{closed}" by a loopback port that refuses connections.


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    instrument: bool  # run under opentelemetry-instrument
    env: Mapping[str, str]
    settings_module: str | None = None  # exported DJANGO_SETTINGS_MODULE, if any
    exports: bool = True  # telemetry is meant to reach the collector
    extra: bool = False  # an attribution row, not one of the issue's four


_HCV = {"OTEL_PYTHON_DISTRO": "otel_hcv", "OTEL_EXPORTER_OTLP_ENDPOINT": "{collector}"}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "baseline",
            "uninstrumented: otel_hcv app, middleware and JSON logging removed from the settings "
            "(bench/notelemetry_settings.py), OTEL_SDK_DISABLED=true, plain gunicorn",
            instrument=False,
            env={"OTEL_SDK_DISABLED": "true"},
            settings_module="notelemetry_settings",
            exports=False,
        ),
        Variant(
            "sdk-disabled",
            "the example's settings unchanged, OTEL_SDK_DISABLED=true, plain gunicorn: otel_hcv's app sets "
            "nothing up, but its RequestContextMiddleware, the view's decorators (against OpenTelemetry's no-op "
            "providers) and the JSON console line of the view's INFO log still run",
            instrument=False,
            env={"OTEL_SDK_DISABLED": "true"},
            exports=False,
        ),
        Variant(
            "upstream",
            "plain opentelemetry-instrument: OTEL_PYTHON_DISTRO=distro, OTEL_PYTHON_CONFIGURATOR=configurator, "
            "OTLP over http/protobuf to the collector (upstream's own default would be gRPC), settings as in "
            "baseline (no otel_hcv app, middleware or JSON logging; the view's track_api_metrics and "
            "trace_diagnosis still add their two spans and four measurements through the upstream SDK)",
            instrument=True,
            env={
                "OTEL_PYTHON_DISTRO": "distro",
                "OTEL_PYTHON_CONFIGURATOR": "configurator",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "{collector}",
            },
            # Upstream's Django instrumentor reads the settings when the launcher starts.
            settings_module="notelemetry_settings",
        ),
        Variant(
            "upstream-example",
            "as upstream, with the example's settings unchanged: otel_hcv's app sets nothing up (no otel_hcv "
            "distro), its RequestContextMiddleware and JSON console logging run, and upstream's logging "
            "instrumentation exports the view's INFO records over OTLP",
            instrument=True,
            env={
                "OTEL_PYTHON_DISTRO": "distro",
                "OTEL_PYTHON_CONFIGURATOR": "configurator",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "{collector}",
            },
            settings_module="hcv_service.settings",
            extra=True,
        ),
        Variant(
            "upstream-grpc",
            "as upstream, with upstream's default protocol: OTLP/gRPC to the collector's :4317",
            instrument=True,
            env={
                "OTEL_PYTHON_DISTRO": "distro",
                "OTEL_PYTHON_CONFIGURATOR": "configurator",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "{collector_grpc}",
            },
            settings_module="notelemetry_settings",
            extra=True,
        ),
        Variant(
            "hcv",
            "otel-hcv, everything on: opentelemetry-instrument with OTEL_PYTHON_DISTRO=otel_hcv; traces "
            "(100% sampled), metrics, OTLP logs over http/protobuf to the collector, health gauges, JSON logs",
            instrument=True,
            env=_HCV,
        ),
        Variant(
            "hcv-down",
            "as hcv, collector down: OTEL_EXPORTER_OTLP_ENDPOINT is a closed loopback port",
            instrument=True,
            env={**_HCV, "OTEL_EXPORTER_OTLP_ENDPOINT": "{closed}"},
            exports=False,
        ),
        Variant(
            "hcv-down-no-traces",
            "as hcv-down with OTEL_TRACES_EXPORTER=none: which signal's failing export costs what",
            instrument=True,
            env={**_HCV, "OTEL_EXPORTER_OTLP_ENDPOINT": "{closed}", "OTEL_TRACES_EXPORTER": "none"},
            exports=False,
            extra=True,
        ),
        Variant(
            "hcv-down-no-logs",
            "as hcv-down with OTEL_LOGS_EXPORTER=none",
            instrument=True,
            env={**_HCV, "OTEL_EXPORTER_OTLP_ENDPOINT": "{closed}", "OTEL_LOGS_EXPORTER": "none"},
            exports=False,
            extra=True,
        ),
        Variant(
            "hcv-no-traces",
            "as hcv with OTEL_TRACES_EXPORTER=none (spans still created and sampled, not exported)",
            instrument=True,
            env={**_HCV, "OTEL_TRACES_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-no-logs",
            "as hcv with OTEL_LOGS_EXPORTER=none (JSON console lines stay)",
            instrument=True,
            env={**_HCV, "OTEL_LOGS_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-no-metrics",
            "as hcv with OTEL_METRICS_EXPORTER=none (instruments still record; no metric reader is left)",
            instrument=True,
            env={**_HCV, "OTEL_METRICS_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-no-export",
            "as hcv with all three OTEL_*_EXPORTER=none (telemetry recorded in-process only)",
            instrument=True,
            env={**_HCV, "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-batch-512",
            "as hcv with upstream's export batches of 512 spans and log records (otel-hcv's default is 64): "
            "fewer, longer exports",
            instrument=True,
            env={**_HCV, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "512"},
            extra=True,
        ),
        Variant(
            "hcv-gc-freeze",
            "as hcv, and the worker calls gc.freeze() after loading the app and after its first request "
            "(bench/gunicorn_conf.py, BENCH_GC_FREEZE=1): full collections skip the start-up objects",
            instrument=True,
            env={**_HCV, "BENCH_GC_FREEZE": "1"},
            extra=True,
        ),
        Variant(
            "baseline-gc-freeze",
            "as baseline, with gc.freeze() as in hcv-gc-freeze",
            instrument=False,
            env={"OTEL_SDK_DISABLED": "true", "BENCH_GC_FREEZE": "1"},
            settings_module="notelemetry_settings",
            exports=False,
            extra=True,
        ),
        Variant(
            "hcv-sampled-10",
            "as hcv with 10% trace sampling (parentbased_traceidratio 0.1); does not count toward the targets",
            instrument=True,
            env={**_HCV, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
            extra=True,
        ),
    )
}

FULL_VARIANTS = {
    "bare": ["baseline", "sdk-disabled", "upstream", "upstream-example", "hcv", "hcv-down", "hcv-no-traces",
             "hcv-no-logs", "hcv-no-metrics"],
    "realistic": ["baseline", "upstream", "hcv", "hcv-down"],
}  # fmt: skip
QUICK_VARIANTS = {
    "bare": ["baseline", "sdk-disabled", "upstream", "hcv", "hcv-down"],
    "realistic": ["baseline", "upstream", "hcv"],
}


# Small helpers ----------------------------------------------------------------------------------


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


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


def stack_env() -> dict[str, str]:
    """The stack's addresses, as ``scripts/stack.sh env`` prints them."""
    output = subprocess.run(
        ["bash", str(REPO / "scripts" / "stack.sh"), "env"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    found = dict(re.findall(r"^export (\w+)=(\S*)$", output, re.MULTILINE))
    return {key: value.strip("'\"") for key, value in found.items()}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, held for the run."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def post(url: str, token: str | None, timeout: float = 10.0) -> int:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=BODY.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def tool_version(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "not found"
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "?"


def code_state() -> str:
    """HEAD, whether the tree has uncommitted changes, and a digest of the code under test
    (otel_hcv/, example/, bench/): the tree can change while a long run is going on."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("otel_hcv", "example", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    changes = " with uncommitted changes" if dirty.strip() else ""
    return f"{commit.strip()}{changes}, code digest {digest.hexdigest()[:12]}"


# The server -------------------------------------------------------------------------------------


@dataclass
class Setup:
    args: argparse.Namespace
    run_id: str
    workdir: Path
    collector_endpoint: str
    collector_grpc_endpoint: str
    closed_endpoint: str
    database_url: str
    redis_url: str
    token: str
    user_id: int
    state_at_start: str = ""


class Server:
    """One gunicorn master with one sync worker, pinned to ``core``."""

    def __init__(self, setup: Setup, variant: Variant, shape: str, service_name: str, core: int, tag: str) -> None:
        self.variant = variant
        self.shape = shape
        self.service_name = service_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/diagnose/"
        self.stats_path = setup.workdir / f"{tag}.stats.json"
        self.log_path = setup.workdir / f"{tag}.log"
        self.token = setup.token if shape == "realistic" else None
        replacements = {
            "{collector}": setup.collector_endpoint,
            "{collector_grpc}": setup.collector_grpc_endpoint,
            "{closed}": setup.closed_endpoint,
        }
        extra = {key: replacements.get(value, value) for key, value in variant.env.items()}
        python_path = [str(BENCH)]
        if variant.settings_module:
            extra["DJANGO_SETTINGS_MODULE"] = variant.settings_module
            python_path.append(str(EXAMPLE))
        extra.update(
            {
                "PYTHONPATH": os.pathsep.join(python_path),
                "HCV_DATABASE_URL": setup.database_url,
                "HCV_REDIS_URL": setup.redis_url,
                "HCV_ALLOW_FAILURE_INJECTION": "0",
                "HCV_STORE_DIAGNOSES": "1",
                "OTEL_SERVICE_NAME": service_name,
                "BENCH_STATS_FILE": str(self.stats_path),
                **({"BENCH_SLOW_MS": str(setup.args.slow_ms)} if setup.args.slow_ms else {}),
            }
        )
        self.env = service_env(extra)
        gunicorn = [
            str(BIN / "gunicorn"),
            "-c", str(GUNICORN_CONF),
            "--workers", "1",
            "--worker-class", "sync",
            "--bind", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "5",
            "--no-control-socket",
            "hcv_service.wsgi:application",
        ]  # fmt: skip
        launcher = [str(BIN / "opentelemetry-instrument")] if variant.instrument else []
        self.command = ["taskset", "-c", str(core), *launcher, *gunicorn]
        self.process: subprocess.Popen[bytes] | None = None
        self.worker: psutil.Process | None = None
        self.requests_served = 0

    def start(self, timeout: float = 120.0) -> None:
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                self.command, cwd=EXAMPLE, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.variant.name}: gunicorn exited with {self.process.returncode}:\n{self.tail()}"
                )
            try:
                status = post(self.url, self.token)
            except OSError:
                time.sleep(0.2)
                continue
            self.requests_served += 1
            if status != 200:
                raise RuntimeError(f"{self.variant.name}: POST answered {status}:\n{self.tail()}")
            break
        else:
            raise RuntimeError(f"{self.variant.name}: no answer within {timeout}s:\n{self.tail()}")
        master = psutil.Process(self.process.pid)
        workers = [child for child in master.children() if child.is_running()]
        if len(workers) != 1:
            raise RuntimeError(f"{self.variant.name}: expected one worker, found {workers}")
        self.worker = workers[0]

    def rss(self) -> int:
        assert self.worker is not None
        return self.worker.memory_info().rss

    def cpu_seconds(self) -> float:
        assert self.worker is not None
        times = self.worker.cpu_times()
        return times.user + times.system

    def stats(self, newer_than: float = 0.0, wait: float = 3.0) -> dict[str, Any] | None:
        """The worker's latest stats (bench/gunicorn_conf.py), waiting for one written after ``newer_than``."""
        deadline = time.monotonic() + wait
        latest = None
        while True:
            with contextlib.suppress(OSError, ValueError):
                latest = json.loads(self.stats_path.read_text())
            if (latest and latest.get("time", 0) > newer_than) or time.monotonic() > deadline:
                return latest
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> float:
        """SIGTERM (graceful: the SDK flushes what it holds), SIGKILL after ``timeout``; seconds taken."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # Leftovers in the group (the worker, if the master died first).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return time.monotonic() - started

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def compact_log(self, keep: int = 30) -> list[str]:
        """Shrink the service log (one JSON line per request) to its head and tail; return its warnings
        and errors, counted by logger and message."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        seen: dict[str, int] = {}
        for line in text:
            key = None
            if line.startswith("{") and '"level":"' in line and '"level":"INFO"' not in line:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                        key = f"{record['level']} {record.get('logger')}: {str(record.get('message'))[:160]}"
            elif "Traceback" in line or "[ERROR]" in line or "[CRITICAL]" in line:
                key = re.sub(r"^\[[^]]*\] \[\d+\] ", "", line)[:160]
            if key:
                seen[key] = seen.get(key, 0) + 1
        if len(text) > 2 * keep:
            text = [*text[:keep], f"... {len(text) - 2 * keep} lines dropped by bench/overhead.py ...", *text[-keep:]]
        self.log_path.write_text("\n".join(text) + "\n")
        return [f"{count} x {key}" for key, count in seen.items()]


def run_wrk(url: str, token: str | None, seconds: float, connections: int, core: int | None) -> dict[str, Any]:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA), url,
    ]  # fmt: skip
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "BENCH_BODY": BODY, "BENCH_TOKEN": token or ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line.removeprefix("BENCH_RESULT "))
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            data["error_count"] = sum(data["errors"].values())
            return data
    raise RuntimeError(f"wrk gave no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


# The collector's view ---------------------------------------------------------------------------


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


# Interleaved cells ------------------------------------------------------------------------------


@dataclass
class Cell:
    shape: str
    variant: str
    round: int
    position: int
    service_name: str
    wrk: dict[str, Any] = field(default_factory=dict)
    warmup_requests: int = 0
    requests_served: int = 0
    rss_ready: int = 0
    rss_start: int = 0
    rss_end: int = 0
    cpu_seconds: float = 0.0
    cpu_us_per_request: float = 0.0
    core_busy: float = 0.0  # share of the server core busy during the measurement, all processes
    others: float = 0.0  # share of the server core used by other processes (core busy - the worker's share)
    stats: dict[str, Any] | None = None
    collector_delta: dict[str, float] | None = None
    shutdown_seconds: float = 0.0
    quiet_wait: float = 0.0
    problems: list[str] = field(default_factory=list)


def truncate_records(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("TRUNCATE diagnosis_diagnosisrecord")


class QuietWait:
    """Before a run, wait (within a budget) until other processes leave the server core mostly idle.

    The machine is shared: someone else's test run on the server core slows whichever variant happens
    to be measured. Waiting for a quiet second does not make the run clean, but it keeps the worst
    bursts out; the time waited is reported.
    """

    def __init__(self, core: int, threshold: float, per_run: float, budget: float) -> None:
        self.core, self.threshold, self.per_run, self.budget = core, threshold, per_run, budget
        self.waited = 0.0

    def busy(self, seconds: float = 1.0) -> float:
        before = psutil.cpu_times(percpu=True)[self.core]
        time.sleep(seconds)
        after = psutil.cpu_times(percpu=True)[self.core]
        fields = ("user", "system", "nice", "irq", "softirq")
        busy = sum(getattr(after, f) - getattr(before, f) for f in fields)
        idle = (after.idle - before.idle) + (after.iowait - before.iowait)
        return busy / (busy + idle) if busy + idle > 0 else 0.0

    def wait(self) -> float:
        """Seconds waited before the core was quiet (or the limits ran out)."""
        started = time.monotonic()
        while self.busy() > self.threshold:
            spent = time.monotonic() - started
            if spent >= self.per_run or self.waited + spent >= self.budget:
                break
        spent = time.monotonic() - started
        self.waited += spent
        return spent


def run_cell(
    setup: Setup,
    collector: CollectorView,
    shape: str,
    variant: Variant,
    round_no: int,
    position: int,
    quiet: QuietWait | None = None,
) -> Cell:
    args = setup.args
    tag = f"{shape}-{variant.name}-r{round_no}"
    cell = Cell(shape, variant.name, round_no, position, f"bench-{setup.run_id}-{tag}")
    if quiet is not None:
        cell.quiet_wait = quiet.wait()
    if shape == "realistic":
        truncate_records(setup.database_url)
    before = collector.receiver_totals()
    server = Server(setup, variant, shape, cell.service_name, args.server_core, tag)
    try:
        server.start()
        cell.rss_ready = server.rss()
        warm = run_wrk(server.url, server.token, args.warmup, args.connections, args.client_core)
        cell.warmup_requests = warm["requests"]
        cell.rss_start = server.rss()
        cpu_before = server.cpu_seconds()
        core_before = psutil.cpu_times(percpu=True)[args.server_core]
        result = run_wrk(server.url, server.token, args.duration, args.connections, args.client_core)
        finished = time.time()
        core_after = psutil.cpu_times(percpu=True)[args.server_core]
        cell.cpu_seconds = server.cpu_seconds() - cpu_before
        cell.rss_end = server.rss()
        cell.wrk = result
        cell.requests_served = server.requests_served + warm["requests"] + result["requests"]
        cell.cpu_us_per_request = cell.cpu_seconds / max(result["requests"], 1) * 1e6
        busy = sum(
            getattr(core_after, f) - getattr(core_before, f) for f in ("user", "system", "nice", "irq", "softirq")
        )
        total = busy + (core_after.idle - core_before.idle) + (core_after.iowait - core_before.iowait)
        cell.core_busy = busy / total if total > 0 else 0.0
        cell.others = max(0.0, cell.core_busy - cell.cpu_seconds / (result["duration_us"] / 1e6))
        cell.stats = server.stats(newer_than=finished)
        if result["error_count"]:
            cell.problems.append(f"wrk errors: {result['errors']}")
    finally:
        cell.shutdown_seconds = server.stop()
        cell.problems.extend(server.compact_log())
    after = collector.receiver_totals()
    if before is not None and after is not None:
        cell.collector_delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    collector.update_span_metrics(f"bench-{setup.run_id}-")
    return cell


# Soak -------------------------------------------------------------------------------------------


@dataclass
class Soak:
    shape: str
    variant: str
    service_name: str
    core: int
    samples: list[dict[str, float]] = field(default_factory=list)  # requests, rss, seconds
    rps: float = 0.0
    stats: dict[str, Any] | None = None
    reached: bool = False
    problems: list[str] = field(default_factory=list)
    error: str = ""


def run_soak(setup: Setup, soak: Soak, target: int, checkpoint: int, max_seconds: float) -> None:
    args = setup.args
    variant = VARIANTS[soak.variant]
    server = Server(setup, variant, soak.shape, soak.service_name, soak.core, f"soak-{soak.shape}-{soak.variant}")
    try:
        server.start()
        started = time.monotonic()
        served = server.requests_served
        soak.samples.append({"requests": served, "rss": server.rss(), "seconds": 0.0})
        rate = 100.0
        next_mark = checkpoint
        busy_seconds = 0.0
        while served < target and time.monotonic() - started < max_seconds:
            seconds = min(60.0, max(2.0, (next_mark - served) / rate + 1.0))
            result = run_wrk(server.url, server.token, seconds, args.connections, None)
            served += result["requests"]
            busy_seconds += result["duration_us"] / 1e6
            rate = max(result["rps"], 1.0)
            if result["error_count"]:
                soak.problems.append(f"wrk errors: {result['errors']}")
            if served >= next_mark or served >= target:
                soak.samples.append(
                    {"requests": served, "rss": server.rss(), "seconds": round(time.monotonic() - started, 1)}
                )
                while next_mark <= served:
                    next_mark += checkpoint
        soak.reached = served >= target
        soak.rps = (served - server.requests_served) / busy_seconds if busy_seconds else 0.0
        soak.stats = server.stats(newer_than=time.time())
    except Exception as exc:  # reported, the other soak goes on
        soak.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
        soak.problems.extend(server.compact_log())


def rss_at(samples: Sequence[Mapping[str, float]], requests: float) -> Mapping[str, float] | None:
    """The first sample taken at or after ``requests`` requests."""
    return next((s for s in samples if s["requests"] >= requests), None)


def growth_slope(samples: Sequence[Mapping[str, float]], lower: float) -> float | None:
    """Least-squares RSS growth, bytes per 10,000 requests, over samples from ``lower`` requests on."""
    points = [(s["requests"], s["rss"]) for s in samples if s["requests"] >= lower]
    if len(points) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var * 10_000


# Report -----------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def spread(values: Sequence[float], digits: int = 2) -> str:
    if len(values) < 2:
        return ""
    return f" ({min(values):.{digits}f}-{max(values):.{digits}f})"


@dataclass
class Summary:
    shape: str
    variant: str
    rounds: int
    rps: float | None
    rps_ratio: list[float]
    p50_ms: float | None
    p50_ratio: list[float]
    p99_ms: float | None
    p99_ratio: list[float]
    cpu_us: float | None
    cpu_ratio: list[float]
    others: float | None
    errors: int


def summarise(cells: Sequence[Cell], baseline: str) -> dict[tuple[str, str], Summary]:
    by_key: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        by_key.setdefault((cell.shape, cell.variant), []).append(cell)
    base_by_round = {(c.shape, c.round): c for c in cells if c.variant == baseline}
    out = {}
    for (shape, variant), group in by_key.items():
        rps, p50, p99, cpu = [], [], [], []
        for cell in group:
            base = base_by_round.get((shape, cell.round))
            if base is None or not base.wrk or not cell.wrk:
                continue
            rps.append(cell.wrk["rps"] / base.wrk["rps"])
            p50.append(cell.wrk["latency_us"]["p50"] / base.wrk["latency_us"]["p50"])
            p99.append(cell.wrk["latency_us"]["p99"] / base.wrk["latency_us"]["p99"])
            cpu.append(cell.cpu_us_per_request / base.cpu_us_per_request if base.cpu_us_per_request else 0.0)
        done = [c for c in group if c.wrk]
        out[(shape, variant)] = Summary(
            shape,
            variant,
            len(done),
            median([c.wrk["rps"] for c in done]),
            rps,
            median([c.wrk["latency_us"]["p50"] / 1000 for c in done]),
            p50,
            median([c.wrk["latency_us"]["p99"] / 1000 for c in done]),
            p99,
            median([c.cpu_us_per_request for c in done]),
            cpu,
            median([c.others for c in done]),
            sum(c.wrk.get("error_count", 0) for c in done),
        )
    return out


def ratio_text(values: Sequence[float]) -> str:
    return "n/a" if not values else f"{statistics.median(values):.2f}{spread(values)}"


def accounting_row(
    label: str,
    served: int,
    stats: Sequence[Mapping[str, Any] | None],
    received: float,
    delta: Mapping[str, float] | None,
) -> str:
    span_counts = [st["spans"] for st in stats if st and st.get("spans")]
    log_counts = [st["logs"] for st in stats if st and st.get("logs")]

    def total(counts: Sequence[Mapping[str, Any]], key: str) -> int:
        return int(sum(c.get(key, 0) for c in counts))

    def made(counts: Sequence[Mapping[str, Any]]) -> int:
        return total(counts, "submitted") + total(counts, "dropped") + total(counts, "queued")

    export_seconds = sum(c.get("export_seconds", 0.0) for c in span_counts)
    batches = total(span_counts, "batches")
    delta_text = (
        (f"{int(delta.get('accepted_spans', 0)):,}", f"{int(delta.get('accepted_log_records', 0)):,}")
        if delta is not None
        else ("n/a", "n/a")
    )
    return (
        f"| {label} | {served:,} | {made(span_counts) / served if served else 0:.2f} | "
        f"{total(span_counts, 'exported'):,} | {total(span_counts, 'failed'):,} | "
        f"{total(span_counts, 'dropped'):,} | {int(received):,} | {delta_text[0]} | "
        f"{made(log_counts):,} | {total(log_counts, 'exported'):,} | {total(log_counts, 'failed'):,} | "
        f"{total(log_counts, 'dropped'):,} | {delta_text[1]} | "
        f"{(export_seconds / batches * 1000) if batches else 0:.1f} |"
    )


def telemetry_rows(cells: Sequence[Cell], soaks: Sequence[Soak], collector: CollectorView) -> list[str]:
    rows = []
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.shape, cell.variant), []).append(cell)
    for (shape, variant), group in groups.items():
        if not VARIANTS[variant].instrument:
            continue
        delta: dict[str, float] = {}
        for cell in group:
            for key, value in (cell.collector_delta or {}).items():
                delta[key] = delta.get(key, 0.0) + value
        rows.append(
            accounting_row(
                f"{shape} | {variant}",
                sum(c.requests_served for c in group),
                [c.stats for c in group],
                sum(collector.spans_by_service.get(c.service_name, 0.0) for c in group),
                delta,
            )
        )
    for soak in soaks:
        served = int(soak.samples[-1]["requests"]) if soak.samples else 0
        received = collector.spans_by_service.get(soak.service_name, 0.0)
        rows.append(accounting_row(f"{soak.shape} | {soak.variant} (soak)", served, [soak.stats], received, None))
    return rows


def machine_description(args: argparse.Namespace, state_at_start: str, state_at_end: str) -> list[str]:
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    collector_bin = subprocess.run(
        ["bash", str(REPO / "scripts" / "stack.sh"), "bin", "collector"], capture_output=True, text=True
    ).stdout.strip()
    return [
        f"- CPU: {os.cpu_count()} cores ({cpu_model or platform.processor()}), "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, shared with other users of the machine; "
        f"gunicorn pinned to core {args.server_core}, wrk to core {args.client_core}; the stack is not pinned",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; Django {version('django')}, DRF {version('djangorestframework')}, "
        f"gunicorn {version('gunicorn')}, scikit-learn {version('scikit-learn')}, psycopg {version('psycopg')}",
        f"- OpenTelemetry: api/sdk {version('opentelemetry-sdk')}, "
        f"instrumentation {version('opentelemetry-instrumentation')}, "
        f"instrumentation-django {version('opentelemetry-instrumentation-django')}, "
        f"exporter-otlp-proto-http {version('opentelemetry-exporter-otlp-proto-http')}, "
        f"protobuf {version('protobuf')}, otel-hcv {version('otel-hcv')}",
        f"- wrk: {tool_version(['wrk', '-v'])}; collector: {Path(collector_bin).name or 'unknown'}",
        f"- Repository at the start: {state_at_start}"
        + (
            ""
            if state_at_start.rsplit(" ", 1)[-1] == state_at_end.rsplit(" ", 1)[-1]
            else f"; **the code changed during the run** (at the end: {state_at_end})"
        ),
    ]


def render(
    setup: Setup,
    cells: Sequence[Cell],
    soaks: Sequence[Soak],
    collector: CollectorView,
    elapsed: float,
    command: str,
) -> str:
    args = setup.args
    summaries = summarise(cells, args.baseline)
    lines = [
        markers(args.section)[0],
        "",
        f"Produced by `{command}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} "
        f"in {elapsed / 60:.1f} minutes (raw results: `{setup.workdir}/results.json`).",
        "",
        *machine_description(args, setup.state_at_start, code_state()),
        "",
        f"Method: {args.rounds} round(s); in each, every variant gets a fresh gunicorn worker, in an order rotated "
        f"from round to round, {args.warmup:g} s of warm-up, then {args.duration:g} s measured with "
        f"`wrk -t1 -c{args.connections}` (gunicorn's sync worker closes every connection, so each request "
        "includes a TCP connect). Throughput, p50 and p99 are medians over the rounds; ratios are "
        f"taken per round against the same round's `{args.baseline}` run, then the median (and range) of "
        "those. CPU/request is the worker's user+system CPU time (all its threads, export threads included) "
        "divided by the requests served in the measured window: less sensitive to other users of the "
        "machine than throughput. Others on core: the share of the server core used by other processes "
        "during the window (the machine is shared; taskset keeps our processes apart, not everyone else's). "
        + (
            f"Before each run the benchmark waited up to {args.quiet_wait:g} s for that share to fall below "
            f"{args.quiet_threshold:.0%} (in all {sum(c.quiet_wait for c in cells):.0f} s)."
            if args.quiet_wait > 0
            else ""
        ),
        "",
        "Variants:",
        "",
    ]
    used = sorted({c.variant for c in cells} | {s.variant for s in soaks}, key=list(VARIANTS).index)
    lines += [f"- `{name}`: {VARIANTS[name].label}" for name in used]
    lines += [
        "",
        "### Throughput and latency",
        "",
        "| shape | variant | req/s | x baseline | p50 ms | x baseline | p99 ms | x baseline | CPU µs/req | "
        "x baseline | others on core |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape in SHAPES:
        for name in VARIANTS:
            summary = summaries.get((shape, name))
            if summary is None:
                continue
            lines.append(
                f"| {shape} | {name}{' (extra)' if VARIANTS[name].extra else ''} | {fmt(summary.rps, 0)} | "
                f"{ratio_text(summary.rps_ratio)} | {fmt(summary.p50_ms)} | {ratio_text(summary.p50_ratio)} | "
                f"{fmt(summary.p99_ms)} | {ratio_text(summary.p99_ratio)} | {fmt(summary.cpu_us, 0)} | "
                f"{ratio_text(summary.cpu_ratio)} | {fmt((summary.others or 0) * 100, 0, '%')} |"
            )
    lines += [
        "",
        "### Telemetry accounting",
        "",
        "SDK side: counters installed by `bench/gunicorn_conf.py` on the batch processors, read at the end of "
        "each measured window and summed over the rounds (spans ended = handed to the exporter + dropped + "
        "still queued). Collector side: spans per service name from the collector's span-metrics connector "
        "(`traces_span_metrics_calls_total` on :8889, each run has its own `service.name`, counted after "
        "the worker's shutdown flush), and the change of the collector's own receiver counters "
        "(`otelcol_receiver_accepted_spans` / `_log_records` on :8888) from before the worker started to "
        "after it stopped; the stack is shared, so the latter includes anyone else's telemetry in that time.",
        "",
        "| shape | variant | requests | spans/req | spans exported | export failed | dropped (queue full) | "
        "collector: span metrics | collector: receiver Δ | log records | logs exported | logs failed | "
        "logs dropped | collector: log Δ | ms per span export |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *telemetry_rows(cells, soaks, collector),
    ]
    lines += ["", "### Garbage collection in the worker", ""]
    lines += gc_lines(cells, soaks)
    if args.slow_ms:
        lines += ["", f"### Requests over {args.slow_ms:g} ms in the worker", ""]
        lines += slow_lines(cells)
    lines += ["", "### Resident memory of the worker", ""]
    lines += memory_lines(cells, soaks, args)
    lines += ["", "### Targets", ""]
    lines += target_lines(summaries, soaks, args)
    merged: dict[str, int] = {}
    for where, problem in [(f"{c.shape}/{c.variant}", p) for c in cells for p in c.problems] + [
        (f"soak {s.shape}/{s.variant}", p) for s in soaks for p in [*s.problems, *([s.error] if s.error else [])]
    ]:
        count, _, text = problem.partition(" x ")
        if not count.isdigit():
            count, text = "1", problem
        merged[f"{where}: {text}"] = merged.get(f"{where}: {text}", 0) + int(count)
    if merged:
        lines += [
            "",
            "### Warnings and errors in the service logs",
            "",
            "Counted over all rounds; export failures are expected with the collector down.",
            "",
            *[f"- {count} x {text}" for text, count in list(merged.items())[:40]],
        ]
    lines += ["", markers(args.section)[1]]
    return "\n".join(lines) + "\n"


def gc_lines(cells: Sequence[Cell], soaks: Sequence[Soak]) -> list[str]:
    """Collections and pauses per generation, from gc.callbacks in the worker (bench/gunicorn_conf.py),
    over the worker's whole life (start-up, warm-up and the measured window), per request served."""
    lines = [
        "From `gc.callbacks` in the worker, over its whole life (start-up included), summed over the rounds: "
        "collections per 1,000 requests, pause per request, and the longest pause. A full (generation 2) "
        "collection walks every tracked object in the process, so its pause grows with the heap, not with "
        "the garbage, and lands on whichever request is running.",
        "",
        "| shape | variant | requests | gen 0+1 per 1k req | gen 0+1 µs/req | gen 2 per 1k req | gen 2 µs/req | "
        "longest gen 2 pause ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[tuple[int, Mapping[str, Any]]]] = {}
    for cell in cells:
        if cell.stats and cell.stats.get("gc"):
            groups.setdefault((cell.shape, cell.variant), []).append((cell.requests_served, cell.stats["gc"]))
    for soak in soaks:
        if soak.stats and soak.stats.get("gc") and soak.samples:
            key = (soak.shape, f"{soak.variant} (soak)")
            groups.setdefault(key, []).append((int(soak.samples[-1]["requests"]), soak.stats["gc"]))
    for (shape, variant), items in groups.items():
        served = sum(n for n, _ in items)
        if not served:
            continue
        young = sum(g["count"][0] + g["count"][1] for _, g in items)
        young_s = sum(g["seconds"][0] + g["seconds"][1] for _, g in items)
        full = sum(g["count"][2] for _, g in items)
        full_s = sum(g["seconds"][2] for _, g in items)
        longest = max(g["max_seconds"][2] for _, g in items)
        lines.append(
            f"| {shape} | {variant} | {served:,} | {young / served * 1000:.0f} | {young_s / served * 1e6:.0f} | "
            f"{full / served * 1000:.2f} | {full_s / served * 1e6:.0f} | {longest * 1000:.1f} |"
        )
    return lines


def histogram_percentile(items: Sequence[Mapping[str, Any]], quantile: float) -> str:
    """The bucket bound (ms) under which ``quantile`` of the requests fell, as "≤ N"."""
    buckets = items[0].get("buckets_ms") if items else None
    if not buckets:
        return "n/a"
    counts = [sum(i["histogram"][k] for i in items) for k in range(len(buckets) + 1)]
    total = sum(counts)
    running = 0
    for bound, count in zip([*buckets, None], counts, strict=True):
        running += count
        if total and running >= quantile * total:
            return f"≤ {bound}" if bound is not None else f"> {buckets[-1]}"
    return "n/a"


def slow_lines(cells: Sequence[Cell]) -> list[str]:
    lines = [
        "Timed in the worker from gunicorn's `pre_request` to `post_request` (queueing in front of the "
        "worker is not included), over the worker's whole life, summed over the rounds; gaps are the "
        "times from one request's `post_request` to the next one's `pre_request` (closing the connection, "
        "accepting the next, parsing it) over the same limit.",
        "",
        "| shape | variant | requests | slow | slow per 1k | mean slow ms | of which GC ms | with a full GC | "
        "gaps between requests over the limit | mean gap ms | gaps with a full GC | server-side p50 ms | "
        "server-side p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for cell in cells:
        if cell.stats and cell.stats.get("slow_requests"):
            groups.setdefault((cell.shape, cell.variant), []).append(cell.stats["slow_requests"])
    for (shape, variant), items in groups.items():
        total = sum(i["requests"] for i in items)
        slow = sum(i["slow"] for i in items)
        if not total:
            continue
        mean = sum(i["slow_seconds"] for i in items) / slow * 1000 if slow else 0.0
        gc_ms = sum(i["slow_gc_seconds"] for i in items) / slow * 1000 if slow else 0.0
        with_gc = sum(i["slow_with_full_gc"] for i in items)
        gaps = sum(i.get("gaps", 0) for i in items)
        gap_ms = sum(i.get("gap_seconds", 0.0) for i in items) / gaps * 1000 if gaps else 0.0
        gaps_gc = sum(i.get("gaps_with_full_gc", 0) for i in items)
        lines.append(
            f"| {shape} | {variant} | {total:,} | {slow:,} | {slow / total * 1000:.1f} | {mean:.1f} | "
            f"{gc_ms:.1f} | {with_gc:,} | {gaps:,} | {gap_ms:.1f} | {gaps_gc:,} | "
            f"{histogram_percentile(items, 0.50)} | {histogram_percentile(items, 0.99)} |"
        )
    return lines


def memory_lines(cells: Sequence[Cell], soaks: Sequence[Soak], args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    soak_lines = [
        f"Soak: a fresh worker per variant, `wrk -c{args.connections}` until {args.soak_requests:,} requests "
        f"(RSS sampled every {args.soak_checkpoint:,}); soaks run two at a time, one per core, so their "
        f"request rates are not comparable with the table above. Growth limit for PASS: "
        f"{args.memory_limit_mib:g} MiB between {args.soak_requests // 2:,} and {args.soak_requests:,} requests.",
        "",
        f"| shape | variant | RSS at first request | RSS @ {args.soak_checkpoint:,} | "
        f"RSS @ {args.soak_requests // 2:,} | "
        f"RSS @ {args.soak_requests:,} | growth, second half | slope, second half | req/s | samples (requests: MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    if soaks:
        lines += soak_lines
    else:
        lines += ["No soak in this run (`--soak-variants` was empty)."]
    for soak in soaks:
        half = rss_at(soak.samples, args.soak_requests // 2)
        end = rss_at(soak.samples, args.soak_requests)
        first = rss_at(soak.samples, args.soak_checkpoint)
        growth = (end["rss"] - half["rss"]) / MiB if half and end else None
        slope = growth_slope(soak.samples, args.soak_requests // 2)

        def at(sample: Mapping[str, float] | None) -> str:
            return "n/a" if sample is None else f"{sample['rss'] / MiB:.1f} MiB ({int(sample['requests']):,})"

        trail = ", ".join(
            f"{int(s['requests']) // 1000}k: {s['rss'] / MiB:.1f}"
            if s["requests"] >= 10_000
            else f"{int(s['requests']):,}: {s['rss'] / MiB:.1f}"
            for s in soak.samples
        )
        lines.append(
            f"| {soak.shape} | {soak.variant} | {at(soak.samples[0] if soak.samples else None)} | {at(first)} | "
            f"{at(half)} | {at(end)} | {fmt(growth, 2, ' MiB')} | "
            f"{fmt(None if slope is None else slope / 1024, 0, ' KiB/10k req')} | {soak.rps:.0f} | {trail} |"
        )
    lines += [
        "",
        "Interleaved runs (median over rounds): RSS after the first request, after warm-up, and at the end of "
        "the measured window.",
        "",
        "| shape | variant | requests served | RSS first request | RSS after warm-up | RSS at end |",
        "|---|---|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.shape, cell.variant), []).append(cell)
    for (shape, variant), group in groups.items():
        done = [c for c in group if c.rss_end]
        if not done:
            continue
        lines.append(
            f"| {shape} | {variant} | {int(median([c.requests_served for c in done]) or 0):,} | "
            f"{(median([c.rss_ready for c in done]) or 0) / MiB:.1f} MiB | "
            f"{(median([c.rss_start for c in done]) or 0) / MiB:.1f} MiB | "
            f"{(median([c.rss_end for c in done]) or 0) / MiB:.1f} MiB |"
        )
    return lines


def target_lines(
    summaries: Mapping[tuple[str, str], Summary], soaks: Sequence[Soak], args: argparse.Namespace
) -> list[str]:
    lines = ["| target | measured | result |", "|---|---|---|"]

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "**FAIL**")

    def med(values: Sequence[float]) -> float | None:
        return statistics.median(values) if values else None

    for shape, minimum in (("bare", 0.85), ("realistic", 0.95)):
        if shape not in args.shape_list:
            continue
        summary = summaries.get((shape, "hcv"))
        ratio = med(summary.rps_ratio) if summary else None
        lines.append(
            f"| {shape}: hcv throughput ≥ {minimum:.2f} x baseline | {fmt(ratio)} | "
            f"{verdict(None if ratio is None else ratio >= minimum)} |"
        )
        p99 = med(summary.p99_ratio) if summary else None
        lines.append(
            f"| {shape}: hcv p99 ≤ 2 x baseline p99 | {fmt(p99)} | {verdict(None if p99 is None else p99 <= 2.0)} |"
        )
        up = summaries.get((shape, "hcv"))
        down = summaries.get((shape, "hcv-down"))
        if up and down and up.rps and down.rps and up.p99_ms and down.p99_ms:
            rps_ok = down.rps >= up.rps * (1 - args.tolerance)
            p99_ok = down.p99_ms <= up.p99_ms * (1 + args.p99_tolerance)
            lines.append(
                f"| {shape}: collector down no worse than up (req/s within {args.tolerance:.0%}, "
                f"p99 within {args.p99_tolerance:.0%}) | req/s {down.rps:.0f} vs {up.rps:.0f}, "
                f"p99 {down.p99_ms:.2f} vs {up.p99_ms:.2f} ms | {verdict(rps_ok and p99_ok)} |"
            )
        upstream = summaries.get((shape, "upstream"))
        if upstream and summary:
            lines.append(
                f"| {shape}: (for reference) plain opentelemetry-instrument, same run | "
                f"throughput {ratio_text(upstream.rps_ratio)}, p99 {ratio_text(upstream.p99_ratio)} | — |"
            )
    for soak in soaks:
        half = rss_at(soak.samples, args.soak_requests // 2)
        end = rss_at(soak.samples, args.soak_requests)
        if half and end:
            growth = (end["rss"] - half["rss"]) / MiB
            lines.append(
                f"| {soak.shape}/{soak.variant}: no RSS growth from {int(half['requests']):,} to "
                f"{int(end['requests']):,} requests (≤ {args.memory_limit_mib:g} MiB) | {growth:+.2f} MiB | "
                f"{verdict(growth <= args.memory_limit_mib)} |"
            )
        else:
            lines.append(
                f"| {soak.shape}/{soak.variant}: RSS from {args.soak_requests // 2:,} to {args.soak_requests:,} "
                f"requests | not reached ({int(soak.samples[-1]['requests']) if soak.samples else 0:,}) | n/a |"
            )
    return lines


def write_section(
    path: Path, section: str, name: str = "main", script: str = "bench/overhead.py", title: str = "Overhead"
) -> None:
    """Replace the section between the script's markers in ``path`` (or append it)."""
    begin, end = markers(name, script)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section.rstrip("\n") + tail
    else:
        heading = f"{title} ({script})" if name == "main" else f"{title}: {name} ({script})"
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + section
    path.write_text(text)


# Main -------------------------------------------------------------------------------------------


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show (flags, options whose help gives it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        if isinstance(action, argparse._StoreFalseAction):
            return action.help or ""
        return super()._get_help_string(action) or ""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Telemetry overhead of the example service: variants interleaved over rounds under gunicorn "
            "(one sync worker on one core) and wrk (on the other core), then a memory soak. Writes a table "
            "into docs/benchmarks.md. Needs the native stack (bash scripts/stack.sh start)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round, 2 s warm-up, 5 s measured, fewer variants, 6,000-request soak "
        "(explicit options still win)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 4; --quick 2)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 12; --quick 5)")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections (one wrk thread)")
    parser.add_argument("--shapes", default="bare,realistic", help="comma-separated: bare, realistic")
    parser.add_argument("--bare-variants", help=f"comma-separated (default {','.join(FULL_VARIANTS['bare'])})")
    parser.add_argument(
        "--realistic-variants", help=f"comma-separated (default {','.join(FULL_VARIANTS['realistic'])})"
    )
    parser.add_argument("--baseline", default="baseline", help="variant the ratios are taken against")
    parser.add_argument(
        "--soak-variants",
        default="hcv,hcv-down",
        help="variants driven to --soak-requests for the memory check; empty for none",
    )
    parser.add_argument("--soak-shape", default="bare", choices=SHAPES, help="request shape of the soak")
    parser.add_argument("--soak-requests", type=int, help="requests per soak (default 100000; --quick 6000)")
    parser.add_argument("--soak-checkpoint", type=int, help="RSS sample every N requests (default 10000; --quick 1000)")
    parser.add_argument(
        "--soak-max-seconds", type=float, default=900.0, help="time bound of each soak (they run two at a time)"
    )
    parser.add_argument(
        "--memory-limit-mib",
        type=float,
        default=2.0,
        help="largest RSS growth over the second half of a soak that still passes",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.03,
        help="collector down may have this much less throughput than up and still pass",
    )
    parser.add_argument(
        "--p99-tolerance",
        type=float,
        default=0.10,
        help="collector down may have this much higher p99 than up and still pass",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each run, wait up to this many seconds for other processes to leave the server core "
        "below --quiet-threshold (0: do not wait)",
    )
    parser.add_argument("--quiet-threshold", type=float, default=0.25, help="busy share of the server core")
    parser.add_argument("--quiet-budget", type=float, default=240.0, help="total seconds of such waiting per run")
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=0.0,
        help="diagnostic: time every request in the worker and report those over this many ms, with the "
        "share of their time spent in garbage collection (adds a few µs per request; 0: off)",
    )
    parser.add_argument("--server-core", type=int, default=0, help="core gunicorn is pinned to")
    parser.add_argument("--client-core", type=int, default=1, help="core wrk is pinned to")
    parser.add_argument(
        "--database",
        default="hcv_bench",
        help="PostgreSQL database of the benchmark, on the stack's server (created if missing)",
    )
    parser.add_argument(
        "--collector-metrics", default="http://127.0.0.1:8888/metrics", help="the collector's own metrics"
    )
    parser.add_argument(
        "--span-metrics",
        default="http://127.0.0.1:8889/metrics",
        help="the collector's Prometheus exporter (span-metrics connector)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "docs" / "benchmarks.md",
        help="Markdown file; its section between the bench/overhead.py markers is replaced",
    )
    parser.add_argument(
        "--section",
        default="main",
        help="name of the section of --output this run replaces (or appends), so that runs with other "
        "options can sit next to the main one",
    )
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing --output")
    parser.add_argument(
        "--workdir", type=Path, help="logs, worker stats and results.json (default /tmp/otel-hcv-bench/<run id>)"
    )
    parser.add_argument("--list-variants", action="store_true", help="describe the variants and exit")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "rounds": (3, 1), "warmup": (4.0, 2.0), "duration": (12.0, 5.0),
        "soak_requests": (100_000, 6_000), "soak_checkpoint": (10_000, 1_000),
    }  # fmt: skip
    for name, (full, short) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    chosen = QUICK_VARIANTS if quick else FULL_VARIANTS
    args.variants = {
        "bare": (args.bare_variants.split(",") if args.bare_variants else chosen["bare"]),
        "realistic": (args.realistic_variants.split(",") if args.realistic_variants else chosen["realistic"]),
    }
    args.shape_list = [s.strip() for s in args.shapes.split(",") if s.strip()]
    args.soak_list = [v.strip() for v in args.soak_variants.split(",") if v.strip()]
    for name in [*args.variants["bare"], *args.variants["realistic"], *args.soak_list, args.baseline]:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; see --list-variants")
    for shape in args.shape_list:
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r}")
        if args.baseline not in args.variants[shape]:
            args.variants[shape].insert(0, args.baseline)
    return args


def prepare(args: argparse.Namespace, run_id: str, workdir: Path) -> Setup:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("wrk and taskset are needed (bash scripts/stack.sh install installs wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for gunicorn, one for wrk")
    found = stack_env()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or found.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    database = os.environ.get("HCV_DATABASE_URL") or found.get("HCV_DATABASE_URL")
    redis_url = os.environ.get("HCV_REDIS_URL") or found.get("HCV_REDIS_URL", "")
    if not endpoint or not database:
        raise SystemExit("the native stack's addresses are unknown: run bash scripts/stack.sh start first")
    endpoint = endpoint.rstrip("/")
    if scrape(args.collector_metrics) is None:
        raise SystemExit(f"the collector's metrics ({args.collector_metrics}) do not answer: is the stack up?")
    host = urlsplit(endpoint).hostname or "127.0.0.1"
    import psycopg

    admin_url = database.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.database,)).fetchone()
        if not exists:
            log(f"creating database {args.database}")
            conn.execute(f'CREATE DATABASE "{args.database}"')
    bench_db = with_database(database, args.database)
    env = service_env({"HCV_DATABASE_URL": bench_db, "OTEL_SDK_DISABLED": "true", "HCV_ALLOW_FAILURE_INJECTION": "0"})
    manage(["migrate", "--noinput", "-v", "0"], env)
    user = json.loads(manage(["create_demo_user", "--username", "bench", "--json"], env))
    return Setup(
        args=args,
        run_id=run_id,
        workdir=workdir,
        collector_endpoint=endpoint,
        collector_grpc_endpoint=f"http://{host}:4317",
        closed_endpoint="",  # set by main()
        database_url=bench_db,
        redis_url=redis_url,
        token=user["token"],
        user_id=int(user["user_id"]),
    )


def plan_seconds(args: argparse.Namespace) -> float:
    cells = sum(len(args.variants[s]) for s in args.shape_list) * args.rounds
    soak = min(args.soak_max_seconds, args.soak_requests / 150.0) if args.soak_list else 0.0
    return cells * (args.warmup + args.duration + 7.0) + soak


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_variants:
        for name, variant in VARIANTS.items():
            print(f"{name:16} {variant.label}")
        return 0
    run_id = datetime.datetime.now().strftime("%m%d%H%M%S")
    workdir = args.workdir or Path("/tmp/otel-hcv-bench") / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    command = shlex.join([os.path.relpath(sys.executable, REPO), os.path.relpath(__file__, REPO), *sys.argv[1:]])
    started = time.monotonic()
    state_at_start = code_state()
    setup = prepare(args, run_id, workdir)
    setup.state_at_start = state_at_start
    collector = CollectorView(args.collector_metrics, args.span_metrics)
    log(f"run {run_id}, workdir {workdir}, planned about {plan_seconds(args) / 60:.0f} minutes")
    cells: list[Cell] = []
    soaks: list[Soak] = []
    results_path = workdir / "results.json"

    def save() -> None:
        results_path.write_text(
            json.dumps(
                {
                    "command": command,
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "cells": [asdict(c) for c in cells],
                    "soaks": [asdict(s) for s in soaks],
                    "spans_by_service": collector.spans_by_service,
                },
                indent=1,
            )
        )

    quiet = (
        QuietWait(args.server_core, args.quiet_threshold, args.quiet_wait, args.quiet_budget)
        if args.quiet_wait > 0
        else None
    )
    with closed_port() as port:
        setup.closed_endpoint = f"http://127.0.0.1:{port}"
        for round_no in range(1, args.rounds + 1):
            for shape in args.shape_list:
                names = args.variants[shape]
                shift = (round_no - 1) % len(names)
                order = names[shift:] + names[:shift]
                for position, name in enumerate(order):
                    log(f"round {round_no}/{args.rounds} {shape:9} {name}")
                    try:
                        cell = run_cell(setup, collector, shape, VARIANTS[name], round_no, position, quiet)
                    except Exception as exc:
                        log(f"  failed: {type(exc).__name__}: {exc}")
                        cell = Cell(shape, name, round_no, position, "", problems=[f"{type(exc).__name__}: {exc}"])
                    cells.append(cell)
                    if cell.wrk:
                        log(
                            f"  {cell.wrk['rps']:.0f} req/s, p50 {cell.wrk['latency_us']['p50'] / 1000:.2f} ms, "
                            f"p99 {cell.wrk['latency_us']['p99'] / 1000:.2f} ms, "
                            f"{cell.cpu_us_per_request:.0f} µs CPU/req, "
                            f"others on the core {cell.others:.0%}"
                        )
                    save()
        if args.soak_list:
            log(f"soak: {', '.join(args.soak_list)} to {args.soak_requests:,} requests each")
            soaks = [
                Soak(args.soak_shape, name, f"bench-{run_id}-soak-{name}", core=index % 2)
                for index, name in enumerate(args.soak_list)
            ]
            # Two at a time, one per core.
            for first in range(0, len(soaks), 2):
                threads = [
                    threading.Thread(
                        target=run_soak,
                        args=(setup, soak, args.soak_requests, args.soak_checkpoint, args.soak_max_seconds),
                    )
                    for soak in soaks[first : first + 2]
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            for soak in soaks:
                last = soak.samples[-1] if soak.samples else None
                log(
                    f"  soak {soak.variant}: "
                    + (f"{int(last['requests']):,} requests, RSS {last['rss'] / MiB:.1f} MiB" if last else soak.error)
                )
            save()
    time.sleep(7)  # the span-metrics connector flushes every 5 s
    collector.update_span_metrics(f"bench-{run_id}-")
    save()
    section = render(setup, cells, soaks, collector, time.monotonic() - started, command)
    if args.no_write:
        print(section)
    else:
        write_section(args.output, section, args.section)
        log(f"wrote {args.output}")
    log(f"done in {(time.monotonic() - started) / 60:.1f} minutes; results in {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
