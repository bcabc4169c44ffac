"""Run the example service under opentelemetry-instrument, send diagnoses, and print the
telemetry they produced, read back from Jaeger, Prometheus and VictoriaLogs (or, with
--local, from a loopback OTLP receiver in this process).

Started by scripts/demo.sh, which brings the backend stack up first.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from otel_hcv.receiver import OtlpReceiver, attributes  # noqa: E402
from scripts.stackctl.components import stack_env  # noqa: E402
from tests.support.backends import Prometheus, get_json  # noqa: E402
from tests.support.service import (  # noqa: E402
    ServiceProcess,
    free_port,
    instrumented_runserver,
    manage,
    post_json,
    service_env,
)

# A blood donor and a cirrhosis patient from the data set's value ranges (its units).
DONOR = {"age": 46, "sex": "f", "alb": 41.5, "alp": 66.0, "alt": 20.1, "ast": 24.0, "bil": 6.8,
         "che": 8.2, "chol": 5.4, "crea": 72.0, "ggt": 18.0, "prot": 71.5}  # fmt: skip
CIRRHOSIS = {"age": 58, "sex": "m", "alb": 28.0, "alp": 140.0, "alt": 38.0, "ast": 150.0, "bil": 90.0,
             "che": 3.1, "chol": 3.6, "crea": 95.0, "ggt": 320.0, "prot": 70.0}  # fmt: skip


def poll(fetch: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = fetch()
            if result:
                return result
        except OSError:
            pass
        time.sleep(1)
    return None


def send_diagnoses(url: str, token: str) -> list[tuple[str, str, int]]:
    """Each request starts its own trace (a W3C traceparent we choose), so the demo
    knows the trace ids to look up."""
    cases = [
        ("blood donor, anonymous", DONOR, {}),
        ("cirrhosis, authenticated", CIRRHOSIS, {"Authorization": f"Token {token}"}),
        ("invalid: alb is text", {**DONOR, "alb": "high"}, {}),
        ("injected failure", DONOR, {"X-HCV-Fail": "diagnosis"}),
    ]
    sent = []
    for label, body, headers in cases:
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        status, payload = post_json(
            f"{url}/api/diagnose/", json.dumps(body), {**headers, "traceparent": traceparent}
        )
        print(f"  {status}  {label:28} trace {trace_id}  {payload[:90].decode(errors='replace')}")
        sent.append((label, trace_id, status))
    return sent


def print_span_tree(spans: list[dict[str, Any]]) -> None:
    children: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s["id"] for s in spans}
    for span in spans:
        parent = span["parent"] if span["parent"] in ids else None
        children.setdefault(parent, []).append(span)

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start"]):
            tags = {
                k: v for k, v in span["tags"].items() if k.startswith(("hcv.", "http.", "enduser.", "error"))
            }
            print(f"    {'  ' * depth}{span['name']}  ({span['duration_ms']:.1f} ms)  {json.dumps(tags)}")
            walk(span["id"], depth + 1)

    walk(None, 0)


def jaeger_spans(jaeger: str, trace_id: str) -> list[dict[str, Any]]:
    data = get_json(f"{jaeger}/api/traces/{trace_id}")["data"]
    if not data:
        return []
    spans = []
    for span in data[0]["spans"]:
        parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        spans.append({
            "id": span["spanID"], "parent": parents[0] if parents else None, "name": span["operationName"],
            "start": span["startTime"], "duration_ms": span["duration"] / 1000,
            "tags": {t["key"]: t["value"] for t in span["tags"]},
        })  # fmt: skip
    return spans


def logsql(victorialogs: str, query: str) -> list[dict[str, str]]:
    """Log lines as VictoriaLogs answers a LogsQL query (one JSON object per line)."""
    body = urllib.parse.urlencode({"query": query, "limit": 100}).encode()
    with urllib.request.urlopen(f"{victorialogs}/select/logsql/query", data=body, timeout=5) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]


def victorialogs_ui(victorialogs: str, query: str) -> str:
    """The VictoriaLogs web UI showing a query's lines (the Jaeger UI links to the same page)."""
    return f"{victorialogs}/select/vmui/#/?query={urllib.parse.quote(query, safe='')}&g0.relative_time=last_7_days"


