"""The agent/gateway tier with the real collector binary on loopback, into the stack's Jaeger
and Prometheus (collector/agent.yaml, collector/gateway.yaml, docs/operations.md).

* ``healthy_run``: ``scripts/stack.sh start-tier 2`` (one agent, two gateways, static
  resolver), a few thousand synthetic traces with errors and slow ones; every trace in
  Jaeger is whole and from one gateway, every error and slow trace is kept, the kept
  share of the rest matches the configured percentage, and the span-metric counts in
  Prometheus equal what was sent.
* ``failover_run``: one agent with the DNS resolver and two gateways on 127.0.0.2 and
  127.0.0.3; one gateway is killed mid-run. The agent must move its traces to the
  survivor; the loss is bounded and printed.

Each run uses its own service.name, so only its own traces are counted in the shared Jaeger.
"""

from __future__ import annotations

import math
import os
import random
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.stackctl.components import tier_port
from tests.support.backends import log_sink_records
from tests.support.service import free_port, post_json
from tests.tier.helpers import (
    AGENT_CONFIG,
    GATEWAY_CONFIG,
    Backends,
    StoredTrace,
    http_ok,
    metric_sum,
    port_free,
    processes,
    prometheus_scrape_urls,
    scrape,
    stack_sh,
    stored_traces,
    wait_healthy,
    wait_until_stable,
)
from tests.tier.traffic import SPANS_PER_TRACE, OtlpHttpSender, Trace, make_traces, requests_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Healthy run: configuration handed to the gateways and the traffic sent.
SAMPLING_PERCENTAGE = 20.0
LATENCY_THRESHOLD_MS = 1000
DECISION_WAIT_S = 3
N_TRACES = 3000
ERROR_SHARE = SLOW_SHARE = 0.08
SLOW_MS = 1500
# Binomial tolerance on the kept share of the normal traces: Z standard deviations.
Z = 4.0

AGENT_OTLP_HTTP = f"http://127.0.0.1:{tier_port('agent', 'otlp_http')}"
PROBE_VALUE = 7


def report(text: str) -> None:
    """Figures for the log of the test run (shown with -s, and in the CI output)."""
    print(f"\n[tier] {text}", flush=True)


