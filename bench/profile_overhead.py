#!/usr/bin/env python3
"""Where the telemetry's time goes: py-spy profiles of the example service, variant by variant.

For each variant (``--list-variants``, as in bench/overhead.py) this starts the same gunicorn worker as
bench/overhead.py (one sync worker pinned to ``--server-core``), warms it up, then drives it with
wrk for ``--duration`` seconds while ``py-spy record --gil --threads`` samples it. Samples are
taken only from the thread holding the GIL, so a thread's samples are the interpreter time it
took away from the others: the request thread's samples are the per-request cost, an export
thread's samples are time the request thread could not run.

Each sample of the request thread is attributed to the outermost telemetry frame on its stack
(Django instrumentation, otel_hcv's middleware, ``track_api_metrics``, ``trace_diagnosis``, a
``logging`` call and its handlers, DB instrumentation, ...); wrappers that only call through to
the application (``_DjangoMiddleware.__call__``, the view decorator's ``wrapper``, traced cursor
``execute``) count only for their own frames. Samples divided by the sampling rate and the
requests served give microseconds per request.

Writes a Markdown section into docs/benchmarks.md (between the bench/profile_overhead.py
markers) and keeps py-spy's raw collapsed stacks in ``--workdir`` (open them in speedscope.app,
or feed them to flamegraph.pl). Needs py-spy (``.venv/bin/pip install py-spy``) and permission
to read another process' memory (root, or ptrace_scope 0).

    .venv/bin/python bench/profile_overhead.py
    .venv/bin/python bench/profile_overhead.py --variants hcv,hcv-no-traces --duration 30
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
from bench.harness.output import code_state, command_line, log, markers, publish, same_code, start_run  # noqa: E402
from bench.harness.running import prepare  # noqa: E402
from bench.harness.server import Server, Setup  # noqa: E402
from bench.harness.stack import COLLECTOR_METRICS, closed_port  # noqa: E402
from bench.harness.variants import SHAPES, VARIANTS, rotated  # noqa: E402
from bench.harness.workload import run_wrk  # noqa: E402
from tests.support.service import BIN  # noqa: E402

SCRIPT = "bench/profile_overhead.py"
MARK_BEGIN, MARK_END = markers("main", SCRIPT)

# Frames that only call through to the application: their own time is telemetry, the time of
# what they call is not (unless it is itself telemetry).
PASS_THROUGH = (
    ("opentelemetry/instrumentation/django/", "_DjangoMiddleware.__call__"),
    ("otel_hcv/middleware.py", "RequestContextMiddleware.__call__"),
    ("otel_hcv/middleware.py", "AbsoluteUriCacheMiddleware.__call__"),
    ("otel_hcv/metrics.py", "track_api_metrics.<locals>.decorator.<locals>.wrapper"),
    ("opentelemetry/instrumentation/dbapi/", "CursorTracer.traced_execution"),
    ("opentelemetry/instrumentation/dbapi/", "TracedCursorProxy.execute"),
    ("opentelemetry/instrumentation/dbapi/", "TracedCursorProxy.executemany"),
    ("opentelemetry/instrumentation/psycopg/", "execute"),
    ("opentelemetry/instrumentation/redis/", "_traced_execute_command"),
)

# (component, path fragment, function regex or None), first match wins.
COMPONENTS = (
    ("Django instrumentation: server span, request/response attributes, http.server metrics",
     "opentelemetry/instrumentation/django/", None),
    ("Django instrumentation: server span, request/response attributes, http.server metrics",
     "opentelemetry/instrumentation/wsgi/", None),
    ("DB client instrumentation: psycopg/dbapi spans", "opentelemetry/instrumentation/dbapi/", None),
    ("DB client instrumentation: psycopg/dbapi spans", "opentelemetry/instrumentation/psycopg/", None),
    ("Redis instrumentation", "opentelemetry/instrumentation/redis/", None),
    # The URI cache in front of Django's instrumentation works for it.
    ("Django instrumentation: server span, request/response attributes, http.server metrics",
     "otel_hcv/middleware.py", r"(AbsoluteUriCacheMiddleware|_cache_absolute_uri)"),
    ("otel_hcv RequestContextMiddleware: request id, span attributes", "otel_hcv/middleware.py", None),
    ("otel_hcv track_api_metrics: endpoint span, user pseudonym, API metrics", "otel_hcv/metrics.py",
     r"(_ApiCall|record_api_request|track_api_metrics|_request_of|status_for_exception)"),
    ("otel_hcv trace_diagnosis: diagnosis span and metrics", "otel_hcv/metrics.py", None),
    ("logging: logger call, JSON console line, OTLP log record", "/logging/__init__.py", None),
    ("logging: logger call, JSON console line, OTLP log record", "otel_hcv/logging.py", None),
    ("logging: logger call, JSON console line, OTLP log record", "opentelemetry/instrumentation/logging/", None),
    ("otel_hcv other", "otel_hcv/", None),
    ("OpenTelemetry API/SDK, other callers", "opentelemetry/", None),
)  # fmt: skip
# What kind of work a telemetry sample is doing, whoever called it: the first rule that matches
# any frame at or below the component's frame wins (so the order is a priority, not a depth).
KINDS = (
    ("SDK self-metrics (otel.sdk.span.*, otel.sdk.log.*, processor/exporter metrics)",
     r"(sdk/trace/_tracer_metrics\.py|sdk/_logs/_internal/_logger_metrics\.py|_processor_metrics\.py"
     r"|_exporter_metrics\.py)", None),
    ("metric instruments: record/add, attribute views, one storage per reader",
     r"opentelemetry/(sdk/)?metrics/", None),
    ("OTLP log record: copy, redaction, SDK LogRecord, batch processor",
     r"(opentelemetry/sdk/_logs/|opentelemetry/_logs/|opentelemetry/instrumentation/logging/handler\.py)",
     None),
    ("OTLP log record: copy, redaction, SDK LogRecord, batch processor", r"otel_hcv/logging\.py",
     r"^OtlpLoggingHandler\."),
    ("JSON console line: StructuredFormatter, json.dumps, stream write", r"/logging/__init__\.py",
     r"^StreamHandler\.emit$"),
    ("log record creation and dispatch (Logger._log, makeRecord, handlers)", r"/logging/__init__\.py", None),
    ("span start/end: sampler, ids, attributes, context, span processors",
     r"opentelemetry/(sdk/trace|trace|context|attributes|util|propagate)/", None),
    ("instrumentation's own request handling (URL, route, request attributes)",
     r"opentelemetry/instrumentation/", None),
    ("otel_hcv's own code (request ids, pseudonyms, settings lookups)", r"otel_hcv/", None),
)  # fmt: skip
# Functions whose inclusive time (all threads) is listed on their own: the candidates for removal.
FOCUS = (
    r"^TracerMetrics\.start_span( |\.<locals>\.end_span)",
    r"^LoggerMetrics\.",
    r"^ProcessorMetrics\.",
    r"^MetricReaderStorage\.consume_measurement ",
    r"^_ViewInstrumentMatch\.consume_measurement ",
    r"^HttpRequest\.build_absolute_uri ",
    r"^_DjangoMiddleware\._get_span_name ",
    r"^collect_request_attributes ",
    r"^HttpRequest\.headers ",
    r"^StructuredFormatter\.format ",
    r"^OtlpLoggingHandler\.emit ",
    r"^safe_extras ",
    r"^safe_message ",
    r"^(screen_text|format_log_message|safe_structure|safe_log_extra) ",
    r"^(is_sensitive_key|rules_for) ",
    r"^(pseudonymize_user_id|_pseudonym_key|user_attributes) ",
    r"^current_settings ",
    r"^uuid4 ",
    r"^redact_span ",
    r"^encode_spans ",
    r"^encode_logs ",
    r"^_OTLPHTTPClient\.export ",
)
GENERIC_OTEL = re.compile(r"opentelemetry/(sdk|trace|context|metrics|_logs|util|attributes|semconv|propagate)/")
APPLICATION = "application and framework (not telemetry)"
FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
SITE_RE = re.compile(r"(?:site-packages|dist-packages)/([^/]+)")
STDLIB_RE = re.compile(r"/lib/python3\.\d+/([^/]+)")


@dataclass
class Frame:
    func: str
    path: str

    def _match(self) -> re.Match[str] | None:
        return SITE_RE.search(self.path) or STDLIB_RE.search(self.path)

    @property
    def short(self) -> str:
        match = self._match()
        if match:
            tail = self.path[match.start(1) :]
        elif str(REPO) in self.path:
            tail = self.path.split(str(REPO) + "/", 1)[-1]
        else:
            tail = self.path
        return f"{self.func} ({tail})"

    @property
    def package(self) -> str:
        """Top-level package (``opentelemetry.sdk``, ``opentelemetry.instrumentation.django``, ``json``)."""
        match = self._match()
        if match:
            name = match.group(1).removesuffix(".py")
            if name == "opentelemetry":
                parts = self.path[match.end(1) :].strip("/").split("/")
                return "opentelemetry." + ".".join(parts[:2] if parts[0] == "instrumentation" else parts[:1])
            return name
        for local in ("otel_hcv", "example", "bench"):
            if f"/{local}/" in self.path:
                return local
        return self.path.rsplit("/", 1)[-1] or "?"


def parse_frame(text: str) -> Frame:
    match = FRAME_RE.match(text.strip())
    if match is None:
        return Frame(text.strip(), "")
    return Frame(match.group("func"), match.group("path"))


def is_pass_through(frame: Frame) -> bool:
    return any(fragment in frame.path and frame.func == func for fragment, func in PASS_THROUGH)


def component_of(frame: Frame) -> str | None:
    for name, fragment, func in COMPONENTS:
        if fragment in frame.path and (func is None or re.search(func, frame.func)):
            return name
    return None


@dataclass
class Profile:
    """One variant's samples, summed over rounds."""

    variant: str
    shape: str
    rate: int
    requests: int = 0
    wall_seconds: float = 0.0  # wrk's measured windows
    cpu_seconds: float = 0.0  # the worker's user+system CPU time over py-spy's windows
    samples_by_thread: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    details: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    self_by_package: Counter[str] = field(default_factory=Counter)
    thread_functions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    raw_paths: list[str] = field(default_factory=list)
    errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def sampled_seconds(self) -> float:
        return sum(self.samples_by_thread.values()) / self.rate

    @property
    def cpu_factor(self) -> float:
        """Worker CPU time / GIL-held time sampled. Below 1 when the core was shared: a thread holding
        the GIL while another process ran counts in samples, not in CPU time. Multiplying by it turns
        sampled time into CPU time, so variants profiled on a busy and a quiet machine compare."""
        return self.cpu_seconds / self.sampled_seconds if self.sampled_seconds else 0.0

    def us_per_request(self, samples: float) -> float:
        """CPU µs per request served, of the work these samples stand for."""
        return samples / self.rate * self.cpu_factor / self.requests * 1e6 if self.requests else 0.0


