"""collector/agent.yaml and collector/gateway.yaml (the agent/gateway tier), checked statically
and with the real collector binary on free loopback ports (no running stack needed).

The end-to-end behaviour with Jaeger and Prometheus is in tests/tier.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request

import pytest

from otel_hcv.receiver import OtlpReceiver
from scripts.stackctl.components import MAX_GATEWAYS, TIER_ROLES, stack_ports, tier_port

RESOLVERS = ("static", "dns")
RESOLVER_SLOT = "load_balancing/${env:OTEL_HCV_GATEWAY_RESOLVER:-static}"
# The stack's ports (its component records) and the collector's and Jaeger's ports that the
# records do not list (zpages, Jaeger's admin and gRPC query ports): the tier must not use them.
STACK_PORTS = stack_ports() | {55679, 14269, 16685}


def defaults(stack, value) -> str:
    return stack.resolve_env_defaults(str(value))


# --------------------------------------------------------------------------
# validate with the real binary
# --------------------------------------------------------------------------
@pytest.mark.parametrize("resolver", RESOLVERS)
def test_agent_validates(collector_bin, stack, resolver):
    proc = stack.run_validate(collector_bin, stack.AGENT_CONFIG, {"OTEL_HCV_GATEWAY_RESOLVER": resolver})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gateway_validates(collector_bin, stack):
    proc = stack.run_validate(collector_bin, stack.GATEWAY_CONFIG)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_agent_validate_rejects_unknown_resolver(collector_bin, stack):
    proc = stack.run_validate(collector_bin, stack.AGENT_CONFIG, {"OTEL_HCV_GATEWAY_RESOLVER": "k8s"})
    assert proc.returncode != 0
    assert "load_balancing/k8s" in proc.stdout + proc.stderr


def test_gateway_validate_rejects_bad_sampling_percentage(collector_bin, stack):
    # Proves the env var reaches the typed field: a non-number is refused.
    proc = stack.run_validate(collector_bin, stack.GATEWAY_CONFIG, {"OTEL_HCV_SAMPLING_PERCENTAGE": "ten"})
    assert proc.returncode != 0


# --------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["agent", "gateway"])
def test_every_defined_component_is_used(stack, agent_config, gateway_config, name):
    cfg = agent_config if name == "agent" else gateway_config
    resolvers = RESOLVERS if name == "agent" else ("static",)
    stack.assert_every_component_used(cfg, [{RESOLVER_SLOT: f"load_balancing/{r}"} for r in resolvers], name)


def test_scrub_is_identical_everywhere(collector_config, agent_config, gateway_config):
    scrub = collector_config["processors"]["transform/scrub"]
    assert agent_config["processors"]["transform/scrub"] == scrub
    assert gateway_config["processors"]["transform/scrub"] == scrub
    for name, cfg in (("agent", agent_config), ("gateway", gateway_config)):
        for signal, pipe in cfg["service"]["pipelines"].items():
            if "otlp" in pipe["receivers"]:
                procs = pipe["processors"]
                assert procs[0] == "memory_limiter", (name, signal)
                assert "transform/scrub" in procs, (name, signal)


def test_agent_pipelines(agent_config):
    pipes = agent_config["service"]["pipelines"]
    assert set(pipes) == {"traces", "metrics", "logs"}
    for signal, pipe in pipes.items():
        assert pipe["receivers"] == ["otlp"]
        assert pipe["processors"] == ["memory_limiter", "resource_detection", "transform/scrub", "batch"], signal
    assert pipes["traces"]["exporters"] == [RESOLVER_SLOT]
    # Metrics and logs: the simple path, no trace affinity.
    assert pipes["metrics"]["exporters"] == pipes["logs"]["exporters"] == ["otlp_http/gateway"]
    detection = agent_config["processors"]["resource_detection"]
    assert set(detection["detectors"]) == {"env", "system"}
    assert detection["override"] is False
    assert detection["system"]["hostname_sources"] == ["os"]


def test_agent_load_balancing(agent_config, stack):
    static = agent_config["exporters"]["load_balancing/static"]
    dns = agent_config["exporters"]["load_balancing/dns"]
    for lb in (static, dns):
        assert lb["routing_key"] == "traceID"
        # Retries at the load-balancing level re-route through the current ring ...
        assert lb["retry_on_failure"]["enabled"] is True and lb["sending_queue"]["enabled"] is True
        # ... so the per-gateway exporters must hand failures back instead of queueing them.
        otlp = lb["protocol"]["otlp"]
        assert otlp["retry_on_failure"]["enabled"] is False
        assert otlp["sending_queue"]["enabled"] is False
        assert otlp["tls"]["insecure"] is True
    assert {k: v for k, v in static.items() if k != "resolver"} == {k: v for k, v in dns.items() if k != "resolver"}
    assert set(static["resolver"]) == {"static"} and set(dns["resolver"]) == {"dns"}
    # Default static list: gateway-1 and gateway-2 of `scripts/stack.sh start-tier`.
    hostnames = defaults(stack, static["resolver"]["static"]["hostnames"])
    assert hostnames == f"[127.0.0.1:{tier_port(1, 'otlp_grpc')}, 127.0.0.1:{tier_port(2, 'otlp_grpc')}]"
    dns_cfg = dns["resolver"]["dns"]
    for key in ("hostname", "port", "interval"):
        assert "${env:OTEL_HCV_GATEWAYS_DNS_" in str(dns_cfg[key]), key


def test_gateway_span_metrics_before_sampling(collector_config, gateway_config):
    """span_metrics sees every span; tail_sampling only sits in the pipeline behind the forward connector."""
    pipes = gateway_config["service"]["pipelines"]
    receiving = pipes["traces"]
    assert receiving["receivers"] == ["otlp"]
    assert "tail_sampling" not in receiving["processors"]
    assert set(receiving["exporters"]) == {"span_metrics", "forward/sampling"}
    sampling = pipes["traces/sampling"]
    assert sampling["receivers"] == ["forward/sampling"]
    assert sampling["processors"] == ["tail_sampling", "batch"]
    assert sampling["exporters"] == ["otlp_http/jaeger"]
    assert [n for n, p in pipes.items() if "tail_sampling" in p.get("processors", [])] == ["traces/sampling"]
    assert pipes["metrics"]["receivers"] == ["otlp", "span_metrics"]
    assert pipes["metrics"]["exporters"] == ["prometheus"]
    assert pipes["logs"]["exporters"] == ["file/sink"]
    # Same span metrics as the single collector: the same series names and labels.
    assert gateway_config["connectors"]["span_metrics"] == collector_config["connectors"]["span_metrics"]


def test_gateway_sampling_policies(gateway_config, stack):
    ts = gateway_config["processors"]["tail_sampling"]
    policies = {p["name"]: p for p in ts["policies"]}
    assert set(policies) == {"errors", "slow", "baseline"}
    assert policies["errors"]["type"] == "status_code"
    assert policies["errors"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["slow"]["type"] == "latency"
    assert defaults(stack, policies["slow"]["latency"]["threshold_ms"]) == "1000"
    assert "OTEL_HCV_SAMPLING_LATENCY_THRESHOLD_MS" in policies["slow"]["latency"]["threshold_ms"]
    assert policies["baseline"]["type"] == "probabilistic"
    assert "OTEL_HCV_SAMPLING_PERCENTAGE" in policies["baseline"]["probabilistic"]["sampling_percentage"]
    assert defaults(stack, ts["decision_wait"]) == "10s"
    # No policy may sample "everything else": any extra sample decision would break the share.
    assert not {p["type"] for p in ts["policies"]} & {"always_sample", "and", "composite", "not"}


def test_gateway_names_itself(gateway_config):
    name_ref = "${env:OTEL_HCV_GATEWAY_NAME:-gateway-1}"
    (action,) = gateway_config["processors"]["resource/gateway"]["attributes"]
    assert action == {"key": "hcv.collector.gateway", "value": name_ref, "action": "upsert"}
    assert gateway_config["service"]["pipelines"]["traces"]["processors"][-1] == "resource/gateway"
    prometheus = gateway_config["exporters"]["prometheus"]
    assert prometheus["const_labels"] == {"hcv_collector_gateway": name_ref}
    assert prometheus["resource_to_telemetry_conversion"]["enabled"] is False


@pytest.mark.parametrize("path_attr", ["AGENT_CONFIG", "GATEWAY_CONFIG"])
def test_every_address_comes_from_env(stack, path_attr):
    text = getattr(stack, path_attr).read_text()
    for m in re.finditer(r"^\s*(endpoint|host|path|port|hostname|hostnames|limit_mib):\s*(.+)$", text, re.M):
        value = m.group(2)
        assert "${env:" in value and ":-" in value, f"hard-coded {m.group(1)}: {value}"


def _tier_ports(stack, cfg: dict) -> dict[str, int]:
    out = {}
    protocols = cfg["receivers"]["otlp"]["protocols"]
    out["grpc"] = int(defaults(stack, protocols["grpc"]["endpoint"]).rsplit(":", 1)[1])
    out["http"] = int(defaults(stack, protocols["http"]["endpoint"]).rsplit(":", 1)[1])
    out["health"] = int(defaults(stack, cfg["extensions"]["health_check"]["endpoint"]).rsplit(":", 1)[1])
    reader = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    out["telemetry"] = int(defaults(stack, reader["port"]))
    if "prometheus" in cfg.get("exporters", {}):
        out["prometheus"] = int(defaults(stack, cfg["exporters"]["prometheus"]["endpoint"]).rsplit(":", 1)[1])
    return out


def test_default_ports_follow_the_stack_script(stack, agent_config, gateway_config):
    """Defaults = agent and gateway-1 of `start-tier`; nothing collides with the default stack."""
    role = {"grpc": "otlp_grpc", "http": "otlp_http", "health": "health", "telemetry": "own_metrics",
            "prometheus": "prometheus"}  # fmt: skip
    agent = _tier_ports(stack, agent_config)
    gateway = _tier_ports(stack, gateway_config)
    assert agent == {k: tier_port(0, role[k]) for k in agent}
    assert gateway == {k: tier_port(1, role[k]) for k in gateway}
    assert set(gateway) == set(role)
    assert set(role.values()) == set(TIER_ROLES)
    all_tier = {tier_port(k, r) for k in range(MAX_GATEWAYS + 1) for r in TIER_ROLES}
    assert len(all_tier) == (MAX_GATEWAYS + 1) * len(TIER_ROLES)
    assert not all_tier & STACK_PORTS
    assert all(p < 32768 for p in all_tier), "stay below the ephemeral port range"
    # Metrics and logs of the loopback tier go to gateway-1's OTLP/HTTP port.
    endpoint = defaults(stack, agent_config["exporters"]["otlp_http/gateway"]["endpoint"])
    assert endpoint == f"http://127.0.0.1:{tier_port(1, 'otlp_http')}"


def test_prometheus_scrapes_the_tier(stack):
    cfg = stack.load_yaml(stack.PROM_DIR / "prometheus.yml")
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    targets = {name: [t for sc in j["static_configs"] for t in sc["targets"]] for name, j in jobs.items()}
    gateways = range(1, MAX_GATEWAYS + 1)
    assert targets["otel-gateway-exporter"] == [f"127.0.0.1:{tier_port(i, 'prometheus')}" for i in gateways]
    assert jobs["otel-gateway-exporter"]["honor_labels"] is True
    assert targets["otel-tier"] == [f"127.0.0.1:{tier_port(k, 'own_metrics')}" for k in range(MAX_GATEWAYS + 1)]
    # Not under job="otel-collector": the single collector's "down" alert must not fire for the tier.
    assert not {t for t in targets["otel-collector"]} & set(targets["otel-tier"])


# --------------------------------------------------------------------------
# The real binary: one agent, two gateways, a recording stand-in for Jaeger
# --------------------------------------------------------------------------
def _span(trace_id: str, span_id: str, name: str, start: int, end: int, error: bool, parent: str = "") -> dict:
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 2 if not parent else 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [{"key": "http.route", "value": {"stringValue": "/api/diagnose/"}}] if not parent else [],
    }
    if parent:
        span["parentSpanId"] = parent
    if error:
        span["status"] = {"code": 2}
    return span


def test_tier_samples_by_outcome_and_counts_every_span(collector_bin, stack, tmp_path):
    jaeger = OtlpReceiver().__enter__()
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "OTEL_COLLECTOR_BIND": "127.0.0.1"}
    procs: list[subprocess.Popen] = []
    gateways = []
    try:
        for i in (1, 2):
            ports = {k: stack.free_port() for k in ("grpc", "http", "health", "prom", "telemetry")}
            env = {
                **base,
                "OTEL_HCV_GATEWAY_NAME": f"gw-{i}",
                "OTEL_HCV_OTLP_GRPC_PORT": str(ports["grpc"]),
                "OTEL_HCV_OTLP_HTTP_PORT": str(ports["http"]),
                "OTEL_HCV_HEALTH_PORT": str(ports["health"]),
                "OTEL_HCV_PROMETHEUS_PORT": str(ports["prom"]),
                "OTEL_HCV_TELEMETRY_PORT": str(ports["telemetry"]),
                "JAEGER_OTLP_ENDPOINT": jaeger.endpoint,
                "OTEL_HCV_LOG_SINK": str(tmp_path / f"gw-{i}.jsonl"),
                "OTEL_HCV_SAMPLING_PERCENTAGE": "0",
                "OTEL_HCV_SAMPLING_LATENCY_THRESHOLD_MS": "1000",
                "OTEL_HCV_SAMPLING_DECISION_WAIT": "1s",
            }
            out = open(tmp_path / f"gw-{i}.out", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen([str(collector_bin), "--config", str(stack.GATEWAY_CONFIG)], stdout=out,
                                          stderr=subprocess.STDOUT, env=env))  # fmt: skip
            gateways.append(ports)
        agent_ports = {k: stack.free_port() for k in ("grpc", "http", "health", "telemetry")}
        env = {
            **base,
            "OTEL_HCV_OTLP_GRPC_PORT": str(agent_ports["grpc"]),
            "OTEL_HCV_OTLP_HTTP_PORT": str(agent_ports["http"]),
            "OTEL_HCV_HEALTH_PORT": str(agent_ports["health"]),
            "OTEL_HCV_TELEMETRY_PORT": str(agent_ports["telemetry"]),
            "OTEL_HCV_GATEWAYS": "[" + ", ".join(f"127.0.0.1:{g['grpc']}" for g in gateways) + "]",
            "OTEL_HCV_GATEWAY_OTLP_ENDPOINT": f"http://127.0.0.1:{gateways[0]['http']}",
        }
        out = open(tmp_path / "agent.out", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([str(collector_bin), "--config", str(stack.AGENT_CONFIG)], stdout=out,
                                      stderr=subprocess.STDOUT, env=env))  # fmt: skip
        for url in [f"http://127.0.0.1:{g['health']}/" for g in gateways] + [
            f"http://127.0.0.1:{agent_ports['health']}/"
        ]:
            assert stack.wait_http_ok(url, timeout=30), url

        # 30 traces of 2 spans: 10 with an error in the child, 10 slow (1.5 s), 10 normal (10 ms).
        now = time.time_ns()
        kinds = {}
        spans = []
        for n in range(30):
            trace_id = f"{n + 1:032x}"
            kind = ("error", "slow", "normal")[n % 3]
            kinds[trace_id] = kind
            duration = 1_500_000_000 if kind == "slow" else 10_000_000
            spans.append(_span(trace_id, f"{2 * n + 1:016x}", "POST /api/diagnose/", now - duration, now, False))
            spans.append(
                _span(trace_id, f"{2 * n + 2:016x}", "db", now - duration, now - 1000, kind == "error",
                      parent=f"{2 * n + 1:016x}")
            )  # fmt: skip
        payload = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tier-config-test"}}]},
                    "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}],
                }
            ]
        }
        assert stack.post_json(f"http://127.0.0.1:{agent_ports['http']}/v1/traces", payload)[0] == 200

        def exported() -> dict[str, dict]:
            traces: dict[str, dict] = {}
            with jaeger.lock:
                requests = list(jaeger.requests["traces"])
            for request in requests:
                for rs in request.resource_spans:
                    attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            t = traces.setdefault(s.trace_id.hex(), {"spans": set(), "gateways": set()})
                            t["spans"].add(s.span_id.hex())
                            t["gateways"].add(attrs.get("hcv.collector.gateway"))
            return traces

        wanted = {t for t, k in kinds.items() if k != "normal"}
        assert stack.wait_for(lambda: wanted <= set(exported()), timeout=30), (tmp_path / "agent.out").read_text()
        time.sleep(2)  # the normal traces' decisions are due too
        traces = exported()

        def server_calls() -> float:
            total = 0.0
            for g in gateways:
                with urllib.request.urlopen(f"http://127.0.0.1:{g['prom']}/metrics", timeout=5) as resp:
                    for line in resp.read().decode().splitlines():
                        if line.startswith("traces_span_metrics_calls_total{") and "SPAN_KIND_SERVER" in line:
                            total += float(line.rsplit(" ", 1)[1])
            return total

        # The span metrics connector flushes every 5 s; on a loaded machine the gateways can take
        # several flushes to count everything. The last count read is kept for the message.
        counted: list[float] = []

        def all_counted() -> bool:
            counted.append(server_calls())
            return counted[-1] == 30

        calls = 30 if stack.wait_for(all_counted, timeout=45, interval=0.5) else counted[-1]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        jaeger.__exit__(None, None, None)

    assert set(traces) == wanted, "only error and slow traces are kept at 0 % baseline sampling"
    for trace_id, t in traces.items():
        assert len(t["spans"]) == 2, trace_id
        assert len(t["gateways"]) == 1 and t["gateways"] <= {"gw-1", "gw-2"}, t
    # Span metrics count every request, kept or not.
    assert calls == 30, f"the gateways' span metrics counted {calls} server calls"
