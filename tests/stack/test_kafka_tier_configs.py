"""collector/kafka-agent.yaml and collector/kafka-gateway.yaml (the Kafka tier), checked
statically and with the otelcol-hcv-kafka binary built from collector/builder-config-kafka.yaml."""

from __future__ import annotations

import subprocess

import pytest
import yaml

KIND_SUFFIX = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "connectors": "connector",
    "extensions": "extension",
}


@pytest.fixture(scope="module")
def kafka_agent(stack) -> dict:
    return stack.load_yaml(stack.KAFKA_AGENT_CONFIG)


@pytest.fixture(scope="module")
def kafka_gateway(stack) -> dict:
    return stack.load_yaml(stack.KAFKA_GATEWAY_CONFIG)


@pytest.fixture(scope="module")
def kafka_manifest(stack) -> dict:
    return stack.load_yaml(stack.KAFKA_BUILDER_CONFIG)


def used_types(stack, kind: str) -> set[str]:
    used: set[str] = set()
    for path in stack.KAFKA_COLLECTOR_CONFIGS:
        used |= {stack.component_type(cid) for cid in (stack.load_yaml(path).get(kind) or {})}
    return used


@pytest.mark.parametrize("path_attr", ["KAFKA_AGENT_CONFIG", "KAFKA_GATEWAY_CONFIG"])
def test_kafka_tier_configs_validate(kafka_collector_bin, stack, path_attr):
    proc = stack.run_validate(kafka_collector_bin, getattr(stack, path_attr))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kafka_gateway_validate_rejects_a_bad_value(kafka_collector_bin, stack):
    # Proves the check above can fail.
    proc = stack.run_validate(kafka_collector_bin, stack.KAFKA_GATEWAY_CONFIG, {"OTEL_HCV_SAMPLING_PERCENTAGE": "ten"})
    assert proc.returncode != 0


def test_kafka_binary_holds_exactly_what_the_configs_use(kafka_collector_bin, kafka_manifest, stack):
    proc = subprocess.run([str(kafka_collector_bin), "components"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    built = yaml.safe_load(proc.stdout)
    for kind in stack.COMPONENT_KINDS:
        names = {c["name"] for c in built.get(kind) or []}
        assert names == used_types(stack, kind), kind
        assert len(kafka_manifest.get(kind) or []) == len(names), kind


def test_kafka_manifest_matches_the_configs_statically(kafka_manifest, stack):
    for kind in stack.COMPONENT_KINDS:
        modules = [e["gomod"].split()[0].rsplit("/", 1)[1] for e in kafka_manifest.get(kind) or []]
        listed = {m.removesuffix(KIND_SUFFIX[kind]) for m in modules}
        assert listed == {t.replace("_", "") for t in used_types(stack, kind)}, kind


def test_kafka_manifest_is_one_release(kafka_manifest, stack):
    version = f"v{kafka_manifest['dist']['version']}"
    for kind in stack.COMPONENT_KINDS:
        for entry in kafka_manifest.get(kind) or []:
            assert entry["gomod"].split()[1] == version, entry
    script = stack.STACK_SH.read_text()
    assert f"OCB_KAFKA_VERSION={kafka_manifest['dist']['version']}\n" in script


@pytest.mark.parametrize("name", ["agent", "gateway"])
def test_every_defined_component_is_used(stack, kafka_agent, kafka_gateway, name):
    stack.assert_every_component_used(kafka_agent if name == "agent" else kafka_gateway, [{}], f"kafka {name}")


def test_scrub_is_the_same_as_everywhere_else(collector_config, kafka_agent, kafka_gateway):
    scrub = collector_config["processors"]["transform/scrub"]
    assert kafka_agent["processors"]["transform/scrub"] == scrub
    assert kafka_gateway["processors"]["transform/scrub"] == scrub
    for cfg in (kafka_agent, kafka_gateway):
        for signal, pipe in cfg["service"]["pipelines"].items():
            if set(pipe["receivers"]) & {"otlp", "kafka"}:
                assert pipe["processors"][0] == "memory_limiter", signal
                assert "transform/scrub" in pipe["processors"], signal


def test_agent_keys_spans_by_trace_id_and_waits_for_two_replicas(kafka_agent):
    kafka = kafka_agent["exporters"]["kafka"]
    assert kafka["partition_traces_by_id"] is True
    assert kafka["partition_logs_by_trace_id"] is True
    assert kafka["producer"]["required_acks"] == -1
    assert kafka["producer"]["allow_auto_topic_creation"] is False
    assert kafka["retry_on_failure"]["max_elapsed_time"] == 0
    assert kafka["sending_queue"]["enabled"] is True
    pipes = kafka_agent["service"]["pipelines"]
    assert {name: pipe["exporters"] for name, pipe in pipes.items()} == {
        "traces": ["kafka"],
        "metrics": ["kafka"],
        "logs": ["kafka"],
    }
    assert [kafka[s]["topic"] for s in ("traces", "metrics", "logs")] == ["otlp_spans", "otlp_metrics", "otlp_logs"]


def test_gateways_consume_as_one_group_and_commit_only_what_they_took(kafka_gateway, kafka_agent):
    kafka = kafka_gateway["receivers"]["kafka"]
    # One fixed group for every gateway of the pool (not per-gateway: that would copy).
    assert kafka["group_id"] == "otel-hcv-gateways"
    assert kafka["initial_offset"] == "earliest"
    assert kafka["message_marking"] == {"after": True, "on_error": False}
    assert kafka["error_backoff"]["enabled"] is True
    assert kafka["error_backoff"]["max_elapsed_time"] == 0
    produced = {s: kafka_agent["exporters"]["kafka"][s]["topic"] for s in ("traces", "metrics", "logs")}
    consumed = {s: kafka[s]["topics"] for s in ("traces", "metrics", "logs")}
    assert consumed == {s: [t] for s, t in produced.items()}


def test_kafka_gateway_samples_and_counts_like_the_direct_gateway(gateway_config, kafka_gateway):
    for section, name in (("processors", "tail_sampling"), ("processors", "resource/gateway"),
                          ("connectors", "span_metrics")):  # fmt: skip
        assert kafka_gateway[section][name] == gateway_config[section][name], name
    pipes = kafka_gateway["service"]["pipelines"]
    assert pipes["traces"]["exporters"] == ["span_metrics", "forward/sampling"]
    assert pipes["traces/sampling"]["processors"] == ["tail_sampling", "batch"]


def test_kafka_gateway_writes_every_sample_to_both_metric_nodes_and_logs_to_victorialogs(kafka_gateway):
    exporters = kafka_gateway["exporters"]
    pipes = kafka_gateway["service"]["pipelines"]
    writers = [e for e in pipes["metrics"]["exporters"] if e.startswith("prometheus_remote_write/")]
    assert len(writers) == 2
    assert len({exporters[w]["endpoint"] for w in writers}) == 2
    for w in writers:
        assert exporters[w]["retry_on_failure"]["max_elapsed_time"] == 0
        assert exporters[w]["external_labels"] == {"hcv_collector_gateway": "${env:OTEL_HCV_GATEWAY_NAME:-gateway-1}"}
        assert exporters[w]["translation_strategy"] == exporters["prometheus"]["translation_strategy"]
    assert pipes["logs"]["exporters"] == ["otlp_http/victorialogs"]