def thread_name(head: str) -> str:
    # "thread (4049): MainThread" or "thread (0x7f...)" when the name is unknown
    name = head.split(":", 1)[1].strip() if ":" in head else head
    return re.sub(r"[-_]?\d+$", "", name) or head


def analyse(profile: Profile, raw: str) -> None:
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        if parts and parts[0].startswith("process "):
            parts = parts[1:]
        thread = thread_name(parts[0]) if parts and parts[0].startswith("thread ") else "?"
        frames = [parse_frame(p) for p in parts[1:]] if thread != "?" else [parse_frame(p) for p in parts]
        profile.samples_by_thread[thread] += count
        for func in {f.short for f in frames}:
            profile.thread_functions[thread][func] += count
        if thread != "MainThread" or not frames:
            continue
        profile.self_by_package[frames[-1].package] += count
        category, start = classify(frames)
        profile.categories[category or APPLICATION] += count
        if category is not None:
            for func in {f.short for f in frames[start + 1 :]}:
                profile.details[category][func] += count
            profile.kinds[kind_of(frames[start:])] += count


def kind_of(frames: Sequence[Frame]) -> str:
    for name, path_re, func_re in KINDS:
        for frame in frames:
            if re.search(path_re, frame.path) and (func_re is None or re.search(func_re, frame.func)):
                return name
    return "other"


