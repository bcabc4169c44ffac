"""Every component of the native stack as one record: what it listens on, how it is
recognised among the machine's processes, how its health is probed, how it is launched
and what the status table says about it.

Three groups: the stack (``start``), the agent/gateway tier (``start-tier``) and the
loopback clusters (``start-clusters``). Tests and the benchmark read ports, addresses and
the stack's environment from here instead of from the shell script.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

# Fixed ports (the configs in collector/, jaeger/ and prometheus/ use them).
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
COLLECTOR_PROM_PORT = 8889
COLLECTOR_METRICS_PORT = 8888
COLLECTOR_HEALTH_PORT = 13133
JAEGER_OTLP_GRPC_PORT = 14317
JAEGER_OTLP_HTTP_PORT = 14318
JAEGER_QUERY_PORT = 16686
JAEGER_HEALTH_PORT = 14133
PROMETHEUS_PORT = 9090
# VictoriaLogs: OTLP logs in, LogsQL queries and its web UI (/select/vmui/) out.
VICTORIALOGS_PORT = 9428
DEFAULT_PG_PORT = 55432
DEFAULT_REDIS_PORT = 56379

STACK_ORDER = ("postgres", "redis", "jaeger", "victorialogs", "collector", "prometheus")

# Agent/gateway tier. Member k -- agent k=0, gateway-i k=i -- uses the ports
# TIER_PORT_BASE + 100*k + a role's suffix; prometheus/prometheus.yml scrapes gateways
# 1..MAX_GATEWAYS.
TIER_PORT_BASE = 25000
MAX_GATEWAYS = 4
DEFAULT_GATEWAYS = 2
TIER_MODES = ("direct", "kafka")
TIER_ROLES = {"otlp_grpc": 17, "otlp_http": 18, "health": 33, "own_metrics": 88, "prometheus": 89}
GATEWAY_GROUP = "otel-hcv-gateways"  # the Kafka tier's consumer group (collector/kafka-gateway.yaml)

# Loopback clusters: Kafka member i listens on 29000 + 100*i + 92 (clients) and + 93
# (controllers); VictoriaMetrics node i on 28000 + 100*i + 28; vmauth on 28028, vmalert
# on 28088.
KAFKA_BROKERS = 3
VM_NODES = 2
VMAUTH_PORT = 28028
VMALERT_PORT = 28088
KAFKA_TOPICS = ("otlp_spans", "otlp_metrics", "otlp_logs")

COLLECTOR_CONFIG = ROOT / "collector" / "otel-config.yaml"
AGENT_CONFIG = ROOT / "collector" / "agent.yaml"
GATEWAY_CONFIG = ROOT / "collector" / "gateway.yaml"
KAFKA_AGENT_CONFIG = ROOT / "collector" / "kafka-agent.yaml"
KAFKA_GATEWAY_CONFIG = ROOT / "collector" / "kafka-gateway.yaml"
JAEGER_CONFIG = ROOT / "jaeger" / "config.yaml"
JAEGER_UI_CONFIG = ROOT / "jaeger" / "ui-config.json"
PROM_CONFIG = ROOT / "prometheus" / "prometheus.yml"
PROM_RULES = ROOT / "prometheus" / "rules.yml"
KAFKA_LOG4J = ROOT / "kafka" / "log4j2.properties"

# What scripts/stack.sh computes from its install versions and hands over in the
# environment: binary paths, Kafka's home, PostgreSQL's bin directory, the Jaeger UI.
BINARY_VARIABLES = {
    "collector": "_STACK_BIN_COLLECTOR",
    "kafka-collector": "_STACK_BIN_KAFKA_COLLECTOR",
    "jaeger": "_STACK_BIN_JAEGER",
    "victorialogs": "_STACK_BIN_VICTORIALOGS",
    "victoriametrics": "_STACK_BIN_VICTORIAMETRICS",
    "vmauth": "_STACK_BIN_VMAUTH",
    "vmalert": "_STACK_BIN_VMALERT",
    "kafka-home": "_STACK_KAFKA_HOME",
    "pg-bindir": "_STACK_PG_BINDIR",
    "jaeger-ui": "_STACK_JAEGER_UI",
}


@dataclass(frozen=True)
class Settings:
    """Where the stack keeps its state and which ports the configurable components use."""

    state: Path
    data: Path
    pg_port: int = DEFAULT_PG_PORT
    redis_port: int = DEFAULT_REDIS_PORT
    pg_os_user: str = "postgres"
    start_timeout: float = 60
    jaeger_storage: str = "badger"
    jaeger_retention: str = "72h"
    logs_retention: str = "7d"
    kafka_partitions: int = 6
    kafka_heap: str = "512m"
    binaries: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            return env.get(name) or default

        home = env.get("HOME") or str(Path.home())
        data_home = get("XDG_DATA_HOME", f"{home}/.local/share")
        return cls(
            state=Path(get("OTEL_HCV_STATE", "/tmp/otel-hcv-stack")),
            data=Path(get("OTEL_HCV_DATA", f"{data_home}/otel-hcv")),
            pg_port=int(get("OTEL_HCV_PG_PORT", str(DEFAULT_PG_PORT))),
            redis_port=int(get("OTEL_HCV_REDIS_PORT", str(DEFAULT_REDIS_PORT))),
            pg_os_user=get("OTEL_HCV_PG_OS_USER", "postgres"),
            start_timeout=float(get("OTEL_HCV_START_TIMEOUT", "60")),
            jaeger_storage=get("OTEL_HCV_JAEGER_STORAGE", "badger"),
            jaeger_retention=get("OTEL_HCV_JAEGER_RETENTION", "72h"),
            logs_retention=get("OTEL_HCV_LOGS_RETENTION", "7d"),
            kafka_partitions=int(get("OTEL_HCV_KAFKA_PARTITIONS", "6")),
            kafka_heap=get("OTEL_HCV_KAFKA_HEAP", "512m"),
            binaries={name: env.get(var, "") for name, var in BINARY_VARIABLES.items()},
        )

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def log_dir(self) -> Path:
        return self.state / "log"

    @property
    def log_sink(self) -> Path:
        return self.state / "collector" / "logs.jsonl"

    @property
    def pgdata(self) -> Path:
        return self.state / "postgres" / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.state / "postgres" / "socket"

    @property
    def clusters_dir(self) -> Path:
        return self.state / "clusters"

    def binary(self, name: str) -> str:
        return self.binaries.get(name, "")


# --------------------------------------------------------------------------
# Addresses shared with the tests and the benchmark
# --------------------------------------------------------------------------
def stack_env(settings: Settings | None = None) -> dict[str, str]:
    """The stack's addresses as ``scripts/stack.sh env`` exports them, in that order."""
    s = settings or Settings.from_environ()
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{OTLP_HTTP_PORT}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "HCV_DATABASE_URL": f"postgres://hcv:hcv@{HOST}:{s.pg_port}/hcv",
        "HCV_REDIS_URL": f"redis://{HOST}:{s.redis_port}/0",
        "JAEGER_QUERY_URL": f"http://{HOST}:{JAEGER_QUERY_PORT}",
        "PROMETHEUS_URL": f"http://{HOST}:{PROMETHEUS_PORT}",
        "VICTORIALOGS_URL": f"http://{HOST}:{VICTORIALOGS_PORT}",
        "COLLECTOR_LOG_SINK": str(s.log_sink),
        "OTEL_HCV_DATA": str(s.data),
    }


