"""Read telemetry back from the real backends of the native stack (scripts/stack.sh)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

# What the tests need of `scripts/stack.sh env` (scripts/stackctl/components.py: stack_env).
STACK_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "JAEGER_QUERY_URL", "PROMETHEUS_URL", "COLLECTOR_LOG_SINK",
                   "HCV_DATABASE_URL", "HCV_REDIS_URL")  # fmt: skip


def stack_env() -> dict[str, str]:
    """The stack's addresses as the test run has them exported (`eval "$(scripts/stack.sh env)"`):
    a run is pointed at its stack explicitly, never at whatever the defaults would name."""
    missing = [name for name in STACK_VARIABLES if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"the backend stack is not configured ({', '.join(missing)} unset): run the tests with "
            'scripts/test.sh, or `scripts/stack.sh start` and `eval "$(scripts/stack.sh env)"`'
        )
    return {name: os.environ[name] for name in STACK_VARIABLES}


def stack_service_env(service_name: str, **extra: str) -> dict[str, str]:
    """The environment of an example-service process that exports to the running stack
    (its collector, PostgreSQL and Redis) quickly enough for a test to read back."""
    from tests.support.service import service_env

    stack = stack_env()
    return service_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": stack["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "OTEL_SERVICE_NAME": service_name,
            "OTEL_PYTHON_DISTRO": "otel_hcv",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "HCV_DATABASE_URL": stack["HCV_DATABASE_URL"],
            "HCV_REDIS_URL": stack["HCV_REDIS_URL"],
            **extra,
        }
    )


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def eventually(fetch: Callable[[], T | None], timeout: float = 45.0, interval: float = 1.0) -> T:
    """The first truthy result of ``fetch``; fails the test with the last error after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = fetch()
            if result:
                return result
        except (OSError, KeyError, ValueError, urllib.error.HTTPError) as error:
            last_error = error
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout}s waiting for {getattr(fetch, '__name__', fetch)}: {last_error}")
        time.sleep(interval)


class Jaeger:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Spans of a trace via the v1 JSON API, with tags flattened; [] when absent."""
        try:
            data = get_json(f"{self.url}/api/traces/{trace_id}")["data"]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise
        if not data:
            return []
        processes = data[0]["processes"]
        spans = []
        for span in data[0]["spans"]:
            parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
            spans.append({
                "trace_id": span["traceID"], "span_id": span["spanID"], "parent": parents[0] if parents else None,
                "name": span["operationName"], "tags": {t["key"]: t["value"] for t in span["tags"]},
                "process": {t["key"]: t["value"] for t in processes[span["processID"]]["tags"]},
                "service": processes[span["processID"]]["serviceName"], "logs": span.get("logs", []),
            })  # fmt: skip
        return spans

    def traces_of(self, service: str, limit: int = 200) -> list[Any]:
        query = urllib.parse.urlencode({"service": service, "limit": limit, "lookback": "1h"})
        return get_json(f"{self.url}/api/traces?{query}")["data"]


def prometheus_query(base: str, promql: str, timeout: float = 10.0, **params: str) -> dict[str, Any]:
    """The whole answer (status, data) of an instant query to a Prometheus-compatible API
    (Prometheus, VictoriaMetrics, vmauth); ``params`` are added to the query string."""
    query = urllib.parse.urlencode({"query": promql, **params})
    return get_json(f"{base.rstrip('/')}/api/v1/query?{query}", timeout)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def query(self, promql: str) -> list[dict[str, Any]]:
        return prometheus_query(self.url, promql)["data"]["result"]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def series(self, match: str) -> list[dict[str, str]]:
        url = f"{self.url}/api/v1/series?{urllib.parse.urlencode({'match[]': match})}"
        return get_json(url)["data"]


class VictoriaLogs:
    """LogsQL queries against VictoriaLogs' HTTP API (/select/logsql/query: one JSON object per line)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = (url or os.environ.get("VICTORIALOGS_URL") or "http://127.0.0.1:9428").rstrip("/")

    def query(self, logsql: str, limit: int = 1000, timeout: float = 10.0) -> list[dict[str, str]]:
        body = urllib.parse.urlencode({"query": logsql, "limit": limit}).encode()
        request = urllib.request.Request(f"{self.url}/select/logsql/query", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]

    def hits(self, logsql: str) -> int:
        """How many lines match, counted by VictoriaLogs itself."""
        rows = self.query(f"{logsql} | stats count() as n")
        return int(rows[0]["n"]) if rows else 0


def log_sink_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Log records in the collector's file sink (one OTLP/JSON export request per line)."""
    sink = Path(path)
    if not sink.exists():
        return
    for line in sink.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        request = json.loads(line)
        for resource_logs in request.get("resourceLogs", []):
            resource = {a["key"]: a["value"] for a in resource_logs.get("resource", {}).get("attributes", [])}
            for scope_logs in resource_logs.get("scopeLogs", []):
                for record in scope_logs.get("logRecords", []):
                    yield {"resource": resource, **record}
