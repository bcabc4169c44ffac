#!/usr/bin/env python3
"""p50 and p99 at a fixed request rate (vegeta, open-loop) beside wrk's closed-loop figures, per variant.

The same rounds as bench/overhead.py (a fresh gunicorn worker per variant and round, pinned to one
core, in an order rotated from round to round; the load generators on the other core), with each
worker measured twice: wrk for ``--duration`` seconds, then ``vegeta attack -rate=N/s`` as long.
``bench/overhead.py --rate N`` adds the same fixed-rate table to the full run; this script runs
without the native stack as well::

    .venv/bin/python bench/fixed_rate.py --collector loopback --database sqlite
    bash scripts/stack.sh start && .venv/bin/python bench/fixed_rate.py   # the stack's collector

``--collector loopback`` sends the telemetry to an in-process OTLP receiver (otel_hcv.receiver), run
on the load generators' core; ``--database sqlite`` serves the example from a SQLite file made for
the run. vegeta is built from the Go module proxy on first use and cached (bench/harness/loadgen.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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
from bench.harness.variants import SHAPES, Endpoints  # noqa: E402

SCRIPT = "bench/fixed_rate.py"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="p50/p99 at a fixed request rate (vegeta) beside wrk's figures, variants interleaved over "
        "rounds under gunicorn (one sync worker on one core). Writes a section into docs/benchmarks.md.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--variants", default="baseline,hcv", help="comma-separated; the first is the baseline")
    parser.add_argument("--shapes", default="bare", help="comma-separated: bare, realistic")
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="requests per second of the fixed-rate load: well below what the slowest variant serves, or its "
        "latencies measure the queue",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=float, default=3.0, help="wrk warm-up seconds per worker")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk, then as many of vegeta")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections (one wrk thread)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each run, wait up to this many seconds for other processes to leave the server core "
        "below 25%% busy (0: do not wait); at most 240 s in all",
    )
    parser.add_argument(
        "--collector",
        default="",
        help="OTLP/HTTP endpoint (default: the native stack's collector); 'loopback' starts an in-process "
        "receiver for the run",
    )
    parser.add_argument(
        "--database",
        default="stack",
        choices=("stack", "sqlite"),
        help="the stack's PostgreSQL (database hcv_bench, as bench/overhead.py) or a SQLite file made for the run",
    )
    add_core_options(parser, "core wrk, vegeta and the loopback receiver are pinned to")
    add_output_options(parser, SCRIPT)
    parser.add_argument("--section", default="main", help="name of the section of --output this run replaces")
    parser.add_argument("--workdir", type=Path, help="logs and worker stats (default /tmp/otel-hcv-bench/rate-<id>)")
    add_list_variants(parser)
    args = parser.parse_args(argv)
    names = comma_list(args.variants)
    check_variants(parser, names)
    args.shape_list = comma_list(args.shapes)
    for shape in args.shape_list:
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r}")
    args.baseline = names[0]
    args.variants = dict.fromkeys(SHAPES, names)
    return args


def sqlite_setup(run_id: str, workdir: Path, endpoints: Endpoints, shapes: Sequence[str]):
    """A Setup serving the example from a new SQLite file (migrated; a demo user for ``realistic``)."""
    import json

    from bench.harness.server import Setup
    from tests.support.service import manage, service_env

    database = workdir / "hcv.sqlite3"
    env = service_env({"OTEL_SDK_DISABLED": "true", "HCV_ALLOW_FAILURE_INJECTION": "0"}, database)
    manage(["migrate", "--noinput", "-v", "0"], env)
    token, user_id = "", 0
    if "realistic" in shapes:
        user = json.loads(manage(["create_demo_user", "--username", "bench", "--json"], env))
        token, user_id = user["token"], int(user["user_id"])
    return Setup(run_id, workdir, endpoints, "", "", token, user_id, sqlite_path=str(database))


def render(args: argparse.Namespace, cells, command: str, started: float, state: str, received: dict) -> str:
    from bench.harness.output import markers
    from bench.harness.reporting import fixed_rate_lines, fmt, measured, ratio_text
    from bench.harness.results import summarise

    summaries = summarise(cells, args.baseline)
    begin, end = markers(args.section, SCRIPT)
    lines = [
        begin,
        "",
        f"Produced by `{command}` on {datetime.datetime.now():%Y-%m-%d %H:%M} in "
        f"{(time.monotonic() - started) / 60:.1f} minutes; code {state}. {args.rounds} round(s), each variant a "
        f"fresh gunicorn worker (one sync worker, core {args.server_core}) in an order rotated per round; "
        f"{args.warmup:g} s of warm-up, {args.duration:g} s of `wrk -t1 -c{args.connections}`, then "
        f"{args.duration:g} s at the fixed rate (load generators on core {args.client_core}). Database: "
        f"{args.database}; collector: {args.collector or 'the native stack'}.",
        "",
        "### wrk (closed-loop)",
        "",
        "| shape | variant | req/s | x baseline | p50 ms | x baseline | p99 ms | x baseline | spans received |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape, name, summary in measured(summaries):
        spans = received.get((shape, name))
        lines.append(
            f"| {shape} | {name} | {fmt(summary.rps, 0)} | {ratio_text(summary.rps_ratio)} | "
            f"{fmt(summary.p50_ms)} | {ratio_text(summary.p50_ratio)} | {fmt(summary.p99_ms)} | "
            f"{ratio_text(summary.p99_ratio)} | {'—' if spans is None else f'{spans:,}'} |"
        )
    lines += ["", f"### At {args.rate:g} requests/s (vegeta, open-loop)", ""]
    lines += fixed_rate_lines(cells, args.baseline, args.rate, args.duration)
    problems = sorted({f"{c.shape}/{c.variant}: {p}" for c in cells for p in c.problems})
    if problems:
        lines += ["", "Problems seen in the service logs:", "", *[f"- {p}" for p in problems[:20]]]
    lines += ["", end, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.harness.loadgen import ensure_vegeta
    from bench.harness.output import code_state, command_line, log, publish, start_run
    from bench.harness.running import QuietWait, prepare, run_rounds
    from bench.harness.stack import COLLECTOR_METRICS, CollectorView, closed_port

    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("wrk and taskset are needed (bash scripts/stack.sh install installs wrk)")
    args.vegeta = ensure_vegeta()
    run_id, workdir = start_run(args.workdir, prefix="rate-")
    command = command_line(SCRIPT, argv)
    started = time.monotonic()
    state = code_state()
    cells = []
    received: dict[tuple[str, str], int] = {}
    with contextlib.ExitStack() as stack:
        closed = f"http://127.0.0.1:{stack.enter_context(closed_port())}"
        receiver = None
        if args.collector == "loopback":
            from otel_hcv.receiver import OtlpReceiver

            # The receiver's threads share the load generators' core, not the server's.
            os.sched_setaffinity(0, {args.client_core})
            receiver = stack.enter_context(OtlpReceiver())
        if args.database == "sqlite":
            collector = receiver.endpoint if receiver else args.collector
            if not collector:
                raise SystemExit("--database sqlite needs --collector (an endpoint, or loopback)")
            endpoints = Endpoints(collector, collector, closed)
            setup = sqlite_setup(run_id, workdir, endpoints, args.shape_list)
            view = CollectorView("http://127.0.0.1:9/", "http://127.0.0.1:9/")  # nothing to read
        else:
            setup = prepare("hcv_bench", COLLECTOR_METRICS, run_id, workdir, closed)
            if receiver or args.collector:
                endpoint = receiver.endpoint if receiver else args.collector
                setup.endpoints = Endpoints(endpoint, endpoint, closed)
            view = CollectorView(COLLECTOR_METRICS, "http://127.0.0.1:9/")
        log(f"run {run_id}, workdir {workdir}, {len(args.variants['bare']) * args.rounds * len(args.shape_list)} runs")
        quiet = QuietWait(args.server_core, 0.25, args.quiet_wait, 240.0) if args.quiet_wait > 0 else None
        for cell in run_rounds(setup, args, view, quiet):
            cells.append(cell)
            if receiver is not None:
                with receiver.lock:
                    spans = sum(
                        len(scope.spans)
                        for request in receiver.requests["traces"]
                        for resource in request.resource_spans
                        for scope in resource.scope_spans
                    )
                    for signal in receiver.requests.values():
                        signal.clear()
                    receiver.raw.clear()
                key = (cell.shape, cell.variant)
                received[key] = received.get(key, 0) + spans
    section = render(args, cells, command, started, state, received if args.collector == "loopback" else {})
    publish(section, args.output, args.no_write, name=args.section, script=SCRIPT, title="Fixed rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