def tier_index(member: str) -> int:
    """k of a tier member: the agent 0, gateway-i i."""
    if member == "agent":
        return 0
    if member.startswith("gateway-"):
        return int(member.removeprefix("gateway-"))
    raise ValueError(f"not a tier member: {member}")


def tier_port(member: str | int, role: str) -> int:
    """Port of ``role`` (a TIER_ROLES key) of a tier member (a name or its k)."""
    k = member if isinstance(member, int) else tier_index(member)
    return TIER_PORT_BASE + 100 * k + TIER_ROLES[role]


def tier_members(gateways: int) -> list[str]:
    """Tier members in start order: gateway-1..gateway-N, then the agent."""
    return [f"gateway-{i}" for i in range(1, gateways + 1)] + ["agent"]


def kafka_port(broker: int, role: str) -> int:
    """Port of Kafka broker i: role "client" or "controller"."""
    return 29000 + 100 * broker + {"client": 92, "controller": 93}[role]


def vm_port(node: int) -> int:
    return 28000 + 100 * node + 28


def kafka_bootstrap() -> str:
    return ",".join(f"{HOST}:{kafka_port(i, 'client')}" for i in range(1, KAFKA_BROKERS + 1))


def vm_write_urls() -> list[str]:
    return [f"http://{HOST}:{vm_port(i)}/api/v1/write" for i in range(1, VM_NODES + 1)]


