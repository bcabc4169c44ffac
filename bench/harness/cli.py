"""bench/overhead.py's command line and main loop: rounds, soak, report."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .loadgen import ensure_vegeta
from .options import HelpFormatter, add_core_options, add_list_variants, add_output_options, check_variants, comma_list
from .output import code_state, command_line, log, publish, start_run
from .reporting import render
from .results import Cell, Soak
from .running import QuietWait, prepare, run_rounds, run_soaks
from .stack import COLLECTOR_METRICS, SPAN_METRICS, CollectorView, closed_port
from .variants import FULL_VARIANTS, QUICK_VARIANTS, SHAPES

SCRIPT = "bench/overhead.py"


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
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="also load each worker at this many requests/s for --duration with vegeta (open-loop; built "
        "from the Go module proxy on first use and cached) and report its p50/p99 beside wrk's; 0: off",
    )
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
    add_core_options(parser)
    parser.add_argument(
        "--database",
        default="hcv_bench",
        help="PostgreSQL database of the benchmark, on the stack's server (created if missing)",
    )
    parser.add_argument("--collector-metrics", default=COLLECTOR_METRICS, help="the collector's own metrics")
    parser.add_argument(
        "--span-metrics", default=SPAN_METRICS, help="the collector's Prometheus exporter (span-metrics connector)"
    )
    add_output_options(parser, SCRIPT)
    parser.add_argument(
        "--section",
        default="main",
        help="name of the section of --output this run replaces (or appends), so that runs with other "
        "options can sit next to the main one",
    )
    parser.add_argument(
        "--workdir", type=Path, help="logs, worker stats and results.json (default /tmp/otel-hcv-bench/<run id>)"
    )
    add_list_variants(parser)
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
        "bare": comma_list(args.bare_variants) if args.bare_variants else list(chosen["bare"]),
        "realistic": comma_list(args.realistic_variants) if args.realistic_variants else list(chosen["realistic"]),
    }
    args.shape_list = comma_list(args.shapes)
    args.soak_list = comma_list(args.soak_variants)
    check_variants(parser, [*args.variants["bare"], *args.variants["realistic"], *args.soak_list, args.baseline])
    for shape in args.shape_list:
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r}")
        if args.baseline not in args.variants[shape]:
            args.variants[shape].insert(0, args.baseline)
    return args


def plan_seconds(args: argparse.Namespace) -> float:
    cells = sum(len(args.variants[s]) for s in args.shape_list) * args.rounds
    soak = min(args.soak_max_seconds, args.soak_requests / 150.0) if args.soak_list else 0.0
    fixed_rate = args.duration if args.rate else 0.0
    return cells * (args.warmup + args.duration + fixed_rate + 7.0) + soak


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.vegeta = ensure_vegeta() if args.rate else None
    run_id, workdir = start_run(args.workdir)
    command = command_line(SCRIPT, argv)
    started = time.monotonic()
    state_at_start = code_state()
    collector = CollectorView(args.collector_metrics, args.span_metrics)
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
        closed = f"http://127.0.0.1:{port}"
        setup = prepare(args.database, args.collector_metrics, run_id, workdir, closed, args.slow_ms)
        log(f"run {run_id}, workdir {workdir}, planned about {plan_seconds(args) / 60:.0f} minutes")
        for cell in run_rounds(setup, args, collector, quiet):
            cells.append(cell)
            save()
        if args.soak_list:
            soaks = run_soaks(setup, args)
            save()
    time.sleep(7)  # the span-metrics connector flushes every 5 s
    collector.update_span_metrics(f"bench-{run_id}-")
    save()
    section = render(args, workdir, state_at_start, cells, soaks, collector, time.monotonic() - started, command)
    publish(section, args.output, args.no_write, name=args.section)
    log(f"done in {(time.monotonic() - started) / 60:.1f} minutes; results in {results_path}")
    return 0