def classify(frames: Sequence[Frame]) -> tuple[str | None, int]:
    """The component of the outermost telemetry frame, and that frame's index."""
    wrapper: tuple[str | None, int] = (None, -1)
    for index, frame in enumerate(frames):
        if is_pass_through(frame):
            wrapper = (component_of(frame), index)
            continue
        component = component_of(frame)
        if component is None:
            continue
        if GENERIC_OTEL.search(frame.path) and wrapper[0] is not None:
            return wrapper[0], index
        return component, index
    last = frames[-1] if frames else None
    if last is not None and is_pass_through(last):
        return component_of(last), len(frames) - 1
    return None, -1


def profile_once(setup: Setup, profile: Profile, round_no: int, args: argparse.Namespace) -> None:
    variant = VARIANTS[profile.variant]
    tag = f"profile-{profile.shape}-{profile.variant}-r{round_no}"
    server = Server(setup, variant, profile.shape, f"bench-{setup.run_id}-{tag}", args.server_core, tag)
    raw_path = setup.workdir / f"{tag}.collapsed.txt"
    try:
        server.start()
        run_wrk(server.url, server.token, args.warmup, args.connections, args.client_core)
        assert server.worker is not None
        spy_command = [
            "taskset", "-c", str(args.client_core), str(BIN / "py-spy"), "record",
            "--pid", str(server.worker.pid), "--rate", str(args.rate), "--format", "raw", "--threads",
            "--full-filenames", "--duration", str(int(args.duration) + 1), "--output", str(raw_path),
        ]  # fmt: skip
        if args.gil:
            spy_command.append("--gil")
        if args.nonblocking:
            spy_command.append("--nonblocking")
        cpu_before = server.cpu_seconds()
        spy = subprocess.Popen(spy_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)  # py-spy attached before the load starts
        result = run_wrk(server.url, server.token, args.duration, args.connections, args.client_core)
        output, _ = spy.communicate(timeout=args.duration + 60)
        profile.cpu_seconds += server.cpu_seconds() - cpu_before
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed:\n{output}")
        profile.requests += result["requests"]
        profile.wall_seconds += result["duration_us"] / 1e6
        profile.raw_paths.append(str(raw_path))
        analyse(profile, raw_path.read_text())
        match = re.search(r"Samples: (\d+) Errors: (\d+)", output)
        if match:
            profile.errors += int(match.group(2))
            log(f"  {result['rps']:.0f} req/s; py-spy: {match.group(1)} samples, {match.group(2)} errors")
    finally:
        server.stop()
        server.compact_log()


