#!/usr/bin/env python3
"""Instructions per request of the example's bare endpoint, variant by variant, under callgrind.

bench/overhead.py measures time, and on a shared virtual machine time varies by ±30% from one
minute to the next. The number of instructions a request executes hardly varies, so it is the
figure to compare code changes by. This script serves ``POST /api/diagnose/`` in-process (Django's
test client, no HTTP server) under ``valgrind --tool=callgrind`` twice per variant, with
``--low`` and with ``--high`` requests after the same warm-up, and divides the difference in
instructions by the difference in requests: start-up and warm-up cancel out. Export threads,
the health refresher and the garbage collector count too.

Callgrind slows the process down about 50 times, so work on a timer (the metric export every
60 s, the health checks every 10 s, a batch exported when its delay runs out rather than when it
is full) would fall on each request 50 times as often as in real time. The measured process
runs with those intervals multiplied by ``--timer-scale`` (default 50), so that timed work costs
each request what it costs in real time; ``--timer-scale 1`` keeps the configured intervals.

Variants are bench/overhead.py's (``--list-variants``: ``baseline``, ``upstream``, ``hcv``, ...): the
same environment and settings, with ``opentelemetry-instrument`` replaced by its in-process
equivalent (``opentelemetry.instrumentation.auto_instrumentation.initialize()``). Needs valgrind
(Debian package ``valgrind``) and, for variants that export, the native stack::

    bash scripts/stack.sh start
    .venv/bin/python bench/instructions.py                     # about 8 minutes on two cores
    .venv/bin/python bench/instructions.py --variants baseline,hcv --no-write
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Light imports only up here: the measured child loads them too. The rest is imported where used.
from bench.harness.options import (  # noqa: E402
    HelpFormatter,
    add_list_variants,
    add_output_options,
    check_variants,
    comma_list,
)
from bench.harness.variants import EXAMPLE_SETTINGS, VARIANTS, Endpoints  # noqa: E402
from otel_hcv.conf import Settings  # noqa: E402

SCRIPT = "bench/instructions.py"


def child(mode_json: str) -> None:
    """One measured process: set up like the variant, warm up, serve N requests, exit."""
    mode = json.loads(mode_json)
    if mode["instrument"]:
        from opentelemetry.instrumentation.auto_instrumentation import initialize

        initialize()
    import django

    django.setup()
    if mode["instrument"]:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider

        # A launcher that found no distro or configurator leaves the API's no-op providers:
        # the variant would measure nothing and look cheap.
        if not isinstance(metrics.get_meter_provider(), MeterProvider):
            distro = os.environ.get("OTEL_PYTHON_DISTRO")
            raise SystemExit(f"no OpenTelemetry SDK was set up (OTEL_PYTHON_DISTRO={distro})")
    from django.test import Client

    from bench.harness.workload import BODY

    client = Client()
    for _ in range(mode["warmup"] + mode["requests"]):
        response = client.post("/api/diagnose/", BODY, content_type="application/json")
        if response.status_code != 200:
            raise SystemExit(f"POST /api/diagnose/ answered {response.status_code}: {response.content[:300]!r}")
    if mode["instrument"]:
        # Every span and log record of the run exported, in both runs: the partial batch left at
        # the end cancels out, where without the flush a run would count only its full batches.
        from opentelemetry import _logs, trace

        for provider in (trace.get_tracer_provider(), _logs.get_logger_provider()):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush()
    # Exit without the providers' shutdown (the metric export at exit is not per-request work).
    os._exit(0)


def measure(name: str, requests: int, warmup: int, env: dict[str, str], instrument: bool) -> int:
    """Instructions callgrind counted for the whole process."""
    mode = json.dumps({"instrument": instrument, "warmup": warmup, "requests": requests})
    python = str(VARIANTS[name].python())
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, __file__, "--child", mode],
        cwd=REPO / "example",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{name} with {requests} requests failed:\n{result.stderr[-3000:]}")
    return int(found.group(1))


# Timed work of the measured process, with the SDK's and otel-hcv's default intervals.
TIMER_VARIABLES = {
    "OTEL_METRIC_EXPORT_INTERVAL": 60_000.0,  # ms
    "OTEL_BSP_SCHEDULE_DELAY": 5_000.0,  # ms
    "OTEL_BLRP_SCHEDULE_DELAY": 1_000.0,  # ms
    "HCV_HEALTH_CACHE_SECONDS": Settings.health_cache_seconds,  # s, the health refresher's period
}


def stretched_timers(env: dict[str, str], scale: float) -> dict[str, str]:
    """The variables of :data:`TIMER_VARIABLES`, each the variant's (or the default) times ``scale``."""
    return {name: f"{float(env.get(name, default)) * scale:.0f}" for name, default in TIMER_VARIABLES.items()}