# --------------------------------------------------------------------------
# The records
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """One health check: ``http`` (a 2xx/3xx answer from ``target``, a URL), ``tcp`` (a
    connection to port ``target``), ``postgres`` (a query as hcv) or ``redis`` (PING)."""

    kind: str
    target: str = ""


@dataclass(frozen=True)
class Component:
    name: str
    group: str  # stack, tier or clusters
    ports: Mapping[str, int]  # every port it binds, by role; all must be free before a launch
    marker: str  # regular expression its command line matches (guards against pid reuse)
    probes: tuple[Probe, ...]  # healthy when every probe passes
    address: str  # what the status table and the "up" line say
    command: tuple[str, ...] = ()  # empty: launched by its own step (postgres)
    env: Mapping[str, str] = field(default_factory=dict)  # added to the caller's environment
    needs: str = ""  # what the launch needs: an executable (a path or a command name) or a file
    missing: str = ""  # what to say when it is missing (after "<name>: ")
    dirs: tuple[Path, ...] = ()  # created before the launch
    files: Mapping[Path, str] = field(default_factory=dict)  # written before the launch

    @property
    def port(self) -> int:
        """The port a client talks to first (the status table's address starts with it)."""
        return next(iter(self.ports.values()))


INSTALL = "(run: scripts/stack.sh install)"


def built(binary: str) -> str:
    return f"{binary} not built {INSTALL}"


def http(port: int, path: str = "/") -> Probe:
    return Probe("http", f"http://{HOST}:{port}{path}")


def tcp(port: int) -> Probe:
    return Probe("tcp", str(port))


def literal(text: str) -> str:
    return re.escape(text)