def column_heads(profiles: Sequence[Profile]) -> list[str]:
    """The head of a table with one column per variant."""
    return ["| | " + " | ".join(p.variant for p in profiles) + " |", "|---|" + "---:|" * len(profiles)]


def table(
    title: str, profiles: Sequence[Profile], rows: dict[str, list[float]], total: list[float] | None
) -> list[str]:
    lines = ["", title, "", *column_heads(profiles)]
    for name, values in sorted(rows.items(), key=lambda item: -max(item[1])):
        if max(values) < 0.5:
            continue
        lines.append(f"| {name} | " + " | ".join(f"{v:.0f}" for v in values) + " |")
    if total is not None:
        lines.append("| **total** | " + " | ".join(f"**{v:.0f}**" for v in total) + " |")
    return lines


def render(profiles: Sequence[Profile], args: argparse.Namespace, command: str, elapsed: float) -> str:
    raw = [path for p in profiles for path in p.raw_paths]
    lines = [
        MARK_BEGIN,
        "",
        f"Produced by `{command}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} in "
        f"{elapsed / 60:.1f} minutes: {args.rounds} round(s), variants interleaved; per variant and round a "
        f"fresh worker, {args.warmup:g} s of warm-up, then {args.duration:g} s of `wrk -c{args.connections}` "
        f"sampled by py-spy at {args.rate} Hz ({'GIL holder only' if args.gil else 'all running threads'}, "
        f"{'non-blocking' if args.nonblocking else 'pausing the process per sample'}, --threads). "
        f"Raw collapsed stacks (speedscope.app opens them): `{Path(raw[0]).parent if raw else args.workdir}/`. "
        f"Repository at the start: {args.state_at_start}"
        + ("." if same_code(args.state_at_start, code_state()) else "; **the code changed during the run**."),
        "",
        "All figures are CPU µs per request served: a component's share of the samples times the worker's "
        "CPU time (psutil, user+system, all threads) over the sampled windows, divided by the requests. "
        "Background threads' time is divided by the same requests (the telemetry those requests made).",
        "",
        *column_heads(profiles),
        "| requests sampled | " + " | ".join(f"{p.requests:,}" for p in profiles) + " |",
        "| req/s while sampled | " + " | ".join(f"{p.rps:.0f}" for p in profiles) + " |",
        "| worker CPU µs/request | "
        + " | ".join(f"{p.cpu_seconds / p.requests * 1e6:.0f}" if p.requests else "n/a" for p in profiles)
        + " |",
        "| CPU time / GIL-held time sampled | " + " | ".join(f"{p.cpu_factor:.2f}" for p in profiles) + " |",
        "| py-spy sampling errors | " + " | ".join(str(p.errors) for p in profiles) + " |",
    ]
    threads = threads_of(profiles)
    lines += table(
        "#### CPU µs per request, by thread",
        profiles,
        {t: [p.us_per_request(p.samples_by_thread.get(t, 0)) for p in profiles] for t in threads},
        [p.us_per_request(sum(p.samples_by_thread.values())) for p in profiles],
    )
    categories = {c for p in profiles for c in p.categories}
    lines += table(
        "#### Request thread, by the outermost telemetry frame (CPU µs/request)",
        profiles,
        {c: [p.us_per_request(p.categories.get(c, 0)) for p in profiles] for c in categories},
        [p.us_per_request(p.samples_by_thread.get("MainThread", 0)) for p in profiles],
    )
    kinds = {k for p in profiles for k in p.kinds}
    lines += table(
        "#### Request thread's telemetry, by kind of work, whoever called it (CPU µs/request)",
        profiles,
        {k: [p.us_per_request(p.kinds.get(k, 0)) for p in profiles] for k in kinds},
        [p.us_per_request(sum(n for c, n in p.categories.items() if c != APPLICATION)) for p in profiles],
    )
    for p in profiles:
        telemetry = {c: n for c, n in p.categories.items() if c != APPLICATION}
        if not any(p.us_per_request(n) >= args.min_us for n in telemetry.values()):
            continue
        lines += [
            "",
            f"#### {p.variant}: inside each telemetry component (inclusive CPU µs/request, top {args.top})",
            "",
        ]
        for category, samples in sorted(telemetry.items(), key=lambda item: -item[1]):
            if p.us_per_request(samples) < args.min_us:
                continue
            lines.append(f"- **{category}**: {p.us_per_request(samples):.0f} µs")
            for func, count in p.details[category].most_common(args.top):
                lines.append(f"  - {p.us_per_request(count):.0f} µs `{func}`")
    for p in profiles:
        background = [t for t in p.samples_by_thread if t != "MainThread" and p.samples_by_thread[t]]
        if not any(p.us_per_request(p.samples_by_thread[t]) >= args.min_us for t in background):
            continue
        lines += ["", f"#### {p.variant}: background threads (inclusive CPU µs/request, top {args.top})", ""]
        for thread in sorted(background, key=lambda t: -p.samples_by_thread[t]):
            if p.us_per_request(p.samples_by_thread[thread]) < args.min_us:
                continue
            lines.append(f"- **{thread}**: {p.us_per_request(p.samples_by_thread[thread]):.0f} µs")
            shown = 0
            for func, count in p.thread_functions[thread].most_common():
                if any(skip in func for skip in ("threading.py", "Thread.run", "_bootstrap", "BatchProcessor.worker")):
                    continue
                lines.append(f"  - {p.us_per_request(count):.0f} µs `{func}`")
                shown += 1
                if shown >= args.top:
                    break
    packages = {k for p in profiles for k in p.self_by_package}
    by_package = {k: [p.us_per_request(p.self_by_package.get(k, 0)) for p in profiles] for k in packages}
    top_packages = dict(sorted(by_package.items(), key=lambda item: -max(item[1]))[: args.top * 3])
    lines += table("#### Request thread, self time by package (CPU µs/request)", profiles, top_packages, None)
    lines += table(
        "#### Selected functions, inclusive, all threads (CPU µs/request)",
        profiles,
        {func: [p.us_per_request(focus_samples(p, func)) for p in profiles] for func in focus_functions(profiles)},
        None,
    )
    lines += ["", MARK_END]
    return "\n".join(lines) + "\n"


