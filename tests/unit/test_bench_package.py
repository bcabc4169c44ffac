"""The benchmark harness (bench/harness/): variants' environments, the statistics and the report's
formatting, the Markdown sections, the fixed-rate load's figures, and the scripts' command lines."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from bench.harness import loadgen
from bench.harness.loadgen import VEGETA_VERSION, cache_dir, ensure_vegeta
from bench.harness.options import check_variants, comma_list
from bench.harness.output import markers, same_code, write_section
from bench.harness.reporting import fixed_rate_lines, histogram_percentile, ratio_text, target_lines
from bench.harness.results import (
    Cell,
    MiB,
    busy_share,
    growth_slope,
    median,
    rss_at,
    summarise,
    summarise_fixed_rate,
)
from bench.harness.stack import parse_prometheus, with_database
from bench.harness.variants import FULL_VARIANTS, QUICK_VARIANTS, VARIANTS, Endpoints, rotated, unknown_variants

REPO = Path(__file__).resolve().parents[2]
ENDPOINTS = Endpoints(collector="http://c:4318", collector_grpc="http://c:4317", closed="http://127.0.0.1:9")


# Variants ---------------------------------------------------------------------------------------


def test_a_variant_environment_fills_in_its_endpoints() -> None:
    assert VARIANTS["hcv"].environment(ENDPOINTS) == {
        "OTEL_PYTHON_DISTRO": "otel_hcv",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
    }
    down = VARIANTS["hcv-down-no-logs"].environment(ENDPOINTS)
    assert down["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:9"
    assert down["OTEL_LOGS_EXPORTER"] == "none"
    grpc = VARIANTS["upstream-grpc"].environment(ENDPOINTS)
    assert (grpc["OTEL_EXPORTER_OTLP_PROTOCOL"], grpc["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ("grpc", "http://c:4317")
    assert grpc["OTEL_PYTHON_DISTRO"] == "distro"


def test_instruction_counts_stretch_every_timer_by_the_scale() -> None:
    from bench.instructions import TIMER_VARIABLES, stretched_timers
    from otel_hcv import conf

    stretched = stretched_timers({"OTEL_BSP_SCHEDULE_DELAY": "200"}, 50)
    assert stretched["OTEL_BSP_SCHEDULE_DELAY"] == "10000"
    assert stretched["OTEL_METRIC_EXPORT_INTERVAL"] == "3000000"
    assert set(stretched) == set(TIMER_VARIABLES)
    # The health refresher's period is the health results' lifetime, which the variable sets.
    health = stretched["HCV_HEALTH_CACHE_SECONDS"]
    assert conf.load(environ={"HCV_HEALTH_CACHE_SECONDS": health}).health_cache_seconds == 500.0


def test_no_placeholder_is_left_in_any_variant_environment() -> None:
    for variant in VARIANTS.values():
        values = variant.environment(ENDPOINTS).values()
        assert not [value for value in values if "{" in value], variant.name


def test_the_uninstrumented_variants_disable_the_sdk_and_export_nothing() -> None:
    for variant in VARIANTS.values():
        if not variant.instrument:
            assert variant.env["OTEL_SDK_DISABLED"] == "true", variant.name
            assert not variant.exports, variant.name


def test_the_default_variant_lists_name_only_variants_and_start_with_the_baseline() -> None:
    for lists in (FULL_VARIANTS, QUICK_VARIANTS):
        for names in lists.values():
            assert unknown_variants(names) == []
            assert names[0] == "baseline"
    assert unknown_variants(["hcv", "hcv-sideways", "baseline", "nope"]) == ["hcv-sideways", "nope"]


def test_each_round_rotates_the_order_by_one() -> None:
    names = ["a", "b", "c"]
    assert rotated(names, 1) == ["a", "b", "c"]
    assert rotated(names, 2) == ["b", "c", "a"]
    assert rotated(names, 4) == ["a", "b", "c"]
    assert {rotated(names, round_no)[0] for round_no in (1, 2, 3)} == {"a", "b", "c"}
    assert names == ["a", "b", "c"]


# Statistics -------------------------------------------------------------------------------------


def cell(variant: str, round_no: int, rps: float, p99_us: float, cpu_us: float, shape: str = "bare") -> Cell:
    wrk = {"rps": rps, "latency_us": {"p50": p99_us / 4, "p99": p99_us}, "error_count": 1}
    return Cell(shape, variant, round_no, 0, f"bench-{variant}-r{round_no}", wrk=wrk, cpu_us_per_request=cpu_us)


def test_ratios_are_taken_per_round_against_that_rounds_baseline() -> None:
    cells = [
        cell("baseline", 1, 100, 10_000, 1000),
        cell("hcv", 1, 90, 12_000, 1500),
        cell("baseline", 2, 200, 5_000, 1000),
        cell("hcv", 2, 160, 10_000, 1200),
        # A round whose baseline failed gives no ratio, but still counts for the medians.
        Cell("bare", "baseline", 3, 0, "failed", problems=["RuntimeError"]),
        cell("hcv", 3, 110, 11_000, 1300),
    ]
    summary = summarise(cells, "baseline")[("bare", "hcv")]
    assert summary.rps_ratio == pytest.approx([0.9, 0.8])
    assert summary.p99_ratio == pytest.approx([1.2, 2.0])
    assert summary.cpu_ratio == pytest.approx([1.5, 1.2])
    assert summary.rounds == 3
    assert summary.rps == 110
    assert summary.p99_ms == pytest.approx(11.0)
    assert summary.errors == 3
    assert summarise(cells, "baseline")[("bare", "baseline")].rounds == 2


def test_memory_growth_is_the_least_squares_slope_over_the_second_half() -> None:
    # 3 bytes per request from 5,000 requests on; an outlier before that must not count.
    samples = [{"requests": 1000.0, "rss": 10 * MiB}] + [
        {"requests": float(n), "rss": 50 * MiB + 3.0 * n} for n in range(5000, 10_001, 1000)
    ]
    assert growth_slope(samples, 5000) == pytest.approx(30_000)
    assert growth_slope(samples, 10_000) is None  # one point is no slope
    assert rss_at(samples, 4000) == samples[1]
    assert rss_at(samples, 20_000) is None


def test_busy_share_counts_iowait_as_idle() -> None:
    times = namedtuple("times", "user system nice irq softirq idle iowait")
    before = times(10, 5, 0, 0, 0, 100, 7)
    after = times(13, 6, 0, 0, 0, 102, 9)
    assert busy_share(before, after) == pytest.approx(0.5)
    assert busy_share(before, before) == 0.0


def test_median_of_nothing_is_none() -> None:
    assert median([]) is None
    assert median([3.0, 1.0, 2.0]) == 2.0


# Report -----------------------------------------------------------------------------------------


def test_ratio_text_gives_the_median_and_the_range() -> None:
    assert ratio_text([0.9, 0.8, 1.0]) == "0.90 (0.80-1.00)"
    assert ratio_text([0.876]) == "0.88"
    assert ratio_text([]) == "n/a"


def test_histogram_percentile_names_the_bucket_bound() -> None:
    items = [
        {"buckets_ms": [1, 2, 5], "histogram": [10, 30, 5, 0]},
        {"buckets_ms": [1, 2, 5], "histogram": [0, 50, 4, 1]},
    ]
    assert histogram_percentile(items, 0.50) == "≤ 2"
    assert histogram_percentile(items, 0.95) == "≤ 5"
    assert histogram_percentile(items, 1.0) == "> 5"
    assert histogram_percentile([], 0.5) == "n/a"


def target_args(**overrides: object) -> argparse.Namespace:
    values = {"shape_list": ["bare"], "tolerance": 0.03, "p99_tolerance": 0.10, "soak_requests": 10_000,
              "memory_limit_mib": 2.0, **overrides}  # fmt: skip
    return argparse.Namespace(**values)


def test_targets_pass_and_fail_on_the_issue_limits() -> None:
    cells = [
        cell("baseline", 1, 100, 10_000, 1000),
        cell("hcv", 1, 86, 19_000, 1100),
        cell("hcv-down", 1, 80, 30_000, 1100),
    ]
    lines = target_lines(summarise(cells, "baseline"), [], target_args())
    throughput, p99, down = lines[2], lines[3], lines[4]
    assert throughput.startswith("| bare: hcv throughput ≥ 0.80 x baseline | 0.86 |") and "PASS" in throughput
    assert "| 1.90 |" in p99 and "PASS" in p99
    assert down.startswith("| bare: collector down no worse than up") and "**FAIL**" in down

    slower = [cell("baseline", 1, 100, 10_000, 1000), cell("hcv", 1, 79, 21_000, 1100)]
    lines = target_lines(summarise(slower, "baseline"), [], target_args())
    assert "**FAIL**" in lines[2] and "**FAIL**" in lines[3]


# Sections ---------------------------------------------------------------------------------------


def test_write_section_replaces_only_its_own_markers(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    begin, end = markers("main", "bench/x.py")
    other_begin, other_end = markers("gc", "bench/x.py")
    assert other_begin == "<!-- bench/x.py gc: begin -->"
    doc.write_text(f"# B\n\n{begin}\nold\n{end}\n\nbetween\n\n{other_begin}\nkept\n{other_end}\n")
    write_section(doc, f"{begin}\nnew\n{end}\n", script="bench/x.py")
    assert doc.read_text() == f"# B\n\n{begin}\nnew\n{end}\n\nbetween\n\n{other_begin}\nkept\n{other_end}\n"


def test_write_section_appends_a_missing_section_under_a_heading(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    begin, end = markers("side", "bench/x.py")
    write_section(doc, f"{begin}\nrows\n{end}\n", name="side", script="bench/x.py", title="Overhead")
    assert doc.read_text() == f"# Benchmarks\n\nintro\n\n## Overhead: side (bench/x.py)\n\n{begin}\nrows\n{end}\n"


def test_same_code_compares_the_digests_only() -> None:
    assert same_code("abc1234, code digest 0123456789ab", "def5678 with uncommitted changes, code digest 0123456789ab")
    assert not same_code("abc1234, code digest 0123456789ab", "abc1234, code digest ba9876543210")


# The stack's figures ----------------------------------------------------------------------------


def test_parse_prometheus_reads_names_labels_and_values() -> None:
    text = (
        "# HELP traces_span_metrics_calls_total calls\n"
        'traces_span_metrics_calls_total{service_name="bench-1",span_name="say \\"hi\\""} 42\n'
        "otelcol_receiver_accepted_spans 7.5\n"
        'broken_line{a="b"} not-a-number\n'
    )
    assert parse_prometheus(text) == [
        ("traces_span_metrics_calls_total", {"service_name": "bench-1", "span_name": 'say \\"hi\\"'}, 42.0),
        ("otelcol_receiver_accepted_spans", {}, 7.5),
    ]


def test_with_database_replaces_only_the_path() -> None:
    assert with_database("postgres://hcv:pw@127.0.0.1:55432/hcv?sslmode=disable", "hcv_bench") == (
        "postgres://hcv:pw@127.0.0.1:55432/hcv_bench?sslmode=disable"
    )


# Command lines ----------------------------------------------------------------------------------


def test_comma_lists_and_unknown_variants_on_the_command_line() -> None:
    assert comma_list(" hcv, ,hcv-down,") == ["hcv", "hcv-down"]
    parser = argparse.ArgumentParser()
    check_variants(parser, ["hcv", "baseline"])
    with pytest.raises(SystemExit):
        check_variants(parser, ["hcv", "hvc"])


SCRIPTS = (
    "bench/overhead.py",
    "bench/profile_overhead.py",
    "bench/instructions.py",
    "bench/fixed_rate.py",
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_lists_the_variants_and_explains_its_options(script: str) -> None:
    listed = subprocess.run(
        [sys.executable, script, "--list-variants"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(VARIANTS)
    helped = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "--list-variants" in helped.stdout and "--output" in helped.stdout


def test_harness_modules_import_only_modules_listed_before_them() -> None:
    """The order bench/harness/__init__.py gives is the import order: no module reaches down the list
    (imports inside functions included), so the package has no cycle."""
    import ast

    import bench.harness

    harness = Path(bench.harness.__file__).parent
    order = re.findall(r"^\* ``(\w+)``", bench.harness.__doc__ or "", re.MULTILINE)
    assert sorted(order) == sorted(p.stem for p in harness.glob("*.py") if p.stem != "__init__")
    for position, name in enumerate(order):
        tree = ast.parse((harness / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported.add(node.module or "")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench.harness."):
                imported.add((node.module or "").removeprefix("bench.harness."))
        assert imported <= set(order[:position]), f"{name} imports {sorted(imported - set(order[:position]))}"


# The fixed-rate load ----------------------------------------------------------------------------


def fixed(variant: str, round_no: int, p50: float, p99: float, success: float = 1.0) -> Cell:
    figures = {"p50": p50, "p99": p99, "max": p99 * 2, "throughput": 100.0, "success": success}
    return Cell("bare", variant, round_no, 0, f"s-{variant}-{round_no}", fixed_rate=figures)


def test_fixed_rate_ratios_are_taken_per_round_and_failures_show() -> None:
    cells = [
        fixed("baseline", 1, 4.0, 10.0),
        fixed("hcv", 1, 5.0, 30.0),
        fixed("baseline", 2, 2.0, 5.0),
        fixed("hcv", 2, 3.0, 10.0, success=0.98),
        Cell("bare", "hcv", 3, 0, "no-vegeta"),  # a cell measured by wrk only is left out
    ]
    summary = summarise_fixed_rate(cells, "baseline")[("bare", "hcv")]
    assert summary.rounds == 2
    assert summary.p99_ratio == pytest.approx([3.0, 2.0])
    assert summary.p50_ratio == pytest.approx([1.25, 1.5])
    assert summary.success == pytest.approx(0.98)
    lines = fixed_rate_lines(cells, "baseline", 100, 10)
    (row,) = [line for line in lines if line.startswith("| bare | hcv |")]
    assert "| 2.50 (2.00-3.00) |" in row and "98.0%" in row
    assert lines[-1] == "Target, bare: hcv p99 ≤ 2 x baseline at 100 req/s: 2.50, **FAIL**."


def test_vegeta_is_taken_from_the_cache_keyed_by_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_HCV_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    cached = tmp_path / "bin" / f"vegeta-{VEGETA_VERSION}"
    cached.parent.mkdir()
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    monkeypatch.setattr(loadgen, "find_go", lambda: None)  # no Go: a build would fail
    assert ensure_vegeta() == cached
    with pytest.raises(SystemExit, match="Go"):
        ensure_vegeta("v0.0.0-not-cached")

