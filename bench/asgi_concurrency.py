#!/usr/bin/env python3
"""Concurrent requests under uvicorn (ASGI): does the telemetry make requests queue for one thread?

Under ASGI, Django runs a synchronous middleware (or view) through ``sync_to_async`` in one thread
shared by all requests; if the server middleware that makes the span is sync-only, every request
passes through that thread, and requests that could overlap (an async view awaiting I/O) run one
after the other. This script serves the example with uvicorn (one worker process, pinned to one
core) in three variants, interleaved over rounds:

* ``baseline``: uninstrumented (bench/notelemetry_settings.py, OTEL_SDK_DISABLED=true);
* ``hcv``: otel-hcv under ``opentelemetry-instrument``, its lean server middleware (otel_hcv.server);
* ``hcv-upstream-server``: the same with ``HCV_SERVER_MIDDLEWARE=upstream``
  (opentelemetry-instrumentation-django's middleware);

and loads two endpoints with ``--connections`` concurrent clients (wrk, on the other core):
``/bench/wait/``, an async view that awaits ``--wait-ms`` without using the CPU (bench/asgi_urls.py,
not part of the example), and the example's ``POST /api/diagnose/`` (a synchronous DRF view).
If requests to the wait view were served one at a time, throughput could not exceed
1000 / wait-ms requests per second; the report compares against that bound. Telemetry goes to
an in-process OTLP receiver pinned to the load generator's core, or to ``--collector``; the
example's database is a SQLite file made for the run. No native stack is needed::

    .venv/bin/python bench/asgi_concurrency.py --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness.options import (  # noqa: E402
    HelpFormatter,
    add_core_options,
    add_list_variants,
    add_output_options,
    check_variants,
    comma_list,
)
from bench.harness.variants import VARIANTS, Endpoints, rotated  # noqa: E402

SCRIPT = "bench/asgi_concurrency.py"
ENDPOINTS = {"wait": "/bench/wait/", "diagnose": "/api/diagnose/"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Concurrent requests under uvicorn, uninstrumented against otel-hcv's lean server middleware "
        "and upstream's: requests/s and p99 with N concurrent clients, on an async view that waits and on the "
        "example's POST /api/diagnose/. Writes a section into docs/benchmarks.md.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--variants", default="baseline,hcv,hcv-upstream-server", help="comma-separated; the first is the baseline"
    )
    parser.add_argument("--endpoints", default="wait,diagnose", help="comma-separated: wait, diagnose")
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients (wrk connections)")
    parser.add_argument("--wait-ms", type=float, default=50.0, help="how long the async view awaits")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up seconds per endpoint")
    parser.add_argument("--duration", type=float, default=8.0, help="measured wrk seconds per endpoint")
    parser.add_argument(
        "--collector", default="loopback", help="OTLP/HTTP endpoint; 'loopback' starts an in-process receiver"
    )
    add_core_options(parser, "core wrk and the loopback receiver are pinned to")
    parser.set_defaults(server_core=0)
    add_output_options(parser, SCRIPT)
    parser.add_argument("--section", default="main", help="name of the section of --output this run replaces")
    add_list_variants(parser)
    args = parser.parse_args(argv)
    args.variant_list = comma_list(args.variants)
    check_variants(parser, args.variant_list)
    args.endpoint_list = comma_list(args.endpoints)
    for name in args.endpoint_list:
        if name not in ENDPOINTS:
            parser.error(f"unknown endpoint {name!r} (wait, diagnose)")
    return args


def server_environment(name: str, endpoints: Endpoints, database: Path, wait_ms: float) -> dict[str, str]:
    from tests.support.service import EXAMPLE, service_env

    variant = VARIANTS[name]
    # The variant's settings with the extra async view: bench/asgi_settings.py or its uninstrumented twin.
    settings = "asgi_notelemetry_settings" if variant.settings_module == "notelemetry_settings" else "asgi_settings"
    return service_env(
        {
            **variant.environment(endpoints),
            "DJANGO_SETTINGS_MODULE": settings,
            "PYTHONPATH": os.pathsep.join([str(BENCH), str(EXAMPLE)]),
            "HCV_ALLOW_FAILURE_INJECTION": "0",
            "BENCH_WAIT_MS": f"{wait_ms:g}",
        },
        database,
    )


class ThreadCount:
    """The most threads ``process`` had while the block ran, sampled every 0.1 s: under ASGI, Django
    runs each request's synchronous parts in a thread of that request's own."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.most = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            with contextlib.suppress(psutil.Error):
                self.most = max(self.most, self.process.num_threads())

    def __enter__(self) -> ThreadCount:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()


def measure_variant(name: str, args: argparse.Namespace, env: dict[str, str], log_path: Path) -> dict[str, dict]:
    """One fresh uvicorn of variant ``name``: wrk on each endpoint (warm-up, then measured)."""
    from bench.harness.workload import run_wrk
    from tests.support.service import ServiceProcess, free_port

    port = free_port()
    uvicorn = VARIANTS[name].server_command(
        "uvicorn", "hcv_service.asgi:application", "--host", "127.0.0.1", "--port", str(port)
    )
    command = ["taskset", "-c", str(args.server_core), *uvicorn]
    service = ServiceProcess(command, env, port, log_path)
    results = {}
    try:
        service.wait_ready("/health/live", timeout=120)
        server = psutil.Process(service.process.pid)  # taskset and the launcher exec uvicorn in place
        for endpoint in args.endpoint_list:
            url = service.url + ENDPOINTS[endpoint]
            run_wrk(url, None, args.warmup, args.connections, args.client_core)
            with ThreadCount(server) as threads:
                results[endpoint] = run_wrk(url, None, args.duration, args.connections, args.client_core)
            results[endpoint]["max_threads"] = threads.most
    finally:
        service.stop(timeout=20)
    return results