# --------------------------------------------------------------------------
# Healthy run: scripts/stack.sh start-tier 2
# --------------------------------------------------------------------------
@dataclass
class HealthyRun:
    service: str
    traces: list[Trace]
    stored: dict[str, StoredTrace]
    span_metrics: dict[str, float]
    send_seconds: float
    gateway_telemetry: dict[str, dict[str, float]] = field(default_factory=dict)
    probe_metric: list[dict] = field(default_factory=list)
    probe_logs: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def healthy_run(backends: Backends, collector_bin) -> HealthyRun:
    scraped = prometheus_scrape_urls(backends.prometheus, "otel-gateway-exporter")
    wanted = {f"http://127.0.0.1:{tier_port(i, 'prometheus')}/metrics" for i in (1, 2)}
    if not wanted <= scraped:
        pytest.fail(
            "Prometheus does not scrape the tier's gateways (it was started with an older "
            "prometheus/prometheus.yml): scripts/stack.sh restart prometheus"
        )
    status = stack_sh("status-tier")
    if " running " in status.stdout:
        pytest.fail("an agent/gateway tier is already running: scripts/stack.sh stop-tier first\n" + status.stdout)
    busy = [p for p in (tier_port(k, "otlp_grpc") for k in (0, 1, 2)) if not port_free("127.0.0.1", p)]
    if busy:
        pytest.fail(f"tier ports already in use by another process: {busy}")

    service = f"hcv-tier-{secrets.token_hex(3)}"
    env = {
        **os.environ,
        "OTEL_HCV_SAMPLING_PERCENTAGE": str(SAMPLING_PERCENTAGE),
        "OTEL_HCV_SAMPLING_LATENCY_THRESHOLD_MS": str(LATENCY_THRESHOLD_MS),
        "OTEL_HCV_SAMPLING_DECISION_WAIT": f"{DECISION_WAIT_S}s",
    }
    rng = random.Random(secrets.randbits(64))
    traces = make_traces(N_TRACES, rng, error_share=ERROR_SHARE, slow_share=SLOW_SHARE, slow_ms=SLOW_MS)
    try:
        started = stack_sh("start-tier", "2", env=env)
        assert started.returncode == 0, started.stdout + started.stderr

        # Metrics and logs: the simple path (agent -> gateway-1 -> prometheus exporter / log sink).
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        now = str(time.time_ns())
        point = {"asInt": str(PROBE_VALUE), "startTimeUnixNano": now, "timeUnixNano": now}
        metric = {"name": "hcv.tier.probe", "sum": {"aggregationTemporality": 2, "isMonotonic": True,
                                                    "dataPoints": [point]}}  # fmt: skip
        assert post_json(f"{AGENT_OTLP_HTTP}/v1/metrics", {"resourceMetrics": [
            {"resource": resource, "scopeMetrics": [{"metrics": [metric]}]}]})[0] == 200  # fmt: skip
        record = {"timeUnixNano": now, "body": {"stringValue": f"tier probe {service}"}}
        assert post_json(f"{AGENT_OTLP_HTTP}/v1/logs", {"resourceLogs": [
            {"resource": resource, "scopeLogs": [{"logRecords": [record]}]}]})[0] == 200  # fmt: skip

        sender = OtlpHttpSender(AGENT_OTLP_HTTP)
        t0 = time.monotonic()
        for payload, _ in requests_for(traces, service):
            sender.send(payload)
        send_seconds = time.monotonic() - t0
        sender.close()
        report(
            f"healthy run: sent {len(traces)} traces ({len(traces) * SPANS_PER_TRACE} spans, "
            f"{sender.requests} requests) in {send_seconds:.1f}s, service.name={service}"
        )

        must_keep = sum(t.kind != "normal" for t in traces)
        time.sleep(DECISION_WAIT_S + 1)
        stored = wait_until_stable(
            lambda: stored_traces(backends.jaeger, service), at_least=must_keep, timeout=60, interval=2
        )

        # Span metrics: the gateways flush every 5 s, Prometheus scrapes every 5 s.
        queries = {
            "server": f'sum(traces_span_metrics_calls_total{{service_name="{service}",span_kind="SPAN_KIND_SERVER"}})',
            "all": f'sum(traces_span_metrics_calls_total{{service_name="{service}"}})',
            "errors": (
                f'sum(traces_span_metrics_calls_total{{service_name="{service}",status_code="STATUS_CODE_ERROR"}})'
            ),
        }
        span_metrics: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            span_metrics = {k: backends.prometheus.value(q) or 0.0 for k, q in queries.items()}
            if span_metrics["server"] >= len(traces) and span_metrics["all"] >= len(traces) * SPANS_PER_TRACE:
                break
            time.sleep(2)
        by_gateway = backends.prometheus.query(
            f'sum by (hcv_collector_gateway) (traces_span_metrics_calls_total{{service_name="{service}",'
            'span_kind="SPAN_KIND_SERVER"})'
        )
        for row in by_gateway:
            span_metrics[f"server@{row['metric'].get('hcv_collector_gateway', '')}"] = float(row["value"][1])

        probe_metric = backends.prometheus.query(f'hcv_tier_probe_total{{job="{service}"}}')
        sink = Path(os.environ.get("OTEL_HCV_STATE", "/tmp/otel-hcv-stack")) / "tier" / "gateway-1" / "logs.jsonl"
        probe_logs = [r for r in log_sink_records(sink) if r["body"].get("stringValue") == f"tier probe {service}"]
        telemetry = {f"gateway-{i}": scrape(f"http://127.0.0.1:{tier_port(i, 'own_metrics')}/metrics") for i in (1, 2)}
        telemetry["agent"] = scrape(f"http://127.0.0.1:{tier_port('agent', 'own_metrics')}/metrics")
    finally:
        stopped = stack_sh("stop-tier")
        assert stopped.returncode == 0, stopped.stderr
    return HealthyRun(service, traces, stored, span_metrics, send_seconds, telemetry, probe_metric, probe_logs)