def variant_env(
    name: str, database: Path, endpoints: Endpoints, timer_scale: float = 1.0
) -> tuple[dict[str, str], bool]:
    """The environment of a measured process of variant ``name``, and whether it is instrumented."""
    from tests.support.service import service_env

    variant = VARIANTS[name]
    env = service_env(variant.environment(endpoints), database)
    env.update(stretched_timers(env, timer_scale))
    env.update(
        DJANGO_SETTINGS_MODULE=variant.settings_module or EXAMPLE_SETTINGS,
        PYTHONPATH=os.pathsep.join([str(REPO / "example"), str(BENCH), str(REPO)]),
        PYTHONMALLOC="malloc",  # callgrind counts the same allocator work in every variant
    )
    return env, variant.instrument


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Instructions per request of the example's bare endpoint under callgrind, per variant "
        "(bench/overhead.py's variants, served in-process). Writes a table into docs/benchmarks.md.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--variants", default="baseline,upstream,hcv,hcv-down", help="comma-separated")
    parser.add_argument("--warmup", type=int, default=100, help="requests before the measured ones")
    parser.add_argument("--low", type=int, default=20, help="measured requests of the first run")
    parser.add_argument("--high", type=int, default=220, help="measured requests of the second run")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind processes at a time")
    parser.add_argument(
        "--timer-scale",
        type=float,
        default=50.0,
        help="multiply the measured process's timer intervals (metric export, batch delays, health "
        "refresh) by this: callgrind runs the process about this much slower; 1 keeps them as configured",
    )
    parser.add_argument(
        "--collector",
        default="",
        help="OTLP/HTTP endpoint the exporting variants send to (default: the native stack's collector); "
        "'loopback' starts an in-process receiver (otel_hcv.receiver) for the run, so no stack is needed",
    )
    add_output_options(parser, SCRIPT)
    add_list_variants(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.high <= args.low:
        parser.error("--high must be larger than --low")
    if args.timer_scale <= 0:
        parser.error("--timer-scale must be positive")
    args.variant_list = comma_list(args.variants)
    check_variants(parser, args.variant_list)
    return args


def _measure_all(args: argparse.Namespace, names: list[str], collector: str) -> dict[str, float]:
    """Instructions per request of each variant, telemetry sent to ``collector``."""
    from bench.harness.stack import closed_port
    from tests.support.service import manage, service_env

    with tempfile.TemporaryDirectory(prefix="otel-hcv-instructions-") as tmp, closed_port() as closed:
        endpoints = Endpoints(collector, "http://127.0.0.1:4317", f"http://127.0.0.1:{closed}")
        database = Path(tmp) / "db.sqlite3"
        manage(["migrate", "--noinput"], service_env({}, database))
        jobs = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for name in names:
                env, instrument = variant_env(name, database, endpoints, args.timer_scale)
                for requests in (args.low, args.high):
                    jobs[name, requests] = pool.submit(measure, name, requests, args.warmup, env, instrument)
            counts = {key: job.result() for key, job in jobs.items()}
    return {name: (counts[name, args.high] - counts[name, args.low]) / (args.high - args.low) for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    from bench.harness.output import code_state, command_line, markers, publish
    from scripts.stackctl.components import stack_env

    names = args.variant_list
    started = time.monotonic()
    state = code_state()
    with contextlib.ExitStack() as stack:
        if args.collector == "loopback":
            from otel_hcv.receiver import OtlpReceiver

            collector = stack.enter_context(OtlpReceiver()).endpoint
        else:
            collector = args.collector or stack_env().get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        per_request = _measure_all(args, names, collector)
    reference = per_request[names[0]]
    command = command_line(SCRIPT, argv)
    begin, end = markers("main", SCRIPT)
    lines = [
        begin,
        "",
        f"Produced by `{command}` on {datetime.datetime.now():%Y-%m-%d %H:%M} in "
        f"{(time.monotonic() - started) / 60:.1f} minutes; code {state}. Instructions per request = "
        f"(instructions with {args.high} requests - with {args.low}) / {args.high - args.low}, after "
        f"{args.warmup} warm-up requests, `POST /api/diagnose/` (bare) through Django's test client; "
        f"timer intervals x {args.timer_scale:g}.",
        "",
        f"| variant | M instructions/request | x {names[0]} | what it is |",
        "|---|---:|---:|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {per_request[name] / 1e6:.2f} | {per_request[name] / reference:.3f} | {VARIANTS[name].label} |"
        )
    lines += ["", end, ""]
    publish("\n".join(lines), args.output, args.no_write, script=SCRIPT, title="Instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
