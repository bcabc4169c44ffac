"""The overhead section of docs/benchmarks.md: method, variants, throughput and latency, telemetry
accounting, garbage collection, resident memory, the targets and the problems the logs showed."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from .output import code_state, markers, same_code
from .results import (
    Cell,
    MiB,
    Soak,
    Summary,
    by_shape_and_variant,
    growth_slope,
    median,
    rss_at,
    summarise,
    summarise_fixed_rate,
)
from .stack import CollectorView, collector_binary
from .variants import SHAPES, VARIANTS

T = TypeVar("T")


def tool_version(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "not found"
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "?"


def measured(summaries: Mapping[tuple[str, str], T]) -> Iterator[tuple[str, str, T]]:
    """``(shape, variant, summary)`` for every cell that was measured, in table order
    (shapes, then variants as they are declared)."""
    for shape in SHAPES:
        for name in VARIANTS:
            summary = summaries.get((shape, name))
            if summary is not None:
                yield shape, name, summary


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def spread(values: Sequence[float], digits: int = 2) -> str:
    if len(values) < 2:
        return ""
    return f" ({min(values):.{digits}f}-{max(values):.{digits}f})"


def ratio_text(values: Sequence[float]) -> str:
    return "n/a" if not values else f"{median(values):.2f}{spread(values)}"


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
    for (shape, variant), group in by_shape_and_variant(cells).items():
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
    collector_bin = collector_binary()
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
            if same_code(state_at_start, state_at_end)
            else f"; **the code changed during the run** (at the end: {state_at_end})"
        ),
    ]


def render(
    args: argparse.Namespace,
    workdir: Path,
    state_at_start: str,
    cells: Sequence[Cell],
    soaks: Sequence[Soak],
    collector: CollectorView,
    elapsed: float,
    command: str,
) -> str:
    """The whole section, between its markers."""
    summaries = summarise(cells, args.baseline)
    lines = [
        markers(args.section)[0],
        "",
        f"Produced by `{command}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} "
        f"in {elapsed / 60:.1f} minutes (raw results: `{workdir}/results.json`).",
        "",
        *machine_description(args, state_at_start, code_state()),
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
    for shape, name, summary in measured(summaries):
        lines.append(
            f"| {shape} | {name}{' (extra)' if VARIANTS[name].extra else ''} | {fmt(summary.rps, 0)} | "
            f"{ratio_text(summary.rps_ratio)} | {fmt(summary.p50_ms)} | {ratio_text(summary.p50_ratio)} | "
            f"{fmt(summary.p99_ms)} | {ratio_text(summary.p99_ratio)} | {fmt(summary.cpu_us, 0)} | "
            f"{ratio_text(summary.cpu_ratio)} | {fmt((summary.others or 0) * 100, 0, '%')} |"
        )
    if getattr(args, "rate", 0):
        lines += ["", f"### At a fixed rate of {args.rate:g} requests/s (vegeta)", ""]
        lines += fixed_rate_lines(cells, args.baseline, args.rate, args.duration)
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


def fixed_rate_lines(cells: Sequence[Cell], baseline: str, rate: float, seconds: float) -> list[str]:
    """The fixed-rate table: per shape and variant, vegeta's p50, p99 and max, and the p99 target."""
    summaries = summarise_fixed_rate(cells, baseline)
    lines = [
        f"Right after wrk's window, on the same worker, `vegeta attack -rate={rate:g}/s` for {seconds:g} s "
        "(open-loop: requests leave on schedule whatever the server does, so a slow response cannot hold "
        "back the next ones as it does under wrk). Medians over the rounds; ratios per round against the "
        f"same round's `{baseline}`. A rate above what a variant can serve makes its latencies grow with "
        "the queue: the achieved rate column shows it.",
        "",
        "| shape | variant | p50 ms | x baseline | p99 ms | x baseline | max ms | achieved req/s | successful |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape, name, summary in measured(summaries):
        lines.append(
            f"| {shape} | {name} | {fmt(summary.p50_ms)} | {ratio_text(summary.p50_ratio)} | "
            f"{fmt(summary.p99_ms)} | {ratio_text(summary.p99_ratio)} | {fmt(summary.max_ms, 1)} | "
            f"{fmt(summary.throughput, 0)} | {fmt((summary.success or 0) * 100, 1, '%')} |"
        )
    for shape in SHAPES:
        hcv = summaries.get((shape, "hcv"))
        ratio = median(hcv.p99_ratio) if hcv else None
        if ratio is not None:
            verdict = "PASS" if ratio <= 2.0 else "**FAIL**"
            lines += ["", f"Target, {shape}: hcv p99 ≤ 2 x baseline at {rate:g} req/s: {ratio:.2f}, {verdict}."]
    return lines


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
    for (shape, variant), group in by_shape_and_variant(cells).items():
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

    for shape, minimum in (("bare", 0.80), ("realistic", 0.95)):  # issue 18's targets
        if shape not in args.shape_list:
            continue
        summary = summaries.get((shape, "hcv"))
        ratio = median(summary.rps_ratio) if summary else None
        lines.append(
            f"| {shape}: hcv throughput ≥ {minimum:.2f} x baseline | {fmt(ratio)} | "
            f"{verdict(None if ratio is None else ratio >= minimum)} |"
        )
        p99 = median(summary.p99_ratio) if summary else None
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