def render(args: argparse.Namespace, runs: list[dict], command: str, started: float, state: str) -> str:
    from bench.harness.output import markers
    from bench.harness.reporting import fmt, ratio_text
    from bench.harness.results import median

    baseline = args.variant_list[0]
    bound = 1000.0 / args.wait_ms
    begin, end = markers(args.section, SCRIPT)
    lines = [
        begin,
        "",
        f"Produced by `{command}` on {datetime.datetime.now():%Y-%m-%d %H:%M} in "
        f"{(time.monotonic() - started) / 60:.1f} minutes; code {state}. uvicorn, one worker process on core "
        f"{args.server_core}; `wrk -t1 -c{args.connections}` on core {args.client_core}, {args.warmup:g} s warm-up "
        f"and {args.duration:g} s measured per endpoint; {args.rounds} round(s), a fresh server per variant and "
        f"round, in an order rotated per round. Medians over the rounds; ratios per round against the same round's "
        f"`{baseline}`. `wait`: an async view awaiting {args.wait_ms:g} ms (served one at a time, at most "
        f"{bound:.0f} req/s); `diagnose`: the example's `POST /api/diagnose/` (a synchronous DRF view). Most "
        "threads: the largest thread count of the server process sampled during the measured windows.",
        "",
        "| endpoint | variant | req/s | x baseline | p50 ms | p99 ms | x baseline | most threads | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for endpoint in args.endpoint_list:
        for name in args.variant_list:
            mine = [r for r in runs if r["variant"] == name and endpoint in r["results"]]
            rps_ratio, p99_ratio = [], []
            for run in mine:
                base = next((r for r in runs if r["variant"] == baseline and r["round"] == run["round"]), None)
                if base is None or endpoint not in base["results"]:
                    continue
                rps_ratio.append(run["results"][endpoint]["rps"] / base["results"][endpoint]["rps"])
                p99_ratio.append(
                    run["results"][endpoint]["latency_us"]["p99"] / base["results"][endpoint]["latency_us"]["p99"]
                )
            figures = [r["results"][endpoint] for r in mine]
            lines.append(
                f"| {endpoint} | {name} | {fmt(median([f['rps'] for f in figures]), 0)} | {ratio_text(rps_ratio)} | "
                f"{fmt(median([f['latency_us']['p50'] / 1000 for f in figures]))} | "
                f"{fmt(median([f['latency_us']['p99'] / 1000 for f in figures]))} | {ratio_text(p99_ratio)} | "
                f"{max((f.get('max_threads', 0) for f in figures), default=0)} | "
                f"{sum(f['error_count'] for f in figures)} |"
            )
    if args.collector == "loopback":
        spans = {name: sum(r.get("spans", 0) for r in runs if r["variant"] == name) for name in args.variant_list}
        counts = ", ".join(f"{name} {count:,}" for name, count in spans.items())
        lines += ["", f"Spans the loopback receiver got, all rounds: {counts}."]
    failures = [f"- {r['variant']} round {r['round']}: {r['error']}" for r in runs if r.get("error")]
    if failures:
        lines += ["", "Runs that failed:", "", *failures]
    lines += ["", end, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.harness.output import code_state, command_line, log, publish
    from bench.harness.stack import closed_port
    from tests.support.service import manage, service_env

    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("wrk and taskset are needed (bash scripts/stack.sh install installs wrk)")
    command = command_line(SCRIPT, argv)
    started = time.monotonic()
    state = code_state()
    runs: list[dict] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="otel-hcv-asgi-")))
        closed = f"http://127.0.0.1:{stack.enter_context(closed_port())}"
        collector = args.collector
        if collector == "loopback":
            from otel_hcv.receiver import OtlpReceiver

            os.sched_setaffinity(0, {args.client_core})  # the receiver's threads stay off the server's core
            receiver = stack.enter_context(OtlpReceiver())
            collector = receiver.endpoint
        endpoints = Endpoints(collector, collector, closed)
        database = tmp / "hcv.sqlite3"
        manage(["migrate", "--noinput", "-v", "0"], service_env({"OTEL_SDK_DISABLED": "true"}, database))
        for round_no in range(1, args.rounds + 1):
            for name in rotated(args.variant_list, round_no):
                log(f"round {round_no}/{args.rounds} {name}")
                env = server_environment(name, endpoints, database, args.wait_ms)
                run: dict = {"variant": name, "round": round_no, "results": {}}
                try:
                    run["results"] = measure_variant(name, args, env, tmp / f"{name}-r{round_no}.log")
                except Exception as exc:  # reported; the other runs go on
                    run["error"] = f"{type(exc).__name__}: {exc}"[:500]
                    log(f"  failed: {run['error']}")
                for endpoint, result in run["results"].items():
                    log(
                        f"  {endpoint}: {result['rps']:.0f} req/s, p50 {result['latency_us']['p50'] / 1000:.1f} ms, "
                        f"p99 {result['latency_us']['p99'] / 1000:.1f} ms, errors {result['error_count']}, "
                        f"at most {result['max_threads']} threads"
                    )
                runs.append(run)
                if args.collector == "loopback":
                    with receiver.lock:  # counted, then dropped: the receiver's memory stays flat over the run
                        run["spans"] = sum(
                            len(scope.spans)
                            for request in receiver.requests["traces"]
                            for resource in request.resource_spans
                            for scope in resource.scope_spans
                        )
                        for requests in receiver.requests.values():
                            requests.clear()
                        receiver.raw.clear()
    publish(render(args, runs, command, started, state), args.output, args.no_write, name=args.section,
            script=SCRIPT, title="ASGI concurrency")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
