"""scripts/stack.sh: syntax, usage text, and the commands that need no running stack."""

from __future__ import annotations

import os
import re
import subprocess

from scripts.stackctl.components import (
    MAX_GATEWAYS,
    Settings,
    cluster_components,
    stack_components,
    stack_env,
    tier_components,
)
from tests.support.backends import STACK_VARIABLES


def run(stack, *args, env_extra=None, timeout=60):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        ["bash", str(stack.STACK_SH), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_bash_syntax(stack):
    proc = subprocess.run(["bash", "-n", str(stack.STACK_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = stack.STACK_SH.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


def test_help_lists_every_command(stack):
    proc = run(stack, "--help")
    assert proc.returncode == 0
    usage = proc.stdout
    dispatch = stack.STACK_SH.read_text().split("main() {", 1)[1]
    commands = set(re.findall(r"^\s+([a-z][a-z-]*)\)", dispatch, re.M))
    assert {"install", "start", "stop", "restart", "status", "env", "validate", "bin"} <= commands
    assert {"start-tier", "stop-tier", "status-tier"} <= commands
    assert {"start-clusters", "stop-clusters", "status-clusters", "reset-clusters"} <= commands
    for cmd in commands:
        assert re.search(rf"^  {cmd}\b", usage, re.M), f"--help does not document '{cmd}'"
    for component in ("postgres", "redis", "jaeger", "victorialogs", "collector", "prometheus"):
        assert component in usage


def test_unknown_command_fails(stack):
    proc = run(stack, "frobnicate")
    assert proc.returncode == 2
    assert "Usage:" in proc.stderr


def test_unknown_component_fails(stack, tmp_path):
    proc = run(stack, "stop", "mysql", env_extra={"OTEL_HCV_STATE": str(tmp_path)})
    assert proc.returncode != 0
    assert "unknown component" in proc.stderr


def test_env_output(stack):
    proc = run(
        stack, "env", env_extra={"OTEL_HCV_STATE": "/srv/x", "OTEL_HCV_PG_PORT": "6000", "OTEL_HCV_DATA": "/srv/d"}
    )
    assert proc.returncode == 0
    exports = dict(re.findall(r"^export (\w+)=(.*)$", proc.stdout, re.M))
    assert exports == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "HCV_DATABASE_URL": "postgres://hcv:hcv@127.0.0.1:6000/hcv",
        "HCV_REDIS_URL": "redis://127.0.0.1:56379/0",
        "JAEGER_QUERY_URL": "http://127.0.0.1:16686",
        "PROMETHEUS_URL": "http://127.0.0.1:9090",
        "VICTORIALOGS_URL": "http://127.0.0.1:9428",
        "COLLECTOR_LOG_SINK": "/srv/x/collector/logs.jsonl",
        "OTEL_HCV_DATA": "/srv/d",
    }
    # Without OTEL_HCV_DATA, the persistent data go to the XDG data directory, not /tmp.
    proc = run(stack, "env", env_extra={"OTEL_HCV_DATA": "", "XDG_DATA_HOME": "/srv/xdg"})
    assert "export OTEL_HCV_DATA=/srv/xdg/otel-hcv\n" in proc.stdout


def test_bin_reports_missing_build(stack, tmp_path):
    proc = run(stack, "bin", "collector", env_extra={"OTEL_HCV_CACHE": str(tmp_path)})
    assert proc.returncode == 1
    path = proc.stdout.strip()
    assert path.startswith(str(tmp_path) + "/bin/otelcol-hcv-0.159.0-")


def test_status_on_empty_state_reports_stopped(stack, tmp_path):
    proc = run(
        stack,
        "status",
        env_extra={"OTEL_HCV_STATE": str(tmp_path), "OTEL_HCV_PG_PORT": "1", "OTEL_HCV_REDIS_PORT": "1"},
    )
    assert proc.returncode == 1
    for component in ("postgres", "redis", "jaeger", "victorialogs", "collector", "prometheus"):
        assert re.search(rf"^{component}\s+stopped", proc.stdout, re.M), proc.stdout


def test_validate_command(stack, collector_bin, promtool):
    proc = run(stack, "validate", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all configs valid" in proc.stderr


def test_start_tier_rejects_a_bad_gateway_count(stack, tmp_path):
    for bad in ("0", "5", "two"):
        proc = run(stack, "start-tier", bad, env_extra={"OTEL_HCV_STATE": str(tmp_path)})
        assert proc.returncode != 0, bad
        assert "number of gateways must be 1..4" in proc.stderr


def test_status_tier_on_empty_state_reports_stopped(stack, tmp_path):
    proc = run(stack, "status-tier", env_extra={"OTEL_HCV_STATE": str(tmp_path)})
    assert proc.returncode == 1
    for member in ("agent", "gateway-1", "gateway-4"):
        assert re.search(rf"^{member}\s+stopped", proc.stdout, re.M), proc.stdout
    assert re.search(r"^agent\s+stopped\s+-\s+-\s+OTLP 127\.0\.0\.1:25017 grpc", proc.stdout, re.M), proc.stdout
    assert ":25189/metrics" in proc.stdout


def test_stop_tier_when_nothing_runs(stack, tmp_path):
    proc = run(stack, "stop-tier", env_extra={"OTEL_HCV_STATE": str(tmp_path)})
    assert proc.returncode == 0
    assert "tier: not running" in proc.stderr


def test_start_tier_rejects_a_bad_mode(stack, tmp_path):
    proc = run(stack, "start-tier", "2", "carrier-pigeon", env_extra={"OTEL_HCV_STATE": str(tmp_path)})
    assert proc.returncode != 0
    assert "mode must be direct or kafka" in proc.stderr


def test_kafka_tier_needs_the_clusters(stack, tmp_path):
    proc = run(stack, "start-tier", "2", "kafka", env_extra={"OTEL_HCV_STATE": str(tmp_path)})
    assert proc.returncode != 0
    assert "the clusters are not running (scripts/stack.sh start-clusters)" in proc.stderr


def test_status_clusters_on_empty_state_reports_stopped(stack, tmp_path):
    proc = run(stack, "status-clusters", env_extra={"OTEL_HCV_STATE": str(tmp_path)})
    assert proc.returncode == 1
    for member in ("kafka-1", "kafka-2", "kafka-3", "victoriametrics-1", "victoriametrics-2", "vmauth", "vmalert"):
        assert re.search(rf"^{member}\s+stopped", proc.stdout, re.M), proc.stdout
    assert re.search(r"^kafka-1\s+stopped\s+-\s+-\s+127\.0\.0\.1:29192 ", proc.stdout, re.M), proc.stdout
    assert "http://127.0.0.1:28028" in proc.stdout


def test_env_prints_the_component_records(stack):
    """`env` is the records' stack_env, and it names everything the tests read of it."""
    extra = {"OTEL_HCV_STATE": "/srv/x", "OTEL_HCV_REDIS_PORT": "6001"}
    proc = run(stack, "env", env_extra=extra)
    exports = dict(re.findall(r"^export (\w+)=(.*)$", proc.stdout, re.M))
    assert exports == stack_env(Settings.from_environ({**os.environ, **extra}))
    assert exports["HCV_REDIS_URL"] == "redis://127.0.0.1:6001/0"
    assert set(STACK_VARIABLES) <= set(exports)


def test_no_two_components_share_a_port():
    settings = Settings.from_environ({})
    for mode in ("direct", "kafka"):
        tier = tier_components(settings, MAX_GATEWAYS, mode)
        every = stack_components(settings) + tier + cluster_components(settings)
        ports = [port for c in every for port in c.ports.values()]
        assert len(ports) == len(set(ports)), mode
        assert len({c.name for c in every}) == len(every)