def test_every_stored_trace_is_whole_and_from_one_gateway(healthy_run: HealthyRun):
    sent = {t.hex_id: t for t in healthy_run.traces}
    stored = healthy_run.stored
    assert stored, "no trace of this run reached Jaeger"
    assert set(stored) <= set(sent), "Jaeger holds traces of this service that were never sent"
    incomplete = {
        tid: (sorted(st.span_ids), sorted(sent[tid].hex_span_ids))
        for tid, st in stored.items()
        if sorted(st.span_ids) != sorted(sent[tid].hex_span_ids)
    }
    assert not incomplete, f"{len(incomplete)} traces not stored exactly whole, e.g. {next(iter(incomplete.items()))}"
    mixed = {tid: st.gateways for tid, st in stored.items() if len(st.gateways) != 1}
    assert not mixed, f"{len(mixed)} traces handled by more than one gateway: {list(mixed.items())[:3]}"
    per_gateway: dict[str, int] = {}
    for st in stored.values():
        (gateway,) = st.gateways
        per_gateway[gateway] = per_gateway.get(gateway, 0) + 1
    report(f"healthy run: kept traces per gateway {dict(sorted(per_gateway.items()))}")
    assert set(per_gateway) == {"gateway-1", "gateway-2"}
    # Trace-id hashing spreads the traces: neither gateway gets less than a third.
    assert min(per_gateway.values()) > len(stored) / 3


def test_agent_adds_host_attributes(healthy_run: HealthyRun):
    tags = next(iter(healthy_run.stored.values())).process_tags
    assert tags.get("host.name"), tags
    assert tags.get("os.type") == "linux", tags
    assert tags.get("service.instance.id") == "tier-test-1", "the service's own attributes win"


def test_every_error_and_every_slow_trace_is_kept(healthy_run: HealthyRun):
    for kind in ("error", "slow"):
        sent = [t.hex_id for t in healthy_run.traces if t.kind == kind]
        missing = [tid for tid in sent if tid not in healthy_run.stored]
        report(f"healthy run: {kind} traces sent {len(sent)}, kept {len(sent) - len(missing)}")
        assert not missing, f"{len(missing)} of {len(sent)} {kind} traces were dropped, e.g. {missing[:3]}"


def test_kept_share_of_the_rest_matches_the_configured_percentage(healthy_run: HealthyRun):
    normal = [t.hex_id for t in healthy_run.traces if t.kind == "normal"]
    kept = sum(tid in healthy_run.stored for tid in normal)
    n, p = len(normal), SAMPLING_PERCENTAGE / 100
    share = kept / n
    # Random trace ids hash to independent uniform values, so the kept count is
    # Binomial(n, p): standard deviation sqrt(p(1-p)/n) on the share. Z = 4 standard
    # deviations: a correct configuration fails this about once in 16,000 runs.
    tolerance = Z * math.sqrt(p * (1 - p) / n)
    report(
        f"healthy run: normal traces sent {n}, kept {kept} = {share:.4f}; configured {p:.2f}, "
        f"tolerance +/-{tolerance:.4f} ({Z:g} sigma of Binomial({n}, {p}))"
    )
    assert abs(share - p) <= tolerance


def test_span_metric_counts_equal_the_requests_sent(healthy_run: HealthyRun):
    metrics = healthy_run.span_metrics
    traces = healthy_run.traces
    error_spans = sum(2 if t.trace_id[0] % 2 == 0 else 1 for t in traces if t.kind == "error")
    report(
        f"healthy run: span metrics in Prometheus: server spans {metrics.get('server')} (sent {len(traces)}), "
        f"all spans {metrics.get('all')} (sent {len(traces) * SPANS_PER_TRACE}), error spans {metrics.get('errors')} "
        f"(sent {error_spans}); per gateway "
        f"{ {k: v for k, v in metrics.items() if k.startswith('server@')} }"
    )
    # Counted before sampling: every request, not only the kept traces.
    assert metrics["server"] == len(traces)
    assert metrics["all"] == len(traces) * SPANS_PER_TRACE
    assert metrics["errors"] == error_spans
    assert metrics.get("server@gateway-1", 0) > 0 and metrics.get("server@gateway-2", 0) > 0


def test_metrics_and_logs_take_the_simple_path(healthy_run: HealthyRun):
    """No trace affinity: the agent sends them to one gateway (gateway-1 on loopback)."""
    (series,) = healthy_run.probe_metric
    assert float(series["value"][1]) == PROBE_VALUE
    assert series["metric"]["hcv_collector_gateway"] == "gateway-1"
    (record,) = healthy_run.probe_logs
    assert record["resource"]["host.name"]["stringValue"], "the agent adds host attributes to logs too"


