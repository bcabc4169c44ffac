"""Kafka's command-line tools on the cached jars: storage formatting before a broker's
first start, topic creation, and the tools stack.sh offers (kafka-topics, kafka-consumer-groups)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from scripts.stackctl.components import KAFKA_LOG4J, KAFKA_TOPICS, Component, kafka_bootstrap
from scripts.stackctl.processes import Manager, StackError, log

TOOLS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
}


def tool_command(m: Manager, cls: str, *args: str) -> list[str]:
    home = m.s.binary("kafka-home")
    if not home or not Path(home, ".complete").is_file():
        raise StackError("Kafka not installed (run: scripts/stack.sh install)")
    return ["java", "-Xmx256m", "-cp", f"{home}/libs/*", f"-Dlog4j2.configurationFile={KAFKA_LOG4J}", cls, *args]


def run_tool(m: Manager, name: str, args: list[str]) -> int:
    """One of Kafka's tools against the loopback brokers, its output the caller's."""
    command = tool_command(m, TOOLS[name], "--bootstrap-server", kafka_bootstrap(), *args)
    return subprocess.run(command, env=m.child_env({})).returncode


def cluster_id(m: Manager) -> str:
    path = m.s.clusters_dir / "kafka.cluster-id"
    try:
        known = path.read_text().strip()
    except OSError:
        known = ""
    if known:
        return known
    # A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.
    new = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    path.write_text(new + "\n")
    return new


def format_storage(m: Manager, c: Component) -> bool:
    """Format a broker's log directory for the cluster on its first start."""
    properties = next(iter(c.files))
    data = properties.parent / "data"
    if (data / "meta.properties").is_file():
        return True
    command = [
        "java",
        "-cp",
        f"{m.s.binary('kafka-home')}/libs/*",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id(m),
        "-c",
        str(properties),
        "--ignore-formatted",
    ]
    m.s.log_dir.mkdir(parents=True, exist_ok=True)
    with open(m.logfile(c.name), "ab") as out:
        formatted = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=m.child_env({}))
    if formatted.returncode != 0:
        log(f"{c.name}: formatting {data} failed")
        m.show_log_tail(c.name)
        return False
    return True


def create_topics(m: Manager) -> bool:
    with open(m.s.log_dir / "kafka-topics.log", "ab") as out:
        for topic in KAFKA_TOPICS:
            command = tool_command(
                m, TOOLS["kafka-topics"], "--bootstrap-server", kafka_bootstrap(), "--create", "--if-not-exists",
                "--topic", topic, "--partitions", str(m.s.kafka_partitions), "--replication-factor", "3",
                "--config", "min.insync.replicas=2",
            )  # fmt: skip
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=m.child_env({})).returncode != 0:
                log(f"kafka: creating topic {topic} failed (see {m.s.log_dir / 'kafka-topics.log'})")
                return False
    log(f"kafka: topics {' '.join(KAFKA_TOPICS)} ({m.s.kafka_partitions} partitions, replication factor 3, "
        "min in-sync 2)")  # fmt: skip
    return True