def stack_components(s: Settings) -> list[Component]:
    """The stack (``start``), in start order."""
    jaeger_store = {"badger": "badger_store", "memory": "memory_store"}.get(s.jaeger_storage, "")
    victorialogs_otlp = f"http://{HOST}:{VICTORIALOGS_PORT}/insert/opentelemetry/v1/logs"
    return [
        Component(
            "postgres", "stack", {"sql": s.pg_port}, literal("postgres"), (Probe("postgres"),),
            f"postgres://hcv:hcv@{HOST}:{s.pg_port}/hcv",
            needs=s.binary("pg-bindir") and f"{s.binary('pg-bindir')}/postgres",
            missing=f"server binaries not found {INSTALL}",
        ),
        Component(
            "redis", "stack", {"redis": s.redis_port}, literal("redis"), (Probe("redis"),),
            f"redis://{HOST}:{s.redis_port}/0",
            command=("redis-server", "--bind", HOST, "--port", str(s.redis_port), "--save", "", "--appendonly", "no",
                     "--dir", str(s.state / "redis"), "--daemonize", "no", "--protected-mode", "yes",
                     "--loglevel", "notice"),
            needs="redis-server", missing=f"redis-server not installed {INSTALL}", dirs=(s.state / "redis",),
        ),
        Component(
            "jaeger", "stack",
            {"query": JAEGER_QUERY_PORT, "otlp_grpc": JAEGER_OTLP_GRPC_PORT, "otlp_http": JAEGER_OTLP_HTTP_PORT,
             "health": JAEGER_HEALTH_PORT},
            literal("jaeger"), (http(JAEGER_HEALTH_PORT, "/status"), http(JAEGER_QUERY_PORT, "/api/services")),
            f"http://{HOST}:{JAEGER_QUERY_PORT} (OTLP in: {HOST}:{JAEGER_OTLP_GRPC_PORT} grpc, "
            f"{HOST}:{JAEGER_OTLP_HTTP_PORT} http)",
            command=(s.binary("jaeger"), "--config", str(JAEGER_CONFIG)),
            env={"JAEGER_LISTEN_HOST": HOST, "JAEGER_UI_ASSETS": s.binary("jaeger-ui"),
                 "JAEGER_TRACE_STORAGE": jaeger_store, "JAEGER_BADGER_DIR": str(s.data / "jaeger" / "badger"),
                 "JAEGER_RETENTION": s.jaeger_retention,
                 "JAEGER_METRICS_PROMETHEUS": f"http://{HOST}:{PROMETHEUS_PORT}",
                 "JAEGER_UI_CONFIG": str(JAEGER_UI_CONFIG)},
            needs=s.binary("jaeger"), missing=built(s.binary("jaeger")), dirs=(s.data / "jaeger" / "badger",),
        ),
        Component(
            "victorialogs", "stack", {"http": VICTORIALOGS_PORT}, literal("victoria-logs"),
            (http(VICTORIALOGS_PORT, "/health"),),
            f"http://{HOST}:{VICTORIALOGS_PORT} (UI /select/vmui/, OTLP logs in /insert/opentelemetry/v1/logs)",
            command=(s.binary("victorialogs"), f"-httpListenAddr={HOST}:{VICTORIALOGS_PORT}",
                     f"-storageDataPath={s.data / 'victorialogs'}", f"-retentionPeriod={s.logs_retention}",
                     "-loggerLevel=WARN"),
            needs=s.binary("victorialogs"), missing=built(s.binary("victorialogs")), dirs=(s.data / "victorialogs",),
        ),
        Component(
            "collector", "stack",
            {"otlp_http": OTLP_HTTP_PORT, "otlp_grpc": OTLP_GRPC_PORT, "prometheus": COLLECTOR_PROM_PORT,
             "own_metrics": COLLECTOR_METRICS_PORT, "health": COLLECTOR_HEALTH_PORT},
            literal("otelcol-hcv"),
            (http(COLLECTOR_HEALTH_PORT), http(COLLECTOR_PROM_PORT, "/metrics"), tcp(OTLP_GRPC_PORT),
             tcp(OTLP_HTTP_PORT)),
            f"OTLP {HOST}:{OTLP_GRPC_PORT} grpc, http://{HOST}:{OTLP_HTTP_PORT}; "
            f"metrics http://{HOST}:{COLLECTOR_PROM_PORT}/metrics",
            # OTEL_HCV_VENDOR_* / OTEL_HCV_DEBUG_VERBOSITY pass through from the caller's environment.
            command=(s.binary("collector"), "--config", str(COLLECTOR_CONFIG)),
            env={"OTEL_COLLECTOR_BIND": HOST, "JAEGER_OTLP_ENDPOINT": f"http://{HOST}:{JAEGER_OTLP_HTTP_PORT}",
                 "VICTORIALOGS_OTLP_LOGS_ENDPOINT": victorialogs_otlp, "OTEL_HCV_LOG_SINK": str(s.log_sink),
                 "OTEL_HCV_QUEUE_DIR": str(s.data / "collector" / "queue")},
            needs=s.binary("collector"), missing=built(s.binary("collector")), dirs=(s.log_sink.parent,),
        ),
        Component(
            "prometheus", "stack", {"http": PROMETHEUS_PORT}, literal("prometheus"),
            (http(PROMETHEUS_PORT, "/-/ready"),),
            f"http://{HOST}:{PROMETHEUS_PORT}",
            command=("prometheus", f"--config.file={PROM_CONFIG}", f"--storage.tsdb.path={s.state / 'prometheus/data'}",
                     "--storage.tsdb.retention.time=2d", f"--web.listen-address={HOST}:{PROMETHEUS_PORT}",
                     "--web.enable-lifecycle", "--log.level=info"),
            needs="prometheus", missing=f"not installed {INSTALL}", dirs=(s.state / "prometheus" / "data",),
        ),
    ]  # fmt: skip