def focus_functions(profiles: Sequence[Profile]) -> list[str]:
    found = {
        func
        for p in profiles
        for counter in p.thread_functions.values()
        for func in counter
        if any(re.search(pattern, func) for pattern in FOCUS)
    }
    return sorted(found)


def focus_samples(profile: Profile, func: str) -> int:
    return sum(counter.get(func, 0) for counter in profile.thread_functions.values())


def threads_of(profiles: Sequence[Profile]) -> list[str]:
    totals: Counter[str] = Counter()
    for p in profiles:
        for thread, samples in p.samples_by_thread.items():
            totals[thread] += samples
    names = [t for t, _ in totals.most_common() if t != "MainThread"]
    return ["MainThread", *names]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "py-spy profiles of the example service under load, variant by variant, with the request "
            "thread's time attributed to telemetry components. Needs the native stack and py-spy."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--variants", default="baseline,sdk-disabled,upstream,hcv", help="comma-separated")
    parser.add_argument("--shape", default="bare", choices=SHAPES, help="request shape")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; samples are summed")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before sampling")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds sampled under load, per round")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument(
        "--no-gil", dest="gil", action="store_false", help="sample all running threads, not only the GIL holder"
    )
    parser.add_argument("--nonblocking", action="store_true", help="do not pause the process to sample it")
    parser.add_argument("--top", type=int, default=8, help="functions listed per component")
    parser.add_argument("--min-us", type=float, default=2.0, help="leave out components below this µs/request")
    add_core_options(parser, client_help="core wrk and py-spy are pinned to")
    parser.add_argument("--database", default="hcv_bench", help="PostgreSQL database (as in bench/overhead.py)")
    add_output_options(parser, SCRIPT)
    parser.add_argument("--workdir", type=Path, help="default /tmp/otel-hcv-bench/profile-<run id>")
    add_list_variants(parser)
    args = parser.parse_args(argv)
    args.variant_list = comma_list(args.variants)
    check_variants(parser, args.variant_list)
    if not (BIN / "py-spy").exists():
        parser.error(f"py-spy is not installed in {BIN}: {BIN / 'pip'} install py-spy")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_id, args.workdir = start_run(args.workdir, prefix="profile-")
    command = command_line(SCRIPT, argv)
    started = time.monotonic()
    args.state_at_start = code_state()
    profiles = {name: Profile(name, args.shape, args.rate) for name in args.variant_list}
    with closed_port() as port:
        setup = prepare(args.database, COLLECTOR_METRICS, run_id, args.workdir, f"http://127.0.0.1:{port}")
        for round_no in range(1, args.rounds + 1):
            for name in rotated(args.variant_list, round_no):
                log(f"round {round_no}/{args.rounds}: profiling {args.shape} {name}")
                profile_once(setup, profiles[name], round_no, args)
    for profile in profiles.values():
        log(
            f"{profile.variant}: {profile.rps:.0f} req/s, {profile.cpu_seconds / max(profile.requests, 1) * 1e6:.0f} "
            f"CPU µs/req, request thread {profile.us_per_request(profile.samples_by_thread['MainThread']):.0f} µs/req"
        )
    section = render(list(profiles.values()), args, command, time.monotonic() - started)
    publish(section, args.output, args.no_write, script=SCRIPT, title="Profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
