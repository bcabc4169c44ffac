"""The shipped collector, Jaeger and Prometheus configs, checked with the real tools."""

from __future__ import annotations

import gzip
import http.server
import json
import re
import subprocess
import threading
import time
import urllib.request

import pytest

SLOT = "${env:OTEL_HCV_VENDOR_EXPORTER:-nop}"
# Values documented for the vendor switch (docs/stack.md).
SLOT_VALUES = ("nop", "otlp_http/vendor", "debug")
# The JSON-lines log sink's switch (on by default beside VictoriaLogs).
FILE_SLOT = "${env:OTEL_HCV_LOG_FILE_EXPORTER:-file/sink}"
FILE_SLOT_VALUES = ("file/sink", "nop/file_sink_off")


# --------------------------------------------------------------------------
# collector: validate with the real binary
# --------------------------------------------------------------------------
@pytest.mark.parametrize("slot_value", SLOT_VALUES)
def test_collector_validates_config(collector_bin, stack, slot_value):
    proc = stack.run_validate(collector_bin, stack.COLLECTOR_CONFIG, {"OTEL_HCV_VENDOR_EXPORTER": slot_value})
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("file_value", FILE_SLOT_VALUES)
def test_collector_validates_with_either_log_file_switch(collector_bin, stack, file_value):
    env = {"OTEL_HCV_LOG_FILE_EXPORTER": file_value, "OTEL_HCV_VENDOR_EXPORTER": "nop"}
    proc = stack.run_validate(collector_bin, stack.COLLECTOR_CONFIG, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_collector_validate_rejects_unknown_vendor_exporter(collector_bin, stack):
    # Proves the check above can fail: a slot value naming no configured exporter.
    proc = stack.run_validate(collector_bin, stack.COLLECTOR_CONFIG, {"OTEL_HCV_VENDOR_EXPORTER": "otlp_http/typo"})
    assert proc.returncode != 0
    assert "otlp_http/typo" in proc.stdout + proc.stderr


def test_collector_validate_rejects_component_not_built(collector_bin, stack, tmp_path):
    cfg = stack.load_yaml(stack.COLLECTOR_CONFIG)
    cfg["processors"]["attributes/extra"] = {"actions": [{"key": "x", "action": "delete"}]}
    cfg["service"]["pipelines"]["traces"]["processors"].append("attributes/extra")
    path = tmp_path / "broken.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    proc = stack.run_validate(collector_bin, path)
    assert proc.returncode != 0
    assert "attributes" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# builder manifest <-> config
# --------------------------------------------------------------------------
def binary_components(collector_bin) -> dict[str, set[str]]:
    proc = subprocess.run([str(collector_bin), "components"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    import yaml

    data = yaml.safe_load(proc.stdout)
    return {
        kind: {c["name"] for c in data.get(kind) or []}
        for kind in ("receivers", "processors", "exporters", "connectors", "extensions")
    }


def used_component_types(stack, kind: str) -> set[str]:
    """Types of `kind` defined by the three collector configs together (the manifest's scope)."""
    used: set[str] = set()
    for path in stack.COLLECTOR_CONFIGS:
        used |= {stack.component_type(cid) for cid in (stack.load_yaml(path).get(kind) or {})}
    return used


def test_config_components_equal_builder_manifest(collector_bin, builder_config, stack):
    """The binary holds exactly the union of what otel-config, agent and gateway use."""
    built = binary_components(collector_bin)
    for kind in stack.COMPONENT_KINDS:
        used = used_component_types(stack, kind)
        manifest = builder_config.get(kind) or []
        assert used == built[kind], f"{kind}: configs use {sorted(used)}, binary has {sorted(built[kind])}"
        # One manifest entry per built component: nothing extra in the manifest.
        assert len(manifest) == len(built[kind]), f"{kind}: manifest {manifest} vs binary {sorted(built[kind])}"


KIND_SUFFIX = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "connectors": "connector",
    "extensions": "extension",
}
# Upstream modules whose last path segment does not end in the kind (type file_storage is
# .../extension/storage/filestorage).
UNSUFFIXED_MODULES = {"filestorage": "filestorageextension"}


def test_builder_manifest_matches_config_statically(builder_config, stack):
    """Without the binary: module otlphttpexporter <-> type otlp_http, and so on (union of the configs)."""
    for kind in stack.COMPONENT_KINDS:
        used = {t.replace("_", "") for t in used_component_types(stack, kind)}
        modules = [e["gomod"].split()[0].rsplit("/", 1)[1] for e in builder_config.get(kind) or []]
        modules = [UNSUFFIXED_MODULES.get(m, m) for m in modules]
        assert all(m.endswith(KIND_SUFFIX[kind]) for m in modules), modules
        listed = {m[: -len(KIND_SUFFIX[kind])] for m in modules}
        assert len(listed) == len(modules), f"{kind}: duplicate modules"
        assert listed == used, f"{kind}: manifest {sorted(listed)} vs config {sorted(used)}"


def test_builder_versions_are_consistent(builder_config, stack, compose):
    version = builder_config["dist"]["version"]
    core = f"v{version}"
    for kind in (*stack.COMPONENT_KINDS, "providers"):
        for entry in builder_config.get(kind) or []:
            _module, mod_version = entry["gomod"].split()
            if kind == "providers":
                assert mod_version.startswith("v1."), entry
            else:
                assert mod_version == core, entry
    providers = {e["gomod"].split()[1] for e in builder_config["providers"]}
    assert len(providers) == 1
    script = stack.STACK_SH.read_text()
    assert re.search(rf"^OCB_VERSION={re.escape(version)}$", script, re.M), "stack.sh builds another ocb version"
    image = compose["services"]["otel-collector"]["image"]
    assert image == f"otel/opentelemetry-collector-contrib:{version}"


def test_every_configured_component_is_reachable(collector_config, stack):
    """Each defined component is used by some pipeline for some documented slot value."""
    choices = [{SLOT: value, FILE_SLOT: file_value} for value in SLOT_VALUES for file_value in FILE_SLOT_VALUES]
    stack.assert_every_component_used(collector_config, choices, "collector")


def test_pipelines_shape(collector_config):
    pipes = collector_config["service"]["pipelines"]
    assert set(pipes) == {"traces", "metrics", "logs"}
    for name, pipe in pipes.items():
        # No batch processor: what it buffers is lost on kill -9 after the sender got its OK.
        assert pipe["processors"] == ["memory_limiter", "transform/scrub"], name
        assert pipe["exporters"][-1] == SLOT, name
    assert "otlp_http/jaeger" in pipes["traces"]["exporters"]
    assert "span_metrics" in pipes["traces"]["exporters"]
    assert "span_metrics" in pipes["metrics"]["receivers"]
    assert "prometheus" in pipes["metrics"]["exporters"]
    # Logs: searchable in VictoriaLogs, and the JSON-lines sink behind its switch.
    assert pipes["logs"]["exporters"] == ["otlp_http/victorialogs", FILE_SLOT, SLOT]
    victorialogs = collector_config["exporters"]["otlp_http/victorialogs"]
    assert victorialogs["logs_endpoint"].startswith("${env:VICTORIALOGS_OTLP_LOGS_ENDPOINT:-")
    assert victorialogs["logs_endpoint"].endswith("/insert/opentelemetry/v1/logs}")
    assert victorialogs["sending_queue"]["storage"] == "file_storage/queue"
    assert victorialogs["retry_on_failure"]["max_elapsed_time"] == 0
    assert set(collector_config["service"]["extensions"]) == {"health_check", "zpages", "file_storage/queue"}
    assert collector_config["exporters"]["prometheus"]["resource_to_telemetry_conversion"]["enabled"] is False


def test_every_address_comes_from_env(collector_config, stack):
    text = stack.COLLECTOR_CONFIG.read_text()
    for m in re.finditer(r"^\s*(endpoint|logs_endpoint|host|path):\s*(.+)$", text, re.M):
        value = m.group(2)
        assert "${env:" in value and ":-" in value, f"hard-coded {m.group(1)}: {value}"


# --------------------------------------------------------------------------
# scrub processor
# --------------------------------------------------------------------------
MUST_DELETE = [
    "age",
    "AGE",
    "sex",
    "alb",
    "ALP",
    "alt",
    "ast",
    "bil",
    "che",
    "chol",
    "crea",
    "ggt",
    "prot",
    "hcv.lab.alt",
    "hcv.lab.ALB",
    "hcv.lab.anything",
    "patient.age",
    "patient_sex",
    "lab.ggt",
    "password",
    "db.password",
    "user_password",
    "token",
    "access_token",
    "secret",
    "client_secret",
    "authorization",
    "http.request.header.authorization",
    "cookie",
    "http.request.header.cookie",
    "http.response.header.set-cookie",
    "session",
    "session.id",
    "django.session_key",
    "email",
    "user.email",
    "http.request.body",
    "user.name",
    "enduser.id",
    "client.address",
    "net.peer.ip",
    "net.sock.peer.addr",
    "http.client_ip",
]
MUST_KEEP = [
    "service.name",
    "service.version",
    "deployment.environment",
    "http.route",
    "http.request.method",
    "http.response.status_code",
    "url.path",
    "server.address",
    "user_agent.original",
    "http.request.body.size",
    "db.system",
    "db.statement",
    "hcv.diagnosis.outcome",
    "hcv.model.version",
    "enduser.pseudo.id",
    "span.kind",
    "message",
    "page",
    "stage",
    "category",
    "salt",
    "altitude",
]


def scrub_patterns(collector_config) -> list[str]:
    patterns = []
    scrub = collector_config["processors"]["transform/scrub"]
    for key in ("trace_statements", "metric_statements", "log_statements"):
        for group in scrub[key]:
            for stmt in group["statements"]:
                m = re.fullmatch(r'delete_matching_keys\((\w+)\.attributes, "(.*)"\)', stmt)
                assert m, stmt
                assert m.group(1) == group["context"], stmt
                patterns.append(m.group(2))
    return patterns


def test_scrub_covers_every_context(collector_config):
    scrub = collector_config["processors"]["transform/scrub"]
    contexts = {
        key: {g["context"] for g in scrub[key]} for key in ("trace_statements", "metric_statements", "log_statements")
    }
    assert contexts == {
        "trace_statements": {"resource", "span", "spanevent"},
        "metric_statements": {"resource", "datapoint"},
        "log_statements": {"resource", "log"},
    }


def test_scrub_pattern_copies_are_identical(collector_config):
    patterns = scrub_patterns(collector_config)
    assert len(patterns) == 7
    assert len(set(patterns)) == 1, "the scrub regex differs between contexts"


@pytest.mark.parametrize("key", MUST_DELETE)
def test_scrub_pattern_deletes(collector_config, key):
    pattern = re.compile(scrub_patterns(collector_config)[0])
    assert pattern.search(key), key


@pytest.mark.parametrize("key", MUST_KEEP)
def test_scrub_pattern_keeps(collector_config, key):
    pattern = re.compile(scrub_patterns(collector_config)[0])
    assert not pattern.search(key), key


def _attrs(d: dict) -> list[dict]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in d.items()]


SENSITIVE = {
    "hcv.lab.alt": "SENSITIVE-1",
    "ALT": "SENSITIVE-2",
    "patient.age": "SENSITIVE-3",
    "user.email": "SENSITIVE-4",
    "http.request.header.authorization": "SENSITIVE-5",
    "enduser.id": "SENSITIVE-6",
    "client.address": "SENSITIVE-7",
    "sex": "SENSITIVE-8",
}
SAFE = {"http.route": "SAFE-ROUTE", "hcv.diagnosis.outcome": "SAFE-OUTCOME"}


def test_scrub_removes_keys_from_logs_end_to_end(collector_bin, stack, tmp_path):
    """Real collector: a log record with health data reaches the sink without it."""
    payload = {
        "resourceLogs": [
            {
                "resource": {"attributes": _attrs({"service.name": "scrub-test", "user.name": "SENSITIVE-9"})},
                "scopeLogs": [
                    {
                        "scope": {"name": "t"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(time.time_ns()),
                                "severityText": "INFO",
                                "body": {"stringValue": "diagnosis done"},
                                "attributes": _attrs({**SENSITIVE, **SAFE}),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    with stack.run_collector(collector_bin, tmp_path) as col:
        assert stack.post_json(col.otlp_http + "/v1/logs", payload)[0] == 200
        assert stack.wait_for(lambda: col.sink.exists() and col.sink.stat().st_size > 0, timeout=15), col.output()
        text = col.sink.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "log sink is empty"
    assert "SENSITIVE" not in text
    for value in SAFE.values():
        assert value in text
    assert "scrub-test" in text and "diagnosis done" in text


def test_scrub_removes_keys_from_spans_and_events(collector_bin, stack, tmp_path):
    """Real collector, debug exporter via the vendor slot: spans leave without health data."""
    now = time.time_ns()
    payload = {
        "resourceSpans": [
            {
                "resource": {"attributes": _attrs({"service.name": "scrub-test", "hcv.lab.ggt": "SENSITIVE-R"})},
                "scopeSpans": [
                    {
                        "scope": {"name": "t"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "GET /diagnose",
                                "kind": 2,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": _attrs({**SENSITIVE, **SAFE}),
                                "events": [
                                    {
                                        "timeUnixNano": str(now),
                                        "name": "lab",
                                        "attributes": _attrs({"hcv.lab.bil": "SENSITIVE-E", "step": "SAFE-EVENT"}),
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    env = {"OTEL_HCV_VENDOR_EXPORTER": "debug", "OTEL_HCV_DEBUG_VERBOSITY": "detailed"}
    with stack.run_collector(collector_bin, tmp_path, env) as col:
        assert stack.post_json(col.otlp_http + "/v1/traces", payload)[0] == 200
        assert stack.wait_for(lambda: "SAFE-EVENT" in col.output(), timeout=15), col.output()
        out = col.output()
    assert "SAFE-ROUTE" in out and "SAFE-OUTCOME" in out
    assert "SENSITIVE" not in out


def test_spanmetrics_reach_prometheus_exporter(collector_bin, stack, tmp_path):
    now = time.time_ns()
    payload = {
        "resourceSpans": [
            {
                "resource": {"attributes": _attrs({"service.name": "spanmetrics-test"})},
                "scopeSpans": [
                    {
                        "scope": {"name": "t"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60d",
                                "spanId": "eee19b7ec3c1b175",
                                "name": "GET /diagnose",
                                "kind": 2,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": _attrs({"http.route": "/diagnose", "http.request.method": "GET"}),
                            }
                        ],
                    }
                ],
            }
        ]
    }

    with stack.run_collector(collector_bin, tmp_path) as col:
        assert stack.post_json(col.otlp_http + "/v1/traces", payload)[0] == 200
        url = f"http://127.0.0.1:{col.ports['prom']}/metrics"

        def scrape():
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read().decode()
            return body if "traces_span_metrics_calls_total" in body else ""

        body = stack.wait_for(scrape, timeout=20, interval=0.5)
    assert body, "spanmetrics never appeared on the prometheus exporter"
    line = next(ln for ln in body.splitlines() if ln.startswith("traces_span_metrics_calls_total{"))
    assert 'service_name="spanmetrics-test"' in line
    assert 'http_route="/diagnose"' in line
    assert "traces_span_metrics_duration_milliseconds_bucket{" in body
    # The labels Jaeger's Monitor tab groups and filters by.
    for label in ('span_name="GET /diagnose"', 'span_kind="SPAN_KIND_SERVER"', 'status_code="STATUS_CODE_UNSET"'):
        assert label in line, line


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        type(self).requests.append((self.path, dict(self.headers.items())))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "headers",
    [
        {"x-honeycomb-team": "test-honeycomb-key"},
        {"Authorization": "Basic MTIzNDU2OnRlc3QtZ3JhZmFuYS10b2tlbg=="},
    ],
    ids=["honeycomb-style", "grafana-cloud-style"],
)
def test_vendor_forwarding_switch(collector_bin, stack, tmp_path, headers):
    """OTEL_HCV_VENDOR_* turn on an OTLP/HTTP exporter that sends the configured headers."""

    class Handler(_Recorder):
        requests: list = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "OTEL_HCV_VENDOR_EXPORTER": "otlp_http/vendor",
            "OTEL_HCV_VENDOR_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            "OTEL_HCV_VENDOR_HEADERS": json.dumps(headers),
        }
        payload = {
            "resourceLogs": [
                {
                    "resource": {"attributes": _attrs({"service.name": "vendor-test"})},
                    "scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}],
                }
            ]
        }
        with stack.run_collector(collector_bin, tmp_path, env) as col:
            assert stack.post_json(col.otlp_http + "/v1/logs", payload)[0] == 200
            got = stack.wait_for(lambda: [r for r in Handler.requests if r[0] == "/v1/logs"], timeout=15)
            assert got, col.output()
    finally:
        server.shutdown()
        server.server_close()
    _path, received = got[0]
    received = {k.lower(): v for k, v in received.items()}
    for name, value in headers.items():
        assert received.get(name.lower()) == value


def test_vendor_queue_survives_a_collector_sigkill(collector_bin, stack, tmp_path):
    """Logs, metrics and spans accepted while the vendor is unreachable wait in the queue on
    disk; after a kill -9 and a restart on the same directory they all reach the vendor."""
    vendor_port = stack.free_port()  # nothing listens there yet

    class Handler(_Recorder):
        bodies: list = []

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":  # the exporter's default
                body = gzip.decompress(body)
            type(self).bodies.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    env = {
        "OTEL_HCV_VENDOR_EXPORTER": "otlp_http/vendor",
        "OTEL_HCV_VENDOR_ENDPOINT": f"http://127.0.0.1:{vendor_port}",
    }
    resource = {"attributes": _attrs({"service.name": "queue-test"})}
    now = str(time.time_ns())
    payloads = {
        "/v1/logs": {"resourceLogs": [{"resource": resource, "scopeLogs": [
            {"logRecords": [{"timeUnixNano": now, "body": {"stringValue": "queued-log-record"}}]}]}]},
        "/v1/metrics": {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [
            {"name": "queued_metric", "gauge": {"dataPoints": [{"timeUnixNano": now, "asInt": "7"}]}}]}]}]},
        "/v1/traces": {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [
            {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "queued-span",
             "kind": 2, "startTimeUnixNano": now, "endTimeUnixNano": now}]}]}]},
    }  # fmt: skip
    markers = {"/v1/logs": b"queued-log-record", "/v1/metrics": b"queued_metric", "/v1/traces": b"queued-span"}
    with stack.run_collector(collector_bin, tmp_path, env) as col:
        for path, payload in payloads.items():
            assert stack.post_json(col.otlp_http + path, payload)[0] == 200
        time.sleep(2)  # past the vendor queue's batch flush_timeout: a first attempt fails
        assert "connection refused" in col.output().lower(), col.output()[-3000:]
        col.proc.kill()  # SIGKILL: nothing is flushed
        col.proc.wait(timeout=10)
    assert (tmp_path / "queue").is_dir() and any((tmp_path / "queue").iterdir())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", vendor_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with stack.run_collector(collector_bin, tmp_path, env) as col:

            def delivered():
                return all(any(p == path and m in b for p, b in Handler.bodies) for path, m in markers.items())

            assert stack.wait_for(delivered, timeout=60, interval=0.5), (
                [p for p, _ in Handler.bodies], col.output()[-3000:])  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()


def test_vendor_forwarding_off_by_default(collector_bin, stack, tmp_path):
    with stack.run_collector(collector_bin, tmp_path) as col:
        out = col.output()
    assert "otlp_http/vendor" not in out
    assert "vendor-forwarding-disabled.invalid" not in out


# --------------------------------------------------------------------------
# Jaeger
# --------------------------------------------------------------------------
def _ports(text: str) -> set[int]:
    return {int(p) for p in re.findall(r":(\d{2,5})\"", text)} | {int(p) for p in re.findall(r"port: (\d+)", text)}


def test_jaeger_config_validates(jaeger_bin, stack):
    proc = subprocess.run(
        [str(jaeger_bin), "validate", "--config", str(stack.JAEGER_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_monitor_tab_reads_what_the_span_metrics_connector_writes(stack, collector_config):
    """Jaeger's Prometheus metrics reader builds its metric names from namespace, unit and the
    normalize flags; the connector's namespace and unit must give the same names."""
    jaeger = stack.load_yaml(stack.JAEGER_CONFIG)
    store = jaeger["extensions"]["jaeger_query"]["storage"]["metrics"]
    reader = jaeger["extensions"]["jaeger_storage"]["metric_backends"][store]["prometheus"]
    connector = collector_config["connectors"]["span_metrics"]
    assert connector["namespace"].replace(".", "_") == reader["metric_namespace"]
    assert connector["histogram"]["unit"] == reader["latency_unit"] == "ms"
    # The prometheus exporter adds _total and the unit's long name: Jaeger must expect them.
    assert reader["normalize_calls"] is True and reader["normalize_duration"] is True
    assert collector_config["exporters"]["prometheus"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    assert stack.resolve_env_defaults(reader["endpoint"]) == "http://127.0.0.1:9090"


def test_jaeger_storage_choices(stack):
    jaeger = stack.load_yaml(stack.JAEGER_CONFIG)
    backends = jaeger["extensions"]["jaeger_storage"]["backends"]
    assert set(backends) == {"badger_store", "memory_store"}
    badger = backends["badger_store"]["badger"]
    assert badger["ephemeral"] is False
    assert stack.resolve_env_defaults(str(badger["ttl"]["spans"])) == "72h"
    # Query and exporter use the same, switchable store; Badger is the default.
    chosen = {jaeger["extensions"]["jaeger_query"]["storage"]["traces"],
              jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"]}  # fmt: skip
    assert {stack.resolve_env_defaults(c) for c in chosen} == {"badger_store"}
    assert {stack.resolve_env_defaults(c, {"JAEGER_TRACE_STORAGE": "memory_store"}) for c in chosen} == {
        "memory_store"
    }


def test_jaeger_and_collector_ports_do_not_collide(stack, collector_config):
    jaeger = _ports(stack.JAEGER_CONFIG.read_text())
    collector = _ports(stack.COLLECTOR_CONFIG.read_text())
    assert {4317, 4318, 8888, 8889, 13133, 55679} <= collector
    assert {14317, 14318, 16686, 14133} <= jaeger
    assert not jaeger & collector, jaeger & collector
    # The collector exports traces to Jaeger's OTLP/HTTP port.
    endpoint = stack.resolve_env_defaults(collector_config["exporters"]["otlp_http/jaeger"]["endpoint"])
    assert endpoint == "http://127.0.0.1:14318"


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_check_config(promtool, stack, name):
    proc = subprocess.run(
        [promtool, "check", "config", str(stack.PROM_DIR / name)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_rejects_broken_config(promtool, tmp_path):
    bad = tmp_path / "prometheus.yml"
    bad.write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: five\n")
    proc = subprocess.run([promtool, "check", "config", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_promtool_check_rules(promtool, stack):
    rules = stack.PROM_DIR / "rules.yml"
    proc = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_scrapes_collector(stack, collector_config):
    cfg = stack.load_yaml(stack.PROM_DIR / "prometheus.yml")
    assert cfg["global"]["scrape_interval"] == "5s"
    assert cfg["rule_files"] == ["rules.yml"]
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in cfg["scrape_configs"]
    }
    exporter_endpoint = stack.resolve_env_defaults(collector_config["exporters"]["prometheus"]["endpoint"])
    exporter_port = exporter_endpoint.rsplit(":", 1)[1]
    reader = collector_config["service"]["telemetry"]["metrics"]["readers"][0]
    telemetry_port = reader["pull"]["exporter"]["prometheus"]["port"]
    assert targets["otel-collector-exporter"] == [f"127.0.0.1:{exporter_port}"]
    assert targets["otel-collector"] == [f"127.0.0.1:{telemetry_port}"]
    assert targets["prometheus"] == ["127.0.0.1:9090"]


def test_prometheus_compose_variant_in_sync(stack):
    native = stack.load_yaml(stack.PROM_DIR / "prometheus.yml")
    composed = stack.load_yaml(stack.PROM_DIR / "prometheus.compose.yml")
    text = json.dumps(native).replace("127.0.0.1:9090", "localhost:9090").replace("127.0.0.1:", "otel-collector:")
    assert json.loads(text) == composed