def tier_components(s: Settings, gateways: int, mode: str) -> list[Component]:
    """The tier (``start-tier``) in start order: gateway-1..gateway-N, then the agent.

    Agent and gateways run the collector binary (direct) or the Kafka tier's binary (kafka)
    with every address set explicitly; the caller's environment passes through
    (OTEL_HCV_SAMPLING_*, OTEL_COLLECTOR_MEMORY_LIMIT_MIB, ...).
    """
    kafka = mode == "kafka"
    binary = s.binary("kafka-collector" if kafka else "collector")
    out = []
    for i in range(1, gateways + 1):
        name = f"gateway-{i}"
        roles = ("health", "own_metrics", "prometheus") if kafka else tuple(TIER_ROLES)
        ports = {role: tier_port(i, role) for role in roles}
        metrics = (
            f"metrics http://{HOST}:{ports['prometheus']}/metrics, own :{ports['own_metrics']}, "
            f"health :{ports['health']}"
        )
        env = {"OTEL_COLLECTOR_BIND": HOST, "OTEL_HCV_GATEWAY_NAME": name,
               "OTEL_HCV_HEALTH_PORT": str(ports["health"]), "OTEL_HCV_TELEMETRY_PORT": str(ports["own_metrics"]),
               "OTEL_HCV_PROMETHEUS_PORT": str(ports["prometheus"]),
               "JAEGER_OTLP_ENDPOINT": f"http://{HOST}:{JAEGER_OTLP_HTTP_PORT}"}  # fmt: skip
        probes = [http(ports["health"]), http(ports["prometheus"], "/metrics")]
        if kafka:
            urls = vm_write_urls()
            env.update({
                "OTEL_HCV_KAFKA_BROKERS": f"[{kafka_bootstrap()}]",
                "VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"http://{HOST}:{VICTORIALOGS_PORT}/insert/opentelemetry/v1/logs",
                "OTEL_HCV_METRICS_WRITE_URL_1": urls[0], "OTEL_HCV_METRICS_WRITE_URL_2": urls[1],
            })  # fmt: skip
            address = f"Kafka group {GATEWAY_GROUP}; {metrics}"
            config = KAFKA_GATEWAY_CONFIG
        else:
            env.update({"OTEL_HCV_OTLP_GRPC_PORT": str(ports["otlp_grpc"]),
                        "OTEL_HCV_OTLP_HTTP_PORT": str(ports["otlp_http"]),
                        "OTEL_HCV_LOG_SINK": str(s.state / "tier" / name / "logs.jsonl")})  # fmt: skip
            probes += [tcp(ports["otlp_grpc"]), tcp(ports["otlp_http"])]
            address = f"OTLP {HOST}:{ports['otlp_grpc']} grpc, :{ports['otlp_http']} http; {metrics}"
            config = GATEWAY_CONFIG
        out.append(Component(
            name, "tier", ports, literal(f"{ROOT}/collector/") + r"[a-z-]*gateway\.yaml", tuple(probes), address,
            command=(binary, "--config", str(config)), env=env, needs=binary, missing=built(binary),
            dirs=(s.state / "tier" / name,),
        ))  # fmt: skip
    ports = {role: tier_port(0, role) for role in ("otlp_http", "otlp_grpc", "health", "own_metrics")}
    env = {"OTEL_COLLECTOR_BIND": HOST, "OTEL_HCV_OTLP_GRPC_PORT": str(ports["otlp_grpc"]),
           "OTEL_HCV_OTLP_HTTP_PORT": str(ports["otlp_http"]), "OTEL_HCV_HEALTH_PORT": str(ports["health"]),
           "OTEL_HCV_TELEMETRY_PORT": str(ports["own_metrics"])}  # fmt: skip
    if kafka:
        env["OTEL_HCV_KAFKA_BROKERS"] = f"[{kafka_bootstrap()}]"
        config = KAFKA_AGENT_CONFIG
    else:
        # Loopback has no load balancer in front of the pool: metrics and logs go to gateway-1.
        gateway_list = ", ".join(f"{HOST}:{tier_port(i, 'otlp_grpc')}" for i in range(1, gateways + 1))
        env.update({"OTEL_HCV_GATEWAY_RESOLVER": "static", "OTEL_HCV_GATEWAYS": f"[{gateway_list}]",
                    "OTEL_HCV_GATEWAY_OTLP_ENDPOINT": f"http://{HOST}:{tier_port(1, 'otlp_http')}"})  # fmt: skip
        config = AGENT_CONFIG
    out.append(Component(
        "agent", "tier", ports, literal(f"{ROOT}/collector/") + r"[a-z-]*agent\.yaml",
        (http(ports["health"]), tcp(ports["otlp_grpc"]), tcp(ports["otlp_http"])),
        f"OTLP {HOST}:{ports['otlp_grpc']} grpc, http://{HOST}:{ports['otlp_http']}; "
        f"own metrics :{ports['own_metrics']}, health :{ports['health']}",
        command=(binary, "--config", str(config)), env=env, needs=binary, missing=built(binary),
    ))  # fmt: skip
    return out


