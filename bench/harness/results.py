"""What a measured run yields, and the statistics the report takes over it.

A ``Cell`` is one variant measured once (one round, one shape, a fresh worker); a ``Soak`` is
one variant driven to many requests while its resident memory is sampled. Nothing here starts
a process: these are records and pure functions over them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024


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
    fixed_rate: dict[str, Any] = field(default_factory=dict)  # vegeta's report (loadgen.run_vegeta), if run


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


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def by_shape_and_variant(cells: Sequence[Cell]) -> dict[tuple[str, str], list[Cell]]:
    """The cells grouped by (shape, variant), in the order first seen."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.shape, cell.variant), []).append(cell)
    return groups


def summarise(cells: Sequence[Cell], baseline: str) -> dict[tuple[str, str], Summary]:
    """Medians over the rounds per (shape, variant), and each round's ratios against the same
    round's ``baseline`` cell (a round without a baseline cell gives no ratio)."""
    base_by_round = {(c.shape, c.round): c for c in cells if c.variant == baseline}
    out = {}
    for (shape, variant), group in by_shape_and_variant(cells).items():
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


@dataclass
class FixedRateSummary:
    """One (shape, variant) at the fixed rate: medians over the rounds, per-round ratios of p50 and p99
    against the same round's baseline, and the lowest share of successful requests."""

    rounds: int
    p50_ms: float | None
    p50_ratio: list[float]
    p99_ms: float | None
    p99_ratio: list[float]
    max_ms: float | None
    throughput: float | None
    success: float | None


def summarise_fixed_rate(cells: Sequence[Cell], baseline: str) -> dict[tuple[str, str], FixedRateSummary]:
    """The fixed-rate figures of the cells that have them, as :func:`summarise` takes wrk's."""
    measured = [c for c in cells if c.fixed_rate]
    base_by_round = {(c.shape, c.round): c for c in measured if c.variant == baseline}
    out = {}
    for (shape, variant), group in by_shape_and_variant(measured).items():
        p50, p99 = [], []
        for cell in group:
            base = base_by_round.get((shape, cell.round))
            if base is None or not base.fixed_rate["p50"] or not base.fixed_rate["p99"]:
                continue
            p50.append(cell.fixed_rate["p50"] / base.fixed_rate["p50"])
            p99.append(cell.fixed_rate["p99"] / base.fixed_rate["p99"])
        out[(shape, variant)] = FixedRateSummary(
            len(group),
            median([c.fixed_rate["p50"] for c in group]),
            p50,
            median([c.fixed_rate["p99"] for c in group]),
            p99,
            median([c.fixed_rate["max"] for c in group]),
            median([c.fixed_rate["throughput"] for c in group]),
            min(c.fixed_rate["success"] for c in group),
        )
    return out


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


def busy_share(before: Any, after: Any) -> float:
    """The share of a core busy between two ``psutil.cpu_times(percpu=True)[core]`` readings."""
    busy = sum(getattr(after, f) - getattr(before, f) for f in ("user", "system", "nice", "irq", "softirq"))
    idle = (after.idle - before.idle) + (after.iowait - before.iowait)
    return busy / (busy + idle) if busy + idle > 0 else 0.0
