"""docker-compose.yml, checked statically (no Docker engine needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

SERVICES = {"postgres", "redis", "jaeger", "otel-collector", "prometheus", "grafana", "hcv", "victorialogs"}


def env_map(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {k: (None if v is None else str(v)) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        name, sep, value = item.partition("=")
        out[name] = value if sep else None
    return out


def published(service: dict) -> dict[int, int]:
    """container port -> host port, for "[ip:]host:container" entries."""
    out = {}
    for entry in service.get("ports") or []:
        parts = str(entry).split(":")
        assert len(parts) == 3 and parts[0] == "127.0.0.1", f"publish on 127.0.0.1 only: {entry}"
        out[int(parts[2])] = int(parts[1])
    return out


def bind_mounts(service: dict) -> list[tuple[str, str, str]]:
    out = []
    for vol in service.get("volumes") or []:
        src, _, rest = str(vol).partition(":")
        target, _, mode = rest.partition(":")
        if src.startswith((".", "/")):
            out.append((src, target, mode))
    return out


def container_path(service: dict, path: str, root: Path) -> Path | None:
    """Host file behind a path inside the container, via the bind mounts."""
    for src, target, _ in bind_mounts(service):
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return (root / src).resolve() / Path(path).relative_to(target)
    return None


def test_services_present(compose):
    assert set(compose["services"]) == SERVICES


def test_images_are_pinned(compose):
    for name, svc in compose["services"].items():
        if "build" in svc:
            continue
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: unpinned image {image}"
    images = {n: s.get("image", "") for n, s in compose["services"].items()}
    assert images["otel-collector"].startswith("otel/opentelemetry-collector-contrib:")
    assert images["jaeger"].startswith("jaegertracing/jaeger:2.")
    assert images["prometheus"].startswith("prom/prometheus:")


def test_mounted_host_files_exist(compose, stack):
    checked = 0
    for name, svc in compose["services"].items():
        for src, _target, mode in bind_mounts(svc):
            if src.startswith("./.stack/"):
                # Runtime data directory (gitignored), created on `up`.
                assert mode != "ro", f"{name}: data dir {src} mounted read-only"
                continue
            path = (stack.ROOT / src).resolve()
            assert path.exists(), f"{name}: mounted {src} does not exist"
            assert stack.ROOT in path.parents, f"{name}: {src} is outside the repository"
            assert mode == "ro", f"{name}: config mount {src} should be read-only"
            checked += 1
    assert checked >= 3


def test_commands_use_mounted_configs(compose, stack):
    svcs = compose["services"]
    col = svcs["otel-collector"]
    cfg = re.search(r"--config=(\S+)", " ".join(col["command"])).group(1)
    assert container_path(col, cfg, stack.ROOT) == stack.COLLECTOR_CONFIG.resolve()

    jae = svcs["jaeger"]
    args = jae["command"]
    cfg = args[args.index("--config") + 1]
    assert container_path(jae, cfg, stack.ROOT) == stack.JAEGER_CONFIG.resolve()

    prom = svcs["prometheus"]
    cfg = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    host_cfg = container_path(prom, cfg, stack.ROOT)
    assert host_cfg == (stack.PROM_DIR / "prometheus.compose.yml").resolve()
    # rule_files are resolved next to the config: rules.yml must be visible there too.
    assert container_path(prom, str(Path(cfg).parent / "rules.yml"), stack.ROOT).exists()


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].rstrip("/").split("/")[0])


def test_collector_ports_match_config(compose, collector_config, stack):
    col = compose["services"]["otel-collector"]
    env = {k: v for k, v in env_map(col).items() if v is not None}
    protocols = collector_config["receivers"]["otlp"]["protocols"]
    ports = {
        _port(stack.resolve_env_defaults(protocols["grpc"]["endpoint"], env)),
        _port(stack.resolve_env_defaults(protocols["http"]["endpoint"], env)),
        _port(stack.resolve_env_defaults(collector_config["exporters"]["prometheus"]["endpoint"], env)),
        _port(stack.resolve_env_defaults(collector_config["extensions"]["health_check"]["endpoint"], env)),
    }
    assert ports == {4317, 4318, 8889, 13133}
    pub = published(col)
    assert set(pub) == ports
    assert all(pub[p] == p for p in ports), pub
    # In a container the listeners must not be bound to loopback.
    assert stack.resolve_env_defaults(protocols["http"]["endpoint"], env).startswith("0.0.0.0:")


def test_jaeger_and_prometheus_ports(compose, stack):
    jaeger_cfg = stack.load_yaml(stack.JAEGER_CONFIG)
    svcs = compose["services"]
    jenv = {k: v for k, v in env_map(svcs["jaeger"]).items() if v is not None}
    query = stack.resolve_env_defaults(jaeger_cfg["extensions"]["jaeger_query"]["http"]["endpoint"], jenv)
    assert query == "0.0.0.0:16686"
    assert published(svcs["jaeger"]) == {16686: 16686}
    assert published(svcs["prometheus"]) == {9090: 9090}
    assert published(svcs["postgres"]) == {5432: 55432}
    assert published(svcs["redis"]) == {6379: 56379}


def test_collector_env_vars_are_set(compose, stack):
    referenced = set(stack.ENV_REF.findall(stack.COLLECTOR_CONFIG.read_text()))
    names = {name for name, _ in referenced}
    env = env_map(compose["services"]["otel-collector"])
    missing = names - set(env)
    assert not missing, f"referenced in otel-config.yaml but not in compose: {sorted(missing)}"
    # The addresses must have values in compose (the rest pass through from the shell).
    for name in ("OTEL_COLLECTOR_BIND", "JAEGER_OTLP_ENDPOINT", "OTEL_HCV_LOG_SINK"):
        assert env[name], name
    assert env["OTEL_COLLECTOR_BIND"] == "0.0.0.0"


def test_collector_peers_resolve_to_services(compose, stack):
    svcs = compose["services"]
    env = env_map(svcs["otel-collector"])
    jaeger_cfg = stack.load_yaml(stack.JAEGER_CONFIG)
    jaeger_http = _port(stack.resolve_env_defaults(jaeger_cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"]))
    assert env["JAEGER_OTLP_ENDPOINT"] == f"http://jaeger:{jaeger_http}"
    # The log sink lives in a mounted directory, so it is readable from the host.
    sink_dir = str(Path(env["OTEL_HCV_LOG_SINK"]).parent)
    assert sink_dir in {t for _, t, _ in bind_mounts(svcs["otel-collector"])}
    # Prometheus (compose variant) scrapes the collector by its service name.
    prom = stack.load_yaml(stack.PROM_DIR / "prometheus.compose.yml")
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {"otel-collector:8889", "otel-collector:8888"} <= targets
    for target in targets:
        host = target.split(":")[0]
        assert host in svcs or host == "localhost", target


def test_app_service_wiring(compose, stack):
    svcs = compose["services"]
    app = svcs["hcv"]
    assert (stack.ROOT / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    env = env_map(app)
    assert env["HCV_DATABASE_URL"] == "postgres://hcv:hcv@postgres:5432/hcv"
    assert env["HCV_REDIS_URL"] == "redis://redis:6379/0"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    pg = env_map(svcs["postgres"])
    assert (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]) == ("hcv", "hcv", "hcv")
    deps = app["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["redis"]["condition"] == "service_healthy"
    assert "otel-collector" in deps


@pytest.mark.parametrize("name", ["postgres", "redis", "jaeger", "prometheus", "grafana", "hcv", "victorialogs"])
def test_healthchecks(compose, name):
    test = compose["services"][name]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1


def test_jaeger_keeps_traces_in_a_volume(compose, stack):
    jaeger = compose["services"]["jaeger"]
    # The same Jaeger release as the native build.
    version = re.search(r"^JAEGER_VERSION=(\S+)$", stack.STACK_SH.read_text(), re.M).group(1)
    assert jaeger["image"] == f"jaegertracing/jaeger:{version}"
    env = env_map(jaeger)
    assert env["JAEGER_TRACE_STORAGE"] == "badger_store"
    volume, _, target = next(v for v in jaeger["volumes"] if not v.startswith((".", "/"))).partition(":")
    assert target == env["JAEGER_BADGER_DIR"]
    assert volume in compose["volumes"]
    assert env["JAEGER_METRICS_PROMETHEUS"] == "http://prometheus:9090"
    # Every variable of jaeger/config.yaml without a default that suits a container is set.
    referenced = {name for name, _ in stack.ENV_REF.findall(stack.JAEGER_CONFIG.read_text())}
    assert {"JAEGER_LISTEN_HOST", "JAEGER_BADGER_DIR", "JAEGER_METRICS_PROMETHEUS"} <= referenced & set(env)


def test_collector_queue_is_on_the_mounted_directory(compose):
    collector = compose["services"]["otel-collector"]
    queue = env_map(collector)["OTEL_HCV_QUEUE_DIR"]
    assert any(queue.startswith(target + "/") for _, target, mode in bind_mounts(collector) if mode != "ro")


def test_grafana_provisions_data_sources_and_dashboards(compose, stack):
    grafana = compose["services"]["grafana"]
    provisioning = container_path(grafana, "/etc/grafana/provisioning", stack.ROOT)
    sources = stack.load_yaml(provisioning / "datasources" / "datasources.yaml")["datasources"]
    by_type = {s["type"]: s for s in sources}
    assert by_type["prometheus"]["url"] == "http://prometheus:9090"
    assert by_type["jaeger"]["url"] == "http://jaeger:16686"
    (provider,) = stack.load_yaml(provisioning / "dashboards" / "dashboards.yaml")["providers"]
    dashboards = container_path(grafana, provider["options"]["path"], stack.ROOT)
    files = sorted(dashboards.glob("*.json"))
    assert files, "no dashboard JSON in the provisioned directory"
    uids = {s["uid"] for s in sources}
    for path in files:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, (path.name, panel["title"])
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    home = env_map(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert container_path(grafana, home, stack.ROOT).is_file()
    assert published(grafana) == {3000: 3000}


def test_dockerfile(stack):
    text = (stack.ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert 'pip install -e ".[sentry]"' in text
    assert "opentelemetry-instrument python example/manage.py runserver 0.0.0.0:8000 --noreload" in text


def test_collector_feeds_victorialogs_and_jaeger_links_to_it(compose, stack):
    svcs = compose["services"]
    env = env_map(svcs["otel-collector"])
    command = " ".join(svcs["victorialogs"]["command"])
    port = re.search(r"-httpListenAddr=:(\d+)", command).group(1)
    assert env["VICTORIALOGS_OTLP_LOGS_ENDPOINT"] == f"http://victorialogs:{port}/insert/opentelemetry/v1/logs"
    assert "victorialogs" in svcs["otel-collector"]["depends_on"]
    assert f"127.0.0.1:{port}:{port}" in svcs["victorialogs"]["ports"]
    assert svcs["victorialogs"]["image"].startswith("victoriametrics/victoria-logs:v1.52.2")
    # The UI config the links live in is mounted where JAEGER_UI_CONFIG points.
    ui_config = env_map(svcs["jaeger"])["JAEGER_UI_CONFIG"]
    assert container_path(svcs["jaeger"], ui_config, stack.ROOT) == (stack.ROOT / "jaeger" / "ui-config.json").resolve()