def kafka_server_properties(s: Settings, broker: int) -> str:
    """Three combined broker+controller nodes: the controller quorum and every topic's
    replicas survive one node down. Writes wait for 2 in-sync replicas (acks=all on the
    agents), so a record an agent was told OK about is on two brokers."""
    voters = ",".join(f"{i}@{HOST}:{kafka_port(i, 'controller')}" for i in range(1, KAFKA_BROKERS + 1))
    data = s.clusters_dir / f"kafka-{broker}" / "data"
    return f"""process.roles=broker,controller
node.id={broker}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{HOST}:{kafka_port(broker, "client")},CONTROLLER://{HOST}:{kafka_port(broker, "controller")}
advertised.listeners=PLAINTEXT://{HOST}:{kafka_port(broker, "client")}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions={s.kafka_partitions}
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=67108864
"""


def vmauth_config() -> str:
    """Every query goes to a node that answers: a node that refuses the connection or
    answers 5xx is skipped for -failTimeout and the request is retried on the other."""
    nodes = "".join(f"    - http://{HOST}:{vm_port(i)}\n" for i in range(1, VM_NODES + 1))
    return (f"unauthorized_user:\n  url_prefix:\n{nodes}  retry_status_codes: [500, 502, 503]\n"
            "  load_balancing_policy: first_available\n")  # fmt: skip