def report_logs(victorialogs: str, jaeger: str, label: str, trace_id: str) -> None:
    query = f'trace_id:"{trace_id}"'
    lines = poll(lambda: logsql(victorialogs, query))
    print(f"\nLog lines of '{label}' as VictoriaLogs answers  {query}:")
    if not lines:
        print("    (not in VictoriaLogs after 30 s: is it running? scripts/stack.sh status)")
        return
    for line in sorted(lines, key=lambda line: line["_time"]):
        fields = {k: line[k] for k in ("severity_text", "span_id", "request_id") if k in line}
        print(f"    {line['_time']}  {line['_msg'][:70]:70}  {json.dumps(fields)}")
    request_id = lines[0].get("request_id", "")
    print(f"  in the VictoriaLogs UI:      {victorialogs_ui(victorialogs, query)}")
    print(f"  the same request by its id:  {victorialogs_ui(victorialogs, f'request_id:{json.dumps(request_id)}')}")
    print(f"  and back to the trace:       {jaeger}/trace/{trace_id}  (the trace_id field of any line)")


def report_from_backends(
    sent: list[tuple[str, str, int]], jaeger: str, prometheus: str, victorialogs: str, instance: str
) -> None:
    print("\nTraces in Jaeger:")
    for label, trace_id, _ in sent:
        print(f"  {label:28} {jaeger}/trace/{trace_id}")
    print(f"  {'search':28} {jaeger}/search")
    print(f"  {'rates, errors, latency':28} {jaeger}/monitor (the Monitor tab; rates need traffic over ~10 s)")
    label, trace_id, _ = sent[1]
    spans = poll(lambda: jaeger_spans(jaeger, trace_id))
    print(f"\nSpan tree of '{label}' as Jaeger stores it:")
    if spans:
        print_span_tree(spans)
    else:
        print("    (not in Jaeger after 30 s: is the collector running? scripts/stack.sh status)")
    report_logs(victorialogs, jaeger, label, trace_id)
    # This run's series only: the collector turns service.instance.id into the instance label.
    this_run = f'instance="{instance}"'
    queries = {
        "diagnoses by outcome": f"sum by (hcv_diagnosis_outcome) (hcv_diagnosis_requests_total{{{this_run}}})",
        "diagnosis p95 latency (s)": (
            f"histogram_quantile(0.95, sum by (le) (hcv_diagnosis_duration_seconds_bucket{{{this_run}}}))"
        ),
        "API calls by status": f"sum by (http_response_status_code) (hcv_api_requests_total{{{this_run}}})",
        "span-metrics calls by span": f"sum by (span_name) (traces_span_metrics_calls_total{{{this_run}}})",
        "health check status": f"hcv_health_status{{{this_run}}}",
    }
    print(f"\nSeries in Prometheus ({prometheus}/graph), scraped from the collector:")
    for title, query in queries.items():
        # Wait until a scrape has seen every request (the span-metrics connector flushes every 5 s).
        results = poll(
            lambda query=query: [r for r in Prometheus(prometheus).query(query) if float(r["value"][1]) > 0],
            timeout=20,
        ) or Prometheus(prometheus).query(query)
        print(f"  {title}:  {query}")
        for result in results or [{"metric": {}, "value": [0, "(no data)"]}]:
            print(f"      {json.dumps(result['metric'])} = {result['value'][1]}")


