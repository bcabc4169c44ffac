"""Fixtures for the agent/gateway tier tests (tests/tier).

They need the collector built by ``scripts/stack.sh install`` and the default stack
running (``scripts/stack.sh start``): the gateways export to its Jaeger and its
Prometheus scrapes them. The tier itself is started by the tests -- through
``scripts/stack.sh start-tier`` or directly on loopback ports -- and stopped again,
also when a test fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.backends import Jaeger, Prometheus, stack_env
from tests.tier.helpers import Backends, http_ok, stack_sh


@pytest.fixture(scope="session")
def backends() -> Backends:
    env = stack_env()
    jaeger = Jaeger(env["JAEGER_QUERY_URL"])
    prometheus = Prometheus(env["PROMETHEUS_URL"])
    if not http_ok(f"{jaeger.url}/api/services", timeout=3):
        pytest.fail(f"Jaeger is not answering at {jaeger.url}: scripts/stack.sh start")
    if not http_ok(f"{prometheus.url}/-/ready", timeout=3):
        pytest.fail(f"Prometheus is not answering at {prometheus.url}: scripts/stack.sh start")
    # The stack script's Jaeger takes OTLP/HTTP on 14318 (jaeger/config.yaml).
    return Backends(jaeger, prometheus, os.environ.get("JAEGER_OTLP_ENDPOINT", "http://127.0.0.1:14318"))


@pytest.fixture(scope="session")
def collector_bin() -> Path:
    proc = stack_sh("bin", "collector", timeout=30)
    path = Path(proc.stdout.strip())
    if proc.returncode != 0 or not os.access(path, os.X_OK):
        pytest.fail("collector binary not built: run `scripts/stack.sh install` first")
    return path