def cluster_components(s: Settings) -> list[Component]:
    """The loopback clusters (``start-clusters``): Kafka brokers, VictoriaMetrics nodes,
    vmauth, vmalert."""
    out = []
    kafka_home = s.binary("kafka-home")
    for i in range(1, KAFKA_BROKERS + 1):
        name = f"kafka-{i}"
        directory = s.clusters_dir / name
        properties = directory / "server.properties"
        client, controller = kafka_port(i, "client"), kafka_port(i, "controller")
        out.append(Component(
            name, "clusters", {"client": client, "controller": controller}, literal(str(properties)), (tcp(client),),
            f"{HOST}:{client} (controller {HOST}:{controller})",
            command=("java", f"-Xms{s.kafka_heap}", f"-Xmx{s.kafka_heap}", "-XX:+UseG1GC",
                     "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
                     "-cp", f"{kafka_home}/libs/*", "kafka.Kafka", str(properties)),
            needs=f"{kafka_home}/.complete" if kafka_home else "", missing=f"Kafka not installed {INSTALL}",
            dirs=(directory / "data",), files={properties: kafka_server_properties(s, i)},
        ))  # fmt: skip
    for i in range(1, VM_NODES + 1):
        name = f"victoriametrics-{i}"
        data = s.clusters_dir / name / "data"
        # -dedup.minScrapeInterval=1ms: a sample written twice (a retried remote-write
        # request) is stored once. -inmemoryDataFlushInterval=1s: what a node acknowledged
        # is on disk within a second (its floor), so a node killed with SIGKILL loses at
        # most about that much on its own (the other node holds it).
        out.append(Component(
            name, "clusters", {"http": vm_port(i)}, literal(str(data)), (http(vm_port(i), "/health"),),
            f"http://{HOST}:{vm_port(i)} (remote write /api/v1/write)",
            command=(s.binary("victoriametrics"), f"-httpListenAddr={HOST}:{vm_port(i)}", f"-storageDataPath={data}",
                     "-retentionPeriod=2d", "-dedup.minScrapeInterval=1ms", "-search.latencyOffset=0s",
                     "-inmemoryDataFlushInterval=1s", "-loggerLevel=WARN"),
            needs=s.binary("victoriametrics"), missing=built(s.binary("victoriametrics")), dirs=(data,),
        ))  # fmt: skip
    vmauth_conf = s.clusters_dir / "vmauth.yaml"
    out.append(Component(
        "vmauth", "clusters", {"http": VMAUTH_PORT}, literal(str(vmauth_conf)),
        (http(VMAUTH_PORT, "/api/v1/status/buildinfo"),),
        f"http://{HOST}:{VMAUTH_PORT} (Prometheus query API over the VictoriaMetrics nodes)",
        command=(s.binary("vmauth"), f"-httpListenAddr={HOST}:{VMAUTH_PORT}", f"-auth.config={vmauth_conf}",
                 "-failTimeout=2s", "-loggerLevel=WARN"),
        needs=s.binary("vmauth"), missing=built(s.binary("vmauth")), files={vmauth_conf: vmauth_config()},
    ))  # fmt: skip
    # The stack's alert rules, evaluated against the VictoriaMetrics nodes through vmauth;
    # notifications go nowhere (-notifier.blackhole): the rules' state is read from vmalert's API.
    out.append(Component(
        "vmalert", "clusters", {"http": VMALERT_PORT}, literal(f"-rule={PROM_RULES}"), (http(VMALERT_PORT, "/health"),),
        f"http://{HOST}:{VMALERT_PORT} (prometheus/rules.yml against vmauth)",
        command=(s.binary("vmalert"), f"-httpListenAddr={HOST}:{VMALERT_PORT}", f"-rule={PROM_RULES}",
                 f"-datasource.url=http://{HOST}:{VMAUTH_PORT}", "-notifier.blackhole", "-evaluationInterval=5s",
                 "-loggerLevel=WARN"),
        needs=s.binary("vmalert"), missing=built(s.binary("vmalert")),
    ))  # fmt: skip
    return out


def stack_ports(settings: Settings | None = None) -> set[int]:
    """Every port the stack's components bind (the tier and the clusters keep clear of them)."""
    return {port for c in stack_components(settings or Settings.from_environ()) for port in c.ports.values()}
