"""The runtime commands of ``scripts/stack.sh`` (start, stop, status, env, the tier and the
clusters); stack.sh keeps the help text, install, validate and bin, and hands the binary
paths it computes over in the environment (components.BINARY_VARIABLES)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from scripts.stackctl.components import (
    DEFAULT_GATEWAYS,
    HOST,
    MAX_GATEWAYS,
    STACK_ORDER,
    TIER_MODES,
    VMAUTH_PORT,
    Component,
    Settings,
    cluster_components,
    kafka_bootstrap,
    stack_components,
    stack_env,
    tier_components,
    tier_port,
)
from scripts.stackctl.processes import Manager, StackError, log


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.m = Manager(settings)

    # ----------------------------------------------------------------------
    # The stack
    # ----------------------------------------------------------------------
    def select(self, name: str) -> list[Component]:
        components = stack_components(self.s)
        if not name:
            return components
        chosen = [c for c in components if c.name == name]
        if not chosen:
            raise StackError(f"unknown component '{name}' (one of: {' '.join(STACK_ORDER)})")
        return chosen

    def start(self, name: str = "") -> int:
        components = self.select(name)
        t0 = time.monotonic()
        self.s.run_dir.mkdir(parents=True, exist_ok=True)
        self.s.log_dir.mkdir(parents=True, exist_ok=True)
        failed = [c.name for c in components if not self.m.start_one(c)]
        if failed:
            raise StackError(f"failed to start: {' '.join(failed)}")
        log(f"started in {int(time.monotonic() - t0)}s")
        return 0

    def stop(self, name: str = "") -> int:
        components = self.select(name)
        # Everything: the tier first (it exports into the stack), then the clusters.
        if not name:
            self.stop_tier(quiet=True)
            self.stop_clusters()
        for c in reversed(components):
            self.m.stop_one(c)
        return 0

    def restart(self, name: str = "") -> int:
        self.stop(name)
        return self.start(name)

    def status(self) -> int:
        ok = self.m.status_rows("COMPONENT", stack_components(self.s))
        print(f"state: {self.s.state}   logs: {self.s.log_dir}   log sink: {self.s.log_sink}")
        return 0 if ok else 1

    def env(self) -> int:
        for key, value in stack_env(self.s).items():
            print(f"export {key}={value}")
        return 0

    # ----------------------------------------------------------------------
    # The agent/gateway tier; its size and mode are recorded in the run directory
    # ----------------------------------------------------------------------
    def recorded_gateways(self) -> str:
        try:
            return (self.s.run_dir / "tier.gateways").read_text().strip()
        except OSError:
            return ""

    def recorded_mode(self) -> str:
        """direct (agents route spans to the gateways by trace id) or kafka (through the clusters)."""
        try:
            return (self.s.run_dir / "tier.mode").read_text().strip() or "direct"
        except OSError:
            return "direct"

    def tier(self, gateways: int = MAX_GATEWAYS) -> list[Component]:
        return tier_components(self.s, gateways, self.recorded_mode())

    def start_tier(self, count: str = "", mode: str = "") -> int:
        count = count or str(DEFAULT_GATEWAYS)
        mode = mode or "direct"
        if not (count.isdigit() and 1 <= int(count) <= MAX_GATEWAYS):
            raise StackError(f"start-tier: the number of gateways must be 1..{MAX_GATEWAYS} (got '{count}')")
        if mode not in TIER_MODES:
            raise StackError(f"start-tier: the mode must be direct or kafka (got '{mode}')")
        n = int(count)
        t0 = time.monotonic()
        self.s.run_dir.mkdir(parents=True, exist_ok=True)
        self.s.log_dir.mkdir(parents=True, exist_ok=True)
        previous = self.recorded_gateways()
        agent = self.tier()[-1]
        # The agent's static list names the gateways: another N (or mode) needs a fresh tier.
        if (previous != count or self.recorded_mode() != mode) and (previous or self.m.is_running(agent)):
            log(f"tier: running with {previous or 'an unknown number of'} gateway(s) ({self.recorded_mode()}); "
                f"restarting it with {n} ({mode})")  # fmt: skip
            self.stop_tier(quiet=True)
        if mode == "kafka":
            # The clusters must be up; a member that is down (a broker, a node) is survivable.
            up = []
            for c in cluster_components(self.s):
                if self.m.is_running(c):
                    up.append(c)
                else:
                    log(f"tier: note: {c.name} is not running")
            if not up:
                raise StackError(
                    f"start-tier {n} kafka: the clusters are not running (scripts/stack.sh start-clusters)"
                )
        (self.s.run_dir / "tier.mode").write_text(mode + "\n")
        for c in self.tier()[n:MAX_GATEWAYS]:
            if self.m.is_running(c):
                self.m.stop_one(c)
        (self.s.run_dir / "tier.gateways").write_text(f"{n}\n")
        failed = [c.name for c in self.tier(n) if not self.m.start_one(c)]
        if failed:
            raise StackError(f"tier: failed to start: {' '.join(failed)}")
        for c in stack_components(self.s):
            if c.name in ("jaeger", "prometheus") and not self.m.is_running(c):
                log(f"tier: note: {c.name} is not running (the gateways export to it): scripts/stack.sh start")
        otlp_http, otlp_grpc = tier_port("agent", "otlp_http"), tier_port("agent", "otlp_grpc")
        log(f"tier: agent + {n} gateway(s) ({mode}) started in {int(time.monotonic() - t0)}s; send OTLP to "
            f"http://{HOST}:{otlp_http} (grpc {HOST}:{otlp_grpc})")  # fmt: skip
        return 0

    def stop_tier(self, quiet: bool = False) -> int:
        """Stop the agent, then every gateway that runs."""
        members = self.tier()
        stopped = False
        for c in [members[-1], *reversed(members[:-1])]:
            stopped = self.m.stop_if_running(c) or stopped
        for name in ("tier.gateways", "tier.mode"):
            (self.s.run_dir / name).unlink(missing_ok=True)
        if not stopped and not quiet:
            log("tier: not running")
        return 0

    def status_tier(self) -> int:
        n = self.recorded_gateways()
        ok = self.m.status_rows("MEMBER", self.tier(int(n) if n.isdigit() else MAX_GATEWAYS))
        print(f"gateways started: {n or 'none'}   logs: {self.s.log_dir}/{{agent,gateway-N}}.log   "
              f"log sinks: {self.s.state}/tier/gateway-N/logs.jsonl")  # fmt: skip
        return 0 if ok else 1

    # ----------------------------------------------------------------------
    # The loopback clusters
    # ----------------------------------------------------------------------
    def start_clusters(self) -> int:
        from scripts.stackctl.kafka import create_topics

        t0 = time.monotonic()
        for directory in (self.s.run_dir, self.s.log_dir, self.s.clusters_dir):
            directory.mkdir(parents=True, exist_ok=True)
        members = cluster_components(self.s)
        brokers = [c for c in members if c.name.startswith("kafka-")]
        failed = []
        # The three brokers form one quorum: start them together, then wait for each.
        for c in brokers:
            if not self.m.is_running(c) and not self.m.launch(c):
                failed.append(c.name)
        for c in brokers:
            if not self.m.wait_healthy(c):
                self.m.show_log_tail(c.name)
                failed.append(c.name)
        if failed:
            raise StackError(f"clusters: failed to start: {' '.join(failed)}")
        if not create_topics(self.m):
            raise StackError("clusters: Kafka topics could not be created")
        failed = [c.name for c in members if c not in brokers and not self.m.start_one(c)]
        if failed:
            raise StackError(f"clusters: failed to start: {' '.join(failed)}")
        log(f"clusters: started in {int(time.monotonic() - t0)}s; Kafka {kafka_bootstrap()}, "
            f"VictoriaMetrics queries http://{HOST}:{VMAUTH_PORT}")  # fmt: skip
        return 0

    def stop_clusters(self) -> int:
        # The Kafka tier reads from the clusters: stop it first.
        if self.recorded_mode() == "kafka":
            self.stop_tier(quiet=True)
        for c in reversed(cluster_components(self.s)):
            self.m.stop_if_running(c)
        return 0

    def reset_clusters(self) -> int:
        """Stop the clusters and delete their data (Kafka logs, VictoriaMetrics data)."""
        import shutil

        self.stop_clusters()
        shutil.rmtree(self.s.clusters_dir, ignore_errors=True)
        log("clusters: data removed")
        return 0

    def status_clusters(self) -> int:
        ok = self.m.status_rows("MEMBER", cluster_components(self.s))
        print(f"data: {self.s.clusters_dir}   logs: {self.s.log_dir}/{{kafka-N,victoriametrics-N,vmauth,vmalert}}.log")
        return 0 if ok else 1

    def kafka_tool(self, name: str, *args: str) -> int:
        from scripts.stackctl.kafka import run_tool

        return run_tool(self.m, name, list(args))


def commands(stack: Stack) -> dict[str, Callable[..., int]]:
    return {
        "start": stack.start,
        "stop": stack.stop,
        "restart": stack.restart,
        "status": stack.status,
        "env": stack.env,
        "start-tier": stack.start_tier,
        "stop-tier": stack.stop_tier,
        "status-tier": stack.status_tier,
        "start-clusters": stack.start_clusters,
        "stop-clusters": stack.stop_clusters,
        "reset-clusters": stack.reset_clusters,
        "status-clusters": stack.status_clusters,
        "kafka-topics": lambda *args: stack.kafka_tool("kafka-topics", *args),
        "kafka-consumer-groups": lambda *args: stack.kafka_tool("kafka-consumer-groups", *args),
    }


# How many arguments each command takes from the command line (the Kafka tools take all).
ARITY = {"start": 1, "stop": 1, "restart": 1, "start-tier": 2}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: stackctl COMMAND [ARGS]", file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    stack = Stack(Settings.from_environ())
    table = commands(stack)
    if command not in table:
        print(f"[stack] ERROR: unknown command '{command}'", file=sys.stderr)
        return 2
    if not command.startswith("kafka-"):
        args = args[: ARITY.get(command, 0)]
    try:
        return table[command](*args)
    except StackError as error:
        print(f"[stack] ERROR: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