def test_gateways_tail_sampled_without_loss(healthy_run: HealthyRun):
    """The tier's own telemetry: nothing refused, nothing dropped for lack of memory."""
    for name, samples in healthy_run.gateway_telemetry.items():
        assert metric_sum(samples, "otelcol_receiver_refused_spans") == 0, name
        assert metric_sum(samples, "otelcol_exporter_send_failed_spans") == 0, name
        if name.startswith("gateway"):
            assert metric_sum(samples, "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early") == 0
    agent = healthy_run.gateway_telemetry["agent"]
    assert metric_sum(agent, "otelcol_loadbalancer_num_backends") == 2
    accepted = sum(
        metric_sum(s, "otelcol_receiver_accepted_spans", receiver="otlp")
        for n, s in healthy_run.gateway_telemetry.items()
        if n.startswith("gateway")
    )
    assert accepted == len(healthy_run.traces) * SPANS_PER_TRACE


# --------------------------------------------------------------------------
# Failover: DNS resolver, one gateway killed mid-run
# --------------------------------------------------------------------------
FAILOVER_RATE = 150  # traces per second, offered at a steady pace
FAILOVER_SECONDS = 16
KILL_AFTER_S = 5
FAILOVER_DECISION_WAIT_S = 2
GATEWAY_IPS = {"gateway-a": "127.0.0.2", "gateway-b": "127.0.0.3"}
DNS_NAME = "otel-hcv-gateways.tier.test"