def report_local(receiver: OtlpReceiver, sent: list[tuple[str, str, int]]) -> None:
    receiver.wait_for(lambda: sum(1 for _, s in receiver.spans() if s.name == "hcv.diagnosis") >= 3)
    time.sleep(2)
    label, trace_id, _ = sent[1]
    spans = [
        {"id": s.span_id.hex(), "parent": s.parent_span_id.hex() or None, "name": s.name,
         "start": s.start_time_unix_nano, "duration_ms": (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
         "tags": attributes(s.attributes)}
        for _, s in receiver.spans() if s.trace_id.hex() == trace_id
    ]  # fmt: skip
    print(f"\nSpan tree of '{label}' (trace {trace_id}):")
    print_span_tree(spans)
    print("\nMetric points received:")
    for name in ("hcv.diagnosis.requests", "hcv.api.requests"):
        latest = {}
        for _, point in receiver.metric_points(name):
            latest[json.dumps(attributes(point.attributes), sort_keys=True)] = point.as_int
        for attrs, value in sorted(latest.items()):
            print(f"  {name} {attrs} = {value}")
    print(f"\nLog records received: {sum(1 for _ in receiver.log_records())}")


def pseudonym_key() -> str:
    """The demo's pseudonym key: HCV_PSEUDONYM_KEY, else a random one kept (mode 600) in the
    stack's cache, so that pseudonyms stay the same from one demo run to the next and nobody
    can recompute them from the example's public development SECRET_KEY."""
    if os.environ.get("HCV_PSEUDONYM_KEY"):
        return os.environ["HCV_PSEUDONYM_KEY"]
    cache = Path(os.environ.get("OTEL_HCV_CACHE") or Path.home() / ".cache" / "otel-hcv")
    path = cache / "pseudonym.key"
    if not path.is_file() or not path.read_text().strip():
        cache.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--local", action="store_true", help="no backend stack: receive OTLP in this process")
    parser.add_argument(
        "--port", type=int, default=0, help="port of the example service (default: a free one)"
    )
    args = parser.parse_args()

    # The stack's addresses as exported (demo.sh: `eval "$(scripts/stack.sh env)"`), else its records'.
    stack = {**stack_env(), **os.environ}
    jaeger = stack["JAEGER_QUERY_URL"]
    prometheus = stack["PROMETHEUS_URL"]
    victorialogs = stack["VICTORIALOGS_URL"]
    workdir = Path(tempfile.mkdtemp(prefix="otel-hcv-demo-"))
    receiver = OtlpReceiver().__enter__() if args.local else None
    endpoint = (
        receiver.endpoint
        if receiver
        else stack["OTEL_EXPORTER_OTLP_ENDPOINT"]
    )
    instance = str(uuid.uuid4())
    env = service_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={instance}",
            "OTEL_PYTHON_DISTRO": "otel_hcv",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "OTEL_BLRP_SCHEDULE_DELAY": "500",
            "OTEL_METRIC_EXPORT_INTERVAL": "2000",
            "HCV_ENVIRONMENT": "demo",
            "HCV_PSEUDONYM_KEY": pseudonym_key(),
        },
        database=workdir / "demo.sqlite3",
    )
    print(f"Example service: migrating a demo database in {workdir}")
    manage(["migrate", "--noinput"], env)
    token = json.loads(manage(["create_demo_user", "--username", "demo", "--json"], env))["token"]
    port = args.port or free_port()
    service = ServiceProcess(instrumented_runserver(port), env, port, workdir / "service.log")
    try:
        service.wait_ready()
        print(f"Example service: opentelemetry-instrument python manage.py runserver on {service.url}")
        print(f"Telemetry goes over OTLP/HTTP to {endpoint}\n\nDiagnoses sent:")
        sent = send_diagnoses(service.url, token)
        if receiver:
            report_local(receiver, sent)
        else:
            report_from_backends(sent, jaeger, prometheus, victorialogs, instance)
    finally:
        service.stop()
        if receiver:
            receiver.__exit__(None, None, None)
    print(f"\nThe service's JSON log lines: {workdir / 'service.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
