"""Shared helpers for the stack/config tests (tests/stack).

These tests check the shipped backend configuration: the collector config with
the real collector binary built by ``scripts/stack.sh install``, the builder
manifest, the Prometheus configs with promtool, the Jaeger config, the compose
file and the stack script itself. They do not need the stack to be running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.support.service import free_port, post_json

ROOT = Path(__file__).resolve().parents[2]
STACK_SH = ROOT / "scripts" / "stack.sh"
COLLECTOR_CONFIG = ROOT / "collector" / "otel-config.yaml"
# The agent/gateway tier (docs/operations.md): the builder manifest serves all three.
AGENT_CONFIG = ROOT / "collector" / "agent.yaml"
GATEWAY_CONFIG = ROOT / "collector" / "gateway.yaml"
COLLECTOR_CONFIGS = (COLLECTOR_CONFIG, AGENT_CONFIG, GATEWAY_CONFIG)
BUILDER_CONFIG = ROOT / "collector" / "builder-config.yaml"
# The Kafka tier (start-tier N kafka): its own binary, otelcol-hcv-kafka, built from
# its own manifest, serves these two.
KAFKA_AGENT_CONFIG = ROOT / "collector" / "kafka-agent.yaml"
KAFKA_GATEWAY_CONFIG = ROOT / "collector" / "kafka-gateway.yaml"
KAFKA_COLLECTOR_CONFIGS = (KAFKA_AGENT_CONFIG, KAFKA_GATEWAY_CONFIG)
KAFKA_BUILDER_CONFIG = ROOT / "collector" / "builder-config-kafka.yaml"
JAEGER_CONFIG = ROOT / "jaeger" / "config.yaml"
PROM_DIR = ROOT / "prometheus"
COMPOSE_FILE = ROOT / "docker-compose.yml"

COMPONENT_KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")

# ${env:NAME} or ${env:NAME:-default}
ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def run_validate(binary: Path, config: Path, env_extra: dict[str, str] | None = None, timeout: float = 60):
    """``otelcol validate`` of a config with only the given variables set."""
    env = {"PATH": "/usr/bin:/bin", "OTEL_COLLECTOR_BIND": "127.0.0.1"}
    env.update(env_extra or {})
    return subprocess.run(
        [str(binary), "validate", "--config", str(config)], capture_output=True, text=True, timeout=timeout, env=env
    )


PIPELINE_KINDS = ("receivers", "processors", "exporters", "extensions")


def pipeline_refs(cfg: dict, slots: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Component ids the service section references, a slot placeholder (``${env:...}``)
    replaced by the value given for it."""
    slots = slots or {}
    refs: dict[str, set[str]] = {k: set() for k in PIPELINE_KINDS}
    refs["extensions"].update(cfg["service"].get("extensions", []))
    for pipeline in cfg["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            refs[kind].update(slots.get(ref, ref) for ref in pipeline.get(kind, []))
    return refs


def assert_every_component_used(cfg: dict, slot_choices: list[dict[str, str]], label: str) -> None:
    """Every defined component is referenced for some choice of the slots, and nothing
    undefined is (connectors count as both receiver and exporter)."""
    used: dict[str, set[str]] = {k: set() for k in PIPELINE_KINDS}
    for slots in slot_choices:
        for kind, ids in pipeline_refs(cfg, slots).items():
            used[kind] |= ids
    connectors = set(cfg.get("connectors") or {})
    for kind in used:
        defined = set(cfg.get(kind) or {})
        if kind in ("receivers", "exporters"):
            used[kind] -= connectors
        assert used[kind] == defined, f"{label} {kind}: defined {sorted(defined)} used {sorted(used[kind])}"


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def resolve_env_defaults(text: str, env: dict[str, str] | None = None) -> str:
    """Expand ${env:VAR:-default} the way the collector does for plain strings."""
    env = env or {}

    def repl(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        return default if default is not None else ""

    return ENV_REF.sub(repl, text)


def stack_bin(name: str) -> Path | None:
    """Path of a binary built by `scripts/stack.sh install`, or None if not built."""
    proc = subprocess.run(["bash", str(STACK_SH), "bin", name], capture_output=True, text=True, timeout=30)
    path = Path(proc.stdout.strip()) if proc.stdout.strip() else None
    if proc.returncode != 0 or path is None or not os.access(path, os.X_OK):
        return None
    return path


@pytest.fixture(scope="session")
def collector_bin() -> Path:
    path = stack_bin("collector")
    if path is None:
        pytest.skip("collector binary not built: run `scripts/stack.sh install` first")
    return path


@pytest.fixture(scope="session")
def kafka_collector_bin() -> Path:
    path = stack_bin("kafka-collector")
    if path is None:
        pytest.skip("Kafka tier collector not built: run `scripts/stack.sh install` first")
    return path


@pytest.fixture(scope="session")
def jaeger_bin() -> Path:
    path = stack_bin("jaeger")
    if path is None:
        pytest.skip("jaeger binary not built: run `scripts/stack.sh install` first")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: run `scripts/stack.sh install` first")
    return path


@pytest.fixture(scope="session")
def collector_config() -> dict:
    return load_yaml(COLLECTOR_CONFIG)


@pytest.fixture(scope="session")
def agent_config() -> dict:
    return load_yaml(AGENT_CONFIG)


@pytest.fixture(scope="session")
def gateway_config() -> dict:
    return load_yaml(GATEWAY_CONFIG)


@pytest.fixture(scope="session")
def builder_config() -> dict:
    return load_yaml(BUILDER_CONFIG)


@pytest.fixture(scope="session")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def wait_http_ok(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


class RunningCollector:
    def __init__(self, proc: subprocess.Popen, ports: dict[str, int], stderr_path: Path, sink: Path):
        self.proc = proc
        self.ports = ports
        self.stderr_path = stderr_path
        self.sink = sink

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    def output(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def run_collector(binary: Path, tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[RunningCollector]:
    """Run the real collector with collector/otel-config.yaml on free ports.

    The shipped file is used verbatim except for its fixed port numbers, which
    are swapped for free ones so the test never collides with a running stack.
    """
    ports = {
        "otlp_grpc": free_port(),
        "otlp_http": free_port(),
        "prom": free_port(),
        "selfmetrics": free_port(),
        "health": free_port(),
        "zpages": free_port(),
        "jaeger": free_port(),  # nothing listens there: trace export just retries
        "victorialogs": free_port(),  # likewise for the log export
    }
    text = COLLECTOR_CONFIG.read_text(encoding="utf-8")
    for old, key in (
        (':4317"', "otlp_grpc"),
        (':4318"', "otlp_http"),
        (':8889"', "prom"),
        (':13133"', "health"),
        (':55679"', "zpages"),
    ):
        assert text.count(old) == 1, f"expected exactly one {old!r} in otel-config.yaml"
        text = text.replace(old, f':{ports[key]}"')
    assert text.count("port: 8888") == 1
    text = text.replace("port: 8888", f"port: {ports['selfmetrics']}")
    cfg = tmp_path / "otel-config.yaml"
    cfg.write_text(text, encoding="utf-8")
    sink = tmp_path / "sink" / "logs.jsonl"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OTEL_COLLECTOR_BIND": "127.0.0.1",
        "JAEGER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports['jaeger']}",
        "VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"http://127.0.0.1:{ports['victorialogs']}/insert/opentelemetry/v1/logs",
        "OTEL_HCV_LOG_SINK": str(sink),
        # Each collector needs a queue directory of its own (the storage is locked).
        "OTEL_HCV_QUEUE_DIR": str(tmp_path / "queue"),
    }
    env.update(extra_env or {})
    stderr_path = tmp_path / "collector.out"
    with open(stderr_path, "wb") as out:
        proc = subprocess.Popen([str(binary), "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        ok = wait_http_ok(f"http://127.0.0.1:{ports['health']}/", timeout=30)
        if not ok:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail("collector did not become healthy:\n" + stderr_path.read_text(errors="replace")[-4000:])
        yield RunningCollector(proc, ports, stderr_path, sink)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def stack() -> SimpleNamespace:
    """Paths and helpers for the test modules (they import nothing from here)."""
    return SimpleNamespace(
        ROOT=ROOT,
        STACK_SH=STACK_SH,
        COLLECTOR_CONFIG=COLLECTOR_CONFIG,
        AGENT_CONFIG=AGENT_CONFIG,
        GATEWAY_CONFIG=GATEWAY_CONFIG,
        COLLECTOR_CONFIGS=COLLECTOR_CONFIGS,
        BUILDER_CONFIG=BUILDER_CONFIG,
        KAFKA_AGENT_CONFIG=KAFKA_AGENT_CONFIG,
        KAFKA_GATEWAY_CONFIG=KAFKA_GATEWAY_CONFIG,
        KAFKA_COLLECTOR_CONFIGS=KAFKA_COLLECTOR_CONFIGS,
        KAFKA_BUILDER_CONFIG=KAFKA_BUILDER_CONFIG,
        JAEGER_CONFIG=JAEGER_CONFIG,
        PROM_DIR=PROM_DIR,
        COMPOSE_FILE=COMPOSE_FILE,
        COMPONENT_KINDS=COMPONENT_KINDS,
        ENV_REF=ENV_REF,
        component_type=component_type,
        run_validate=run_validate,
        pipeline_refs=pipeline_refs,
        assert_every_component_used=assert_every_component_used,
        load_yaml=load_yaml,
        resolve_env_defaults=resolve_env_defaults,
        run_collector=run_collector,
        free_port=free_port,
        post_json=post_json,
        wait_for=wait_for,
        wait_http_ok=wait_http_ok,
    )