def _private_hosts_argv(hosts_file: Path, argv: list[str]) -> list[str]:
    """Run argv in a private mount namespace where /etc/hosts is hosts_file.

    This stands in for DNS that tracks readiness (a Kubernetes headless Service): the
    agent's Go resolver reads /etc/hosts first, and the test rewrites the file when a
    gateway's health check fails. Only the agent sees the file.
    """
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    return [*unshare, "--", "/bin/sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_file), *argv]


def _check_failover_prerequisites(tmp: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot give the agent a private /etc/hosts")
    probe = tmp / "hosts.probe"
    probe.write_text("127.0.0.9 probe.tier.test\n")
    proc = subprocess.run(_private_hosts_argv(probe, ["cat", "/etc/hosts"]), capture_output=True, text=True, timeout=20)
    if proc.returncode != 0 or "probe.tier.test" not in proc.stdout:
        pytest.skip(f"no private mount namespace here (unshare: {proc.stderr.strip()[:200]})")
    for ip in GATEWAY_IPS.values():
        if not port_free(ip, 0):
            pytest.skip(f"cannot bind loopback address {ip}")


@dataclass
class FailoverRun:
    service: str
    traces: list[Trace]
    stored: dict[str, StoredTrace]
    kill_at: float  # monotonic time of the kill
    hosts_updated_at: float | None
    ring_updated_at: float | None
    rate: float  # traces per second actually sent
    agent_telemetry: dict[str, float]
    survivor: str = "gateway-a"
    victim: str = "gateway-b"


class HostsDiscovery(threading.Thread):
    """Keeps the agent's hosts file listing the gateways whose health check answers."""

    def __init__(self, hosts_file: Path, health_urls: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.hosts_file = hosts_file
        self.health_urls = health_urls
        self.stop = threading.Event()
        self.listed = set(health_urls)
        self.changed_at: float | None = None
        self.write(self.listed)

    def write(self, names: set[str]) -> None:
        lines = ["127.0.0.1 localhost"] + [f"{GATEWAY_IPS[n]} {DNS_NAME}" for n in sorted(names)]
        # In place (same inode): the file is bind-mounted over the agent's /etc/hosts.
        with open(self.hosts_file, "r+" if self.hosts_file.exists() else "w") as fh:
            fh.seek(0)
            fh.write("\n".join(lines) + "\n")
            fh.truncate()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            healthy = {n for n, url in self.health_urls.items() if http_ok(url, timeout=0.5)}
            if healthy and healthy != self.listed:
                self.write(healthy)
                self.listed = healthy
                self.changed_at = time.monotonic()


@pytest.fixture(scope="module")
def failover_run(backends: Backends, collector_bin, tmp_path_factory) -> FailoverRun:
    tmp = tmp_path_factory.mktemp("failover")
    _check_failover_prerequisites(tmp)
    service = f"hcv-tier-failover-{secrets.token_hex(3)}"
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    grpc_port = next(p for p in iter(free_port, None) if all(port_free(ip, p) for ip in GATEWAY_IPS.values()))
    health: dict[str, str] = {}
    hosts_file = tmp / "hosts"
    with processes(tmp) as procs:
        for name, ip in GATEWAY_IPS.items():
            ports = {k: free_port(ip) for k in ("http", "health", "prom", "telemetry")}
            env = {
                **base_env,
                "OTEL_COLLECTOR_BIND": ip,
                "OTEL_HCV_GATEWAY_NAME": name,
                "OTEL_HCV_OTLP_GRPC_PORT": str(grpc_port),
                "OTEL_HCV_OTLP_HTTP_PORT": str(ports["http"]),
                "OTEL_HCV_HEALTH_PORT": str(ports["health"]),
                "OTEL_HCV_PROMETHEUS_PORT": str(ports["prom"]),
                "OTEL_HCV_TELEMETRY_PORT": str(ports["telemetry"]),
                "JAEGER_OTLP_ENDPOINT": backends.jaeger_otlp_http,
                "OTEL_HCV_LOG_SINK": str(tmp / f"{name}-logs.jsonl"),
                "OTEL_HCV_SAMPLING_PERCENTAGE": "100",  # keep everything: every loss shows
                "OTEL_HCV_SAMPLING_DECISION_WAIT": f"{FAILOVER_DECISION_WAIT_S}s",
            }
            proc = procs.start(name, [str(collector_bin), "--config", str(GATEWAY_CONFIG)], env)
            health[name] = f"http://{ip}:{ports['health']}/"
            if not wait_healthy(health[name], proc):
                pytest.fail(f"{name} did not become healthy:\n{procs.output(name)[-3000:]}")

        discovery = HostsDiscovery(hosts_file, health)
        agent_ports = {k: free_port() for k in ("grpc", "http", "health", "telemetry")}
        agent_env = {
            **base_env,
            "OTEL_COLLECTOR_BIND": "127.0.0.1",
            "OTEL_HCV_OTLP_GRPC_PORT": str(agent_ports["grpc"]),
            "OTEL_HCV_OTLP_HTTP_PORT": str(agent_ports["http"]),
            "OTEL_HCV_HEALTH_PORT": str(agent_ports["health"]),
            "OTEL_HCV_TELEMETRY_PORT": str(agent_ports["telemetry"]),
            "OTEL_HCV_GATEWAY_RESOLVER": "dns",
            "OTEL_HCV_GATEWAYS_DNS_NAME": DNS_NAME,
            "OTEL_HCV_GATEWAYS_DNS_PORT": str(grpc_port),
            "OTEL_HCV_GATEWAYS_DNS_INTERVAL": "1s",
            "OTEL_HCV_GATEWAY_OTLP_ENDPOINT": f"http://{GATEWAY_IPS['gateway-a']}:1",  # metrics/logs unused here
        }
        agent = procs.start(
            "agent", _private_hosts_argv(hosts_file, [str(collector_bin), "--config", str(AGENT_CONFIG)]), agent_env
        )
        if not wait_healthy(f"http://127.0.0.1:{agent_ports['health']}/", agent):
            pytest.fail(f"agent did not become healthy:\n{procs.output('agent')[-3000:]}")
        telemetry_url = f"http://127.0.0.1:{agent_ports['telemetry']}/metrics"

        def num_backends() -> float:
            return metric_sum(scrape(telemetry_url), "otelcol_loadbalancer_num_backends", resolver="dns")

        deadline = time.monotonic() + 15
        while num_backends() != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert num_backends() == 2, "the agent did not resolve both gateways:\n" + procs.output("agent")[-3000:]

        discovery.start()
        rng = random.Random(secrets.randbits(64))
        traces = make_traces(FAILOVER_RATE * FAILOVER_SECONDS, rng, error_share=0.0, slow_share=0.0)
        sender = OtlpHttpSender(f"http://127.0.0.1:{agent_ports['http']}")
        group = FAILOVER_RATE // 10
        t0 = time.monotonic()
        kill_at = ring_updated_at = None
        try:
            for i, (payload, done) in enumerate(requests_for(traces, service, group=group)):
                # Two requests (children, roots) per group of traces every 0.1 s.
                pause = t0 + (i // 2) * 0.1 - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                sender.send(payload)
                now = time.monotonic()
                for t in done:
                    t.sent_at = now
                if kill_at is None and now - t0 >= KILL_AFTER_S:
                    procs.kill("gateway-b")
                    kill_at = time.monotonic()
                if kill_at is not None and ring_updated_at is None and i % 5 == 0 and num_backends() == 1:
                    ring_updated_at = time.monotonic()
            rate = len(traces) / (time.monotonic() - t0)
            sender.close()
            while ring_updated_at is None and time.monotonic() < kill_at + 20:
                if num_backends() == 1:
                    ring_updated_at = time.monotonic()
                time.sleep(0.2)
            time.sleep(FAILOVER_DECISION_WAIT_S + 1)
            stored = wait_until_stable(
                lambda: stored_traces(backends.jaeger, service), at_least=1, timeout=60, interval=2, stable_rounds=3
            )
            agent_telemetry = scrape(telemetry_url)
        finally:
            discovery.stop.set()
        report(
            f"failover: sent {len(traces)} traces at {rate:.0f}/s, killed gateway-b {kill_at - t0:.1f}s in; "
            f"discovery dropped it {((discovery.changed_at or kill_at) - kill_at):.1f}s after the kill, "
            f"the agent's ring had 1 backend "
            f"{'never' if ring_updated_at is None else f'{ring_updated_at - kill_at:.1f}s after the kill'}; "
            f"agent sender retries {sender.retries}"
        )
    return FailoverRun(service, traces, stored, kill_at, discovery.changed_at, ring_updated_at, rate, agent_telemetry)


def test_failover_routes_to_the_survivor_and_bounds_the_loss(failover_run: FailoverRun):
    run = failover_run
    sent = {t.hex_id: t for t in run.traces}
    stored = run.stored
    assert set(stored) <= set(sent)
    complete = {tid for tid, st in stored.items() if set(st.span_ids) == sent[tid].hex_span_ids}
    partial = {tid for tid in stored if tid not in complete}
    missing = set(sent) - set(stored)
    duplicates = sum(len(st.span_ids) - len(set(st.span_ids)) for st in stored.values())
    lost = len(missing) + len(partial)

    assert run.ring_updated_at is not None, "the agent never dropped the dead gateway from its ring"
    # The victim's share of the ring, from traces it had decided and exported well before the kill.
    settled = [t for t in run.traces if t.sent_at < run.kill_at - FAILOVER_DECISION_WAIT_S - 1]
    victim_share = sum(run.victim in stored[t.hex_id].gateways for t in settled if t.hex_id in stored) / len(settled)
    after = [t for t in run.traces if t.sent_at > run.ring_updated_at + 1]
    report(
        f"failover: {len(sent)} traces sent, {len(complete)} complete in Jaeger, {len(partial)} partial, "
        f"{len(missing)} missing -> lost {lost} ({lost / len(sent):.2%}); duplicate spans visible in Jaeger "
        f"{duplicates}; {run.victim} had {victim_share:.0%} of the ring; {len(after)} traces sent after the "
        f"ring update"
    )
    # The agent gave nothing up: sends to the dead gateway failed and were retried.
    agent = run.agent_telemetry
    failed_sends = metric_sum(agent, "otelcol_loadbalancer_backend_outcome", success="false")
    report(
        f"failover: agent: {failed_sends:.0f} sends to a gateway failed and were retried; spans given up "
        f"{metric_sum(agent, 'otelcol_exporter_send_failed_spans'):.0f}, not queued "
        f"{metric_sum(agent, 'otelcol_exporter_enqueue_failed_spans'):.0f}"
    )
    assert failed_sends > 0
    assert metric_sum(agent, "otelcol_exporter_send_failed_spans") == 0
    assert metric_sum(agent, "otelcol_exporter_enqueue_failed_spans") == 0
    # Before the kill, both gateways shared the traffic (200 ring points each: roughly halves).
    assert 0.25 < victim_share < 0.75
    # After the agent re-resolved, everything goes to the survivor, whole.
    assert after, "no traffic after the ring update: lengthen FAILOVER_SECONDS"
    not_on_survivor = [
        t.hex_id for t in after if t.hex_id not in complete or stored[t.hex_id].gateways != {run.survivor}
    ]
    assert not not_on_survivor, f"{len(not_on_survivor)} traces sent after the failover are not whole on the survivor"
    # The loss: what the dead gateway held -- traces waiting for their sampling decision
    # (decision_wait) and decided ones in its batch/export queue -- plus traces split by
    # the kill. Batches that failed until the agent re-resolved are retried by the agent
    # and land on the survivor. Bound: the victim's share of decision_wait + 2 s of traffic.
    bound = run.rate * victim_share * (FAILOVER_DECISION_WAIT_S + 2)
    report(
        f"failover: loss bound {bound:.0f} traces (rate {run.rate:.0f}/s x victim share {victim_share:.2f} x "
        f"(decision_wait {FAILOVER_DECISION_WAIT_S} s + 2 s)); lost {lost}"
    )
    assert lost <= bound
