"""prometheus/rules.yml: promtool accepts it, and every alert has unit tests in
prometheus/tests/ with a case that fires and a case that stays quiet."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules.yml"
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: run `scripts/stack.sh install` first")
    return path


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules(promtool):
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_promtool_test_rules(promtool):
    assert RULE_TESTS
    result = run([promtool, "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases: dict[str, set[str]] = defaultdict(set)
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../rules.yml"], path
        for test in spec["tests"]:
            for case in test.get("alert_rule_test", []):
                cases[case["alertname"]].add("fires" if case.get("exp_alerts") else "quiet")
    assert {name: cases[name] for name in alert_names()} == {name: {"fires", "quiet"} for name in alert_names()}


def test_promtool_notices_a_broken_expectation(promtool, tmp_path):
    """The tests can fail: the same firing case with a wrong label is rejected."""
    spec = yaml.safe_load((ROOT / "prometheus" / "tests" / "health_test.yml").read_text())
    spec["rule_files"] = [str(RULES)]
    firing = next(case for case in spec["tests"][0]["alert_rule_test"] if case["exp_alerts"])
    firing["exp_alerts"][0]["exp_labels"]["hcv_health_check"] = "cache"
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(spec))
    assert run([promtool, "test", "rules", str(broken)]).returncode != 0


def test_rules_use_the_names_the_collector_exports():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    expressions = "\n".join(rule["expr"] for group in groups for rule in group["rules"])
    for name in ("hcv_health_status", "hcv_diagnosis_requests_total", "hcv_diagnosis_duration_seconds_bucket",
                 "otelcol_exporter_send_failed_spans", "otelcol_receiver_refused_metric_points"):  # fmt: skip
        assert name in expressions
    # Dotted OpenTelemetry names never reach Prometheus.
    assert "hcv.health" not in expressions and "hcv.diagnosis" not in expressions
