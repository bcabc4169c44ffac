"""A whole run: preparation, rounds of freshly started workers in a rotated order, waiting for a
quiet server core before each, and the memory soaks."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from scripts.stackctl.components import stack_env
from tests.support.service import manage, service_env

from .loadgen import run_vegeta
from .output import log
from .results import Cell, MiB, Soak, busy_share
from .server import Server, Setup
from .stack import CollectorView, create_database, scrape, truncate_records, with_database
from .variants import VARIANTS, Endpoints, Variant, rotated
from .workload import run_wrk


def prepare(
    database: str, collector_metrics: str, run_id: str, workdir: Path, closed_endpoint: str, slow_ms: float = 0.0
) -> Setup:
    """Check the tools and the stack, create and migrate the benchmark's database, create its user."""
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("wrk and taskset are needed (bash scripts/stack.sh install installs wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for gunicorn, one for wrk")
    found = stack_env()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or found.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    server_url = os.environ.get("HCV_DATABASE_URL") or found.get("HCV_DATABASE_URL")
    redis_url = os.environ.get("HCV_REDIS_URL") or found.get("HCV_REDIS_URL", "")
    if not endpoint or not server_url:
        raise SystemExit("the native stack's addresses are unknown: run bash scripts/stack.sh start first")
    endpoint = endpoint.rstrip("/")
    if scrape(collector_metrics) is None:
        raise SystemExit(f"the collector's metrics ({collector_metrics}) do not answer: is the stack up?")
    host = urlsplit(endpoint).hostname or "127.0.0.1"
    if create_database(server_url, database):
        log(f"created database {database}")
    database_url = with_database(server_url, database)
    env = service_env(
        {"HCV_DATABASE_URL": database_url, "OTEL_SDK_DISABLED": "true", "HCV_ALLOW_FAILURE_INJECTION": "0"}
    )
    manage(["migrate", "--noinput", "-v", "0"], env)
    user = json.loads(manage(["create_demo_user", "--username", "bench", "--json"], env))
    return Setup(
        run_id=run_id,
        workdir=workdir,
        endpoints=Endpoints(collector=endpoint, collector_grpc=f"http://{host}:4317", closed=closed_endpoint),
        database_url=database_url,
        redis_url=redis_url,
        token=user["token"],
        user_id=int(user["user_id"]),
        slow_ms=slow_ms,
    )


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
        return busy_share(before, psutil.cpu_times(percpu=True)[self.core])

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
    args: argparse.Namespace,
    collector: CollectorView,
    shape: str,
    variant: Variant,
    round_no: int,
    position: int,
    quiet: QuietWait | None = None,
) -> Cell:
    """One variant, one round: a fresh worker, warm-up, the measured window, shutdown."""
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
        cell.core_busy = busy_share(core_before, core_after)
        cell.others = max(0.0, cell.core_busy - cell.cpu_seconds / (result["duration_us"] / 1e6))
        cell.stats = server.stats(newer_than=finished)
        if result["error_count"]:
            cell.problems.append(f"wrk errors: {result['errors']}")
        if getattr(args, "rate", 0):
            # After wrk's window, on the same worker: the open-loop load at the same rate for every variant.
            cell.fixed_rate = run_vegeta(
                args.vegeta, server.url, server.token, args.rate, args.duration, args.client_core
            )
            if cell.fixed_rate["success"] < 1:
                cell.problems.append(f"vegeta: status codes {cell.fixed_rate['status_codes']}")
    finally:
        cell.shutdown_seconds = server.stop()
        cell.problems.extend(server.compact_log())
    after = collector.receiver_totals()
    if before is not None and after is not None:
        cell.collector_delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    collector.update_span_metrics(f"bench-{setup.run_id}-")
    return cell


def run_rounds(
    setup: Setup, args: argparse.Namespace, collector: CollectorView, quiet: QuietWait | None
) -> Iterator[Cell]:
    """Every shape's variants, ``args.rounds`` times, each round in a rotated order; a cell that
    failed comes back with its problem instead of its figures."""
    for round_no in range(1, args.rounds + 1):
        for shape in args.shape_list:
            for position, name in enumerate(rotated(args.variants[shape], round_no)):
                log(f"round {round_no}/{args.rounds} {shape:9} {name}")
                try:
                    cell = run_cell(setup, args, collector, shape, VARIANTS[name], round_no, position, quiet)
                except Exception as exc:
                    log(f"  failed: {type(exc).__name__}: {exc}")
                    cell = Cell(shape, name, round_no, position, "", problems=[f"{type(exc).__name__}: {exc}"])
                if cell.wrk:
                    log(
                        f"  {cell.wrk['rps']:.0f} req/s, p50 {cell.wrk['latency_us']['p50'] / 1000:.2f} ms, "
                        f"p99 {cell.wrk['latency_us']['p99'] / 1000:.2f} ms, "
                        f"{cell.cpu_us_per_request:.0f} µs CPU/req, "
                        f"others on the core {cell.others:.0%}"
                    )
                if cell.fixed_rate:
                    log(
                        f"  at {args.rate:g} req/s: p50 {cell.fixed_rate['p50']:.2f} ms, "
                        f"p99 {cell.fixed_rate['p99']:.2f} ms, max {cell.fixed_rate['max']:.1f} ms, "
                        f"{cell.fixed_rate['success']:.1%} successful"
                    )
                yield cell


def run_soak(setup: Setup, soak: Soak, target: int, checkpoint: int, max_seconds: float, connections: int) -> None:
    """Drive one worker to ``target`` requests (or ``max_seconds``), its RSS sampled every ``checkpoint``."""
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
            result = run_wrk(server.url, server.token, seconds, connections, None)
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


def run_soaks(setup: Setup, args: argparse.Namespace) -> list[Soak]:
    """The soak variants, two at a time, one per core."""
    log(f"soak: {', '.join(args.soak_list)} to {args.soak_requests:,} requests each")
    soaks = [
        Soak(args.soak_shape, name, f"bench-{setup.run_id}-soak-{name}", core=index % 2)
        for index, name in enumerate(args.soak_list)
    ]
    for first in range(0, len(soaks), 2):
        threads = [
            threading.Thread(
                target=run_soak,
                args=(setup, soak, args.soak_requests, args.soak_checkpoint, args.soak_max_seconds, args.connections),
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
    return soaks
