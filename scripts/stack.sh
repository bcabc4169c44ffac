#!/usr/bin/env bash
# Native (no Docker) backend stack for otel-hcv: PostgreSQL, Redis, Jaeger v2,
# an OpenTelemetry Collector built with the official builder (ocb), and
# Prometheus; optionally an agent/gateway collector tier (start-tier). Everything
# listens on 127.0.0.1 only. See docs/stack.md and docs/operations.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/stack.sh COMMAND [COMPONENT]

Commands:
  install            Install missing apt packages (redis-server, prometheus + promtool,
                     wrk, curl, npm, chromium + chromium-driver for the browser
                     tests, postgresql if no server binaries exist, Java and Maven
                     if missing), build the collector, the Kafka tier's collector,
                     Jaeger v2, VictoriaLogs and VictoriaMetrics (+ vmauth, vmalert)
                     into the cache (needs Go >= 1.25 on PATH; apt needs root or
                     sudo), the Jaeger UI (Node.js 24 from the npm registry; see
                     OTEL_HCV_JAEGER_UI), and fetch Kafka's jars with Maven.
                     Idempotent; cached binaries and UI builds are reused.
  start [COMPONENT]  Start all components (or one) in the background and wait until
                     each is healthy. Components already running and healthy are left
                     alone. Exits non-zero, showing the log tail, if one fails.
  stop [COMPONENT]   Stop all components (or one); without COMPONENT the tier too.
  restart [COMPONENT]
                     stop then start.
  status             Show pid, health and address of every component
                     (exit 1 if any is not running and healthy).
  env                Print `export` lines with the stack's addresses
                     (use: eval "$(scripts/stack.sh env)").
  validate           Validate collector/otel-config.yaml, agent.yaml (both resolvers),
                     gateway.yaml and jaeger/config.yaml with the built binaries, and
                     the Prometheus config/rules with promtool.
  bin NAME           Print the path of the cached binary NAME (collector|kafka-collector|
                     jaeger|victorialogs|victoriametrics|vmauth|vmalert|kafka);
                     exit 1 if it has not been built.
  start-clusters     Start the loopback clusters: three Kafka brokers (KRaft, each
                     also a controller; topics otlp_spans/otlp_metrics/otlp_logs with
                     replication factor 3), two VictoriaMetrics nodes, vmauth (queries,
                     failing over between the nodes) and vmalert (prometheus/rules.yml).
  stop-clusters      Stop them (`stop` without a component stops them too).
  reset-clusters     Stop them and delete their data.
  status-clusters    Show pid, health and address of every cluster member.
  kafka-topics ARGS  Kafka's topic tool against the loopback brokers, e.g.
                     kafka-topics --describe --topic otlp_spans
  kafka-consumer-groups ARGS
                     Kafka's consumer-group tool, e.g. the gateways' lag:
                     kafka-consumer-groups --describe --group otel-hcv-gateways
  start-tier [N] [direct|kafka]
                     Start the agent/gateway tier beside the stack: N gateways
                     (collector/gateway.yaml; default 2, at most 4) and one agent
                     (collector/agent.yaml) that routes spans to them by trace id
                     (static resolver). Send OTLP to the agent (http://127.0.0.1:25018).
                     The gateways export to Jaeger and are scraped by Prometheus, so
                     run `start` too. A tier running with another N is restarted.
                     OTEL_HCV_SAMPLING_* in the environment reach the gateways.
                     kafka: the agent writes every signal to Kafka (keyed by trace
                     id) and the gateways consume it as one group, writing metrics
                     to both VictoriaMetrics nodes and logs to VictoriaLogs; needs
                     start-clusters (collector/kafka-agent.yaml, kafka-gateway.yaml).
  stop-tier          Stop the agent and the gateways (`stop` without a component
                     stops them too).
  status-tier        Show pid, health and address of the agent and the gateways
                     (exit 1 if the tier is not fully running and healthy).
  help               Show this help.

Components (start order): postgres redis jaeger victorialogs collector prometheus
Tier members (start-tier): gateway-1 .. gateway-N, then agent. Member k (agent 0,
  gateway-i i) listens on 25k17 OTLP gRPC, 25k18 OTLP HTTP, 25k33 health, 25k88 own
  metrics, and a gateway on 25k89 (prometheus exporter): agent 25017, gateway-1 25117.

Environment:
  OTEL_HCV_CACHE          build cache: Go toolchain caches and binaries
                          (default: $HOME/.cache/otel-hcv)
  OTEL_HCV_STATE          pid files, logs, PostgreSQL/Prometheus data (default: /tmp/otel-hcv-stack)
  OTEL_HCV_DATA           what must outlive a reboot: Jaeger's Badger store,
                          VictoriaLogs' data and the collector's persistent export queues
                          (default: ${XDG_DATA_HOME:-$HOME/.local/share}/otel-hcv)
  OTEL_HCV_PG_PORT        PostgreSQL port (default: 55432)
  OTEL_HCV_REDIS_PORT     Redis port (default: 56379)
  OTEL_HCV_PG_OS_USER     OS user that runs PostgreSQL when started as root
                          (default: postgres; created if missing)
  OTEL_HCV_START_TIMEOUT  seconds to wait for each component to become healthy (default: 60)
  OTEL_HCV_JAEGER_UI      Jaeger UI for `install`: a jaeger-ui source archive
                          (jaeger-ui-vX.Y.Z.tar.gz, built with Node.js into the cache)
                          or a directory of built UI assets (used as is). Default: the
                          archive in shared/vendor/jaeger-ui/ beside the clone, if any.
                          Without either, Jaeger serves a placeholder page at / (the
                          query API still works).
  OTEL_HCV_JAEGER_STORAGE Jaeger's trace store: badger (default; on disk in
                          $OTEL_HCV_STATE/jaeger, kept across restarts) or memory
  OTEL_HCV_JAEGER_RETENTION
                          how long Badger keeps spans (Go duration, default: 72h)
  OTEL_HCV_LOGS_RETENTION how long VictoriaLogs keeps log lines (default: 7d)
  OTEL_HCV_KAFKA_PARTITIONS
                          partitions per Kafka topic (default: 6)
  OTEL_HCV_KAFKA_HEAP     heap of each Kafka broker (default: 512m)
  OTEL_HCV_VENDOR_*       optional vendor forwarding, passed to the collector
                          (see docs/stack.md)
EOF
}

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${OTEL_HCV_CACHE:-$HOME/.cache/otel-hcv}"
STATE="${OTEL_HCV_STATE:-/tmp/otel-hcv-stack}"
DATA="${OTEL_HCV_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/otel-hcv}"
JAEGER_STORAGE="${OTEL_HCV_JAEGER_STORAGE:-badger}"
JAEGER_RETENTION="${OTEL_HCV_JAEGER_RETENTION:-72h}"
LOGS_RETENTION="${OTEL_HCV_LOGS_RETENTION:-7d}"
PG_PORT="${OTEL_HCV_PG_PORT:-55432}"
REDIS_PORT="${OTEL_HCV_REDIS_PORT:-56379}"
PG_OS_USER="${OTEL_HCV_PG_OS_USER:-postgres}"
START_TIMEOUT="${OTEL_HCV_START_TIMEOUT:-60}"
HOST=127.0.0.1

# Fixed ports (the configs in collector/, jaeger/ and prometheus/ use them).
OTLP_GRPC_PORT=4317
OTLP_HTTP_PORT=4318
COLLECTOR_PROM_PORT=8889
COLLECTOR_METRICS_PORT=8888
COLLECTOR_HEALTH_PORT=13133
JAEGER_OTLP_HTTP_PORT=14318
JAEGER_QUERY_PORT=16686
JAEGER_HEALTH_PORT=14133
PROMETHEUS_PORT=9090
# VictoriaLogs: OTLP logs in, LogsQL queries and its web UI (/select/vmui/) out.
VICTORIALOGS_PORT=9428

# Collector: built with go.opentelemetry.io/collector/cmd/builder at this version;
# collector/builder-config.yaml pins every component to the same release.
OCB_VERSION=0.159.0
# Jaeger v2. `go install github.com/jaegertracing/jaeger/cmd/jaeger@<v2.20.0 commit>`
# does not work: the Go module proxy refuses that pseudo-version ("This module
# version is not available"), and every tagged version carries a replace directive
# that `go install` rejects. What works: download the tagged module with
# `go mod download` and `go build ./cmd/jaeger` inside a writable copy of it (the
# main module's replace directive then applies). v1.75.0 (= Jaeger v2.12.0) is
# the release the module proxy marks as approved; newer ones are served but not
# approved.
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_MODULE_VERSION=v1.75.0
JAEGER_VERSION=2.12.0
# The Jaeger UI (github.com/jaegertracing/jaeger-ui) is released separately and
# is not in the Go module: it is built with Node.js from a source archive and
# served from a directory (jaeger/config.yaml: ui.assets_path). Upstream ships
# Jaeger v2.12.0 with UI v1.75.0; the source archive available to this project is
# UI v1.76.0 (the one Jaeger v2.13.0 ships), which uses the same query API
# (/api/services, /api/traces, /api/metrics) -- tests/e2e/test_jaeger_ui.py renders
# it against this Jaeger in a browser.
JAEGER_UI_VERSION=1.76.0
NODE_MAJOR=24
# The Kafka tier's collector (collector/builder-config-kafka.yaml says why it is a
# second binary at another release).
OCB_KAFKA_VERSION=0.155.0
# VictoriaLogs (the searchable log store) and VictoriaMetrics (the metrics store of
# the loopback clusters): built from their Go modules like Jaeger. The cluster form of
# VictoriaMetrics (vminsert/vmselect/vmstorage) lives on upstream's `cluster` branch
# and its -cluster tags, which the Go module proxy does not serve (v1.151.0-cluster:
# "not available"); the module's app/vmselect and app/vmstorage are the single-node
# binary's libraries. So the clusters run two single-node VictoriaMetrics, written to
# by every gateway (replication factor 2 on the writer's side) and read through
# vmauth, which fails over between them (docs/operations.md).
VICTORIALOGS_MODULE=github.com/VictoriaMetrics/VictoriaLogs
VICTORIALOGS_VERSION=v1.52.2
VICTORIAMETRICS_MODULE=github.com/VictoriaMetrics/VictoriaMetrics
VICTORIAMETRICS_VERSION=v1.151.0
VICTORIAMETRICS_APPS=(victoria-metrics vmauth vmalert)
# Apache Kafka: its jars and their runtime dependencies, resolved by Maven from
# kafka/pom.xml, run on the machine's Java (17 or newer).
KAFKA_VERSION=4.4.0

COMPONENTS=(postgres redis jaeger victorialogs collector prometheus)

# Agent/gateway tier (start-tier). Member k -- agent k=0, gateway-i k=i -- uses the
# ports 25000 + 100*k + {17 OTLP gRPC, 18 OTLP HTTP, 33 health, 88 own metrics,
# 89 prometheus exporter (gateways only)}. prometheus/prometheus.yml scrapes
# gateways 1..MAX_GATEWAYS.
AGENT_CONFIG="$ROOT/collector/agent.yaml"
GATEWAY_CONFIG="$ROOT/collector/gateway.yaml"
TIER_PORT_BASE=25000
MAX_GATEWAYS=4
DEFAULT_GATEWAYS=2
TIER_GATEWAYS=$DEFAULT_GATEWAYS

# The loopback clusters (start-clusters): three Kafka brokers (KRaft, each also a
# controller), two VictoriaMetrics nodes, vmauth in front of them for queries and
# vmalert running prometheus/rules.yml. Kafka member i listens on 29000 + 100*i + 92
# (clients) and + 93 (controllers); VictoriaMetrics node i on 28000 + 100*i + 28;
# vmauth on 28028, vmalert on 28088.
KAFKA_MEMBERS=(kafka-1 kafka-2 kafka-3)
VM_MEMBERS=(victoriametrics-1 victoriametrics-2)
CLUSTER_MEMBERS=("${KAFKA_MEMBERS[@]}" "${VM_MEMBERS[@]}" vmauth vmalert)
KAFKA_TOPICS=(otlp_spans otlp_metrics otlp_logs)
KAFKA_PARTITIONS="${OTEL_HCV_KAFKA_PARTITIONS:-6}"
KAFKA_HEAP="${OTEL_HCV_KAFKA_HEAP:-512m}"
VMAUTH_PORT=28028
VMALERT_PORT=28088
KAFKA_AGENT_CONFIG="$ROOT/collector/kafka-agent.yaml"
KAFKA_GATEWAY_CONFIG="$ROOT/collector/kafka-gateway.yaml"

COLLECTOR_CONFIG="$ROOT/collector/otel-config.yaml"
BUILDER_CONFIG="$ROOT/collector/builder-config.yaml"
JAEGER_CONFIG="$ROOT/jaeger/config.yaml"
PROM_CONFIG="$ROOT/prometheus/prometheus.yml"
PROM_RULES="$ROOT/prometheus/rules.yml"
LOG_SINK="$STATE/collector/logs.jsonl"

RUN_DIR="$STATE/run"
LOG_DIR="$STATE/log"
PGDATA="$STATE/postgres/data"
PG_SOCKET_DIR="$STATE/postgres/socket"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------
builder_config_hash() { sha256sum "$BUILDER_CONFIG" | cut -c1-8; }
# The collector binary is keyed by the builder version and the manifest's hash,
# so adding a component to builder-config.yaml triggers a rebuild.
collector_bin() { echo "$CACHE/bin/otelcol-hcv-$OCB_VERSION-$(builder_config_hash)"; }
jaeger_bin() { echo "$CACHE/bin/jaeger-$JAEGER_VERSION"; }
node_prefix() { echo "$CACHE/tools/node-$NODE_MAJOR"; }
builder_bin() { echo "$CACHE/tools/builder-v${1:-$OCB_VERSION}/builder"; }
BUILDER_KAFKA_CONFIG="$ROOT/collector/builder-config-kafka.yaml"
kafka_collector_bin() {
  echo "$CACHE/bin/otelcol-hcv-kafka-$OCB_KAFKA_VERSION-$(sha256sum "$BUILDER_KAFKA_CONFIG" | cut -c1-8)"
}
victorialogs_bin() { echo "$CACHE/bin/victoria-logs-$VICTORIALOGS_VERSION"; }
victoriametrics_bin() { echo "$CACHE/bin/${1:-victoria-metrics}-$VICTORIAMETRICS_VERSION"; }
kafka_home() { echo "$CACHE/kafka/$KAFKA_VERSION"; }

pg_bindir() {
  local d
  # Highest installed major version first.
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4 -V -r); do
    [[ -x "$d/postgres" ]] && { echo "$d"; return 0; }
  done
  if command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  return 1
}

find_go() {
  if command -v go >/dev/null 2>&1; then command -v go; return 0; fi
  local g
  for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [[ -x "$g" ]] && { echo "$g"; return 0; }
  done
  return 1
}

go_env() {
  local go
  go="$(find_go)" || die "Go is not installed (need Go >= 1.25 on PATH to build the collector and Jaeger)"
  PATH="$(dirname "$go"):$PATH"
  export PATH
  export GOPATH="$CACHE/go"
  export GOMODCACHE="$CACHE/go/pkg/mod"
  export GOCACHE="$CACHE/go-build"
  export GOTOOLCHAIN=local
  export CGO_ENABLED=0
  export GOFLAGS="-buildvcs=false"
  mkdir -p "$GOPATH" "$GOMODCACHE" "$GOCACHE" "$CACHE/bin" "$CACHE/build" "$CACHE/tools"
}

# run_with_progress LABEL LOGFILE CMD... : run CMD with output to LOGFILE and print a
# progress line every 20 s. On failure print the log tail and return the exit code.
run_with_progress() {
  local label="$1" logfile="$2"; shift 2
  local start=$SECONDS next=20 pid rc=0
  "$@" >"$logfile" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS - start >= next )); then
      local last
      last="$(tail -n 1 "$logfile" 2>/dev/null | cut -c1-120)"
      log "$label: still running after $((SECONDS - start))s${last:+ (last: $last)}"
      next=$((next + 20))
    fi
  done
  wait "$pid" || rc=$?
  if (( rc != 0 )); then
    log "$label FAILED after $((SECONDS - start))s (exit $rc); last lines of $logfile:"
    tail -n 40 "$logfile" >&2 || true
    return "$rc"
  fi
  log "$label: done in $((SECONDS - start))s"
}

build_collector() {
  local bin out builder
  bin="$(collector_bin)"
  if [[ -x "$bin" ]]; then
    log "collector: cached $bin"
    return 0
  fi
  go_env
  install_builder "$OCB_VERSION"
  builder="$(builder_bin)"
  out="$CACHE/build/otelcol-hcv-$OCB_VERSION-$(builder_config_hash)"
  rm -rf "$out"
  log "collector: building with ocb v$OCB_VERSION (first build takes several minutes)"
  run_with_progress "collector build" "$CACHE/build/otelcol-build.log" \
    "$builder" --config "$BUILDER_CONFIG" --output-path "$out"
  cp "$out/otelcol-hcv" "$bin.tmp.$$"
  mv -f "$bin.tmp.$$" "$bin"
  log "collector: built $bin"
}

install_builder() {
  local version="$1" builder
  builder="$(builder_bin "$version")"
  if [[ ! -x "$builder" ]]; then
    log "collector: installing builder v$version (go install)"
    run_with_progress "go install builder v$version" "$CACHE/build/builder-install-$version.log" \
      env GOBIN="$(dirname "$builder")" go install "go.opentelemetry.io/collector/cmd/builder@v$version"
  fi
}

# The Kafka tier's collector: ocb writes the sources and go.mod; its own `go mod tidy`
# then fails on test-only imports of some dependencies that the module proxy does not
# serve at this release, so the tidy is redone with -e (which records every module the
# build needs and leaves those out) and the binary is built with `go build`.
build_kafka_collector() {
  local bin out
  bin="$(kafka_collector_bin)"
  if [[ -x "$bin" ]]; then
    log "kafka collector: cached $bin"
    return 0
  fi
  go_env
  install_builder "$OCB_KAFKA_VERSION"
  out="$CACHE/build/$(basename "$bin")"
  rm -rf "$out"
  log "kafka collector: building with ocb v$OCB_KAFKA_VERSION (first build takes several minutes)"
  "$(builder_bin "$OCB_KAFKA_VERSION")" --config "$BUILDER_KAFKA_CONFIG" --output-path "$out" \
    --skip-compilation >"$CACHE/build/otelcol-kafka-generate.log" 2>&1 || true
  [[ -f $out/go.mod && -f $out/components.go ]] \
    || { tail -n 20 "$CACHE/build/otelcol-kafka-generate.log" >&2; die "kafka collector: ocb wrote no sources"; }
  # shellcheck disable=SC2016 # $1, $2 are expanded by the inner bash
  run_with_progress "kafka collector build" "$CACHE/build/otelcol-kafka-build.log" \
    bash -c 'cd "$1" && go mod tidy -e -compat=1.25 && go build -trimpath -ldflags "-s -w" -o "$2" .' \
    _ "$out" "$bin.tmp.$$"
  mv -f "$bin.tmp.$$" "$bin"
  rm -rf "$out"
  log "kafka collector: built $bin"
}

# build_go_module_apps MODULE VERSION NAME-FUNCTION APP...: download the tagged module
# and `go build ./app/APP` for each APP inside a writable copy of it (the module's own
# go.mod, replace directives included, then applies).
build_go_module_apps() {
  local module="$1" version="$2" name_of="$3" dir src app missing=()
  shift 3
  for app in "$@"; do
    [[ -x "$("$name_of" "$app")" ]] || missing+=("$app")
  done
  if (( ${#missing[@]} == 0 )); then
    log "$module: cached ($*)"
    return 0
  fi
  go_env
  log "$module: downloading $version"
  run_with_progress "go mod download $module" "$CACHE/build/$(basename "$module")-download.log" \
    go mod download -json "$module@$version"
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$CACHE/build/$(basename "$module")-download.log" | head -n 1)"
  [[ -n "$dir" && -d "$dir" ]] || die "$module: could not locate the downloaded module"
  src="$CACHE/build/$(basename "$module")-src-$version"
  rm -rf "$src"
  cp -R "$dir" "$src"
  chmod -R u+w "$src"
  for app in "${missing[@]}"; do
    log "$module: building ./app/$app"
    # shellcheck disable=SC2016 # $1..$3 are expanded by the inner bash
    run_with_progress "$app build" "$CACHE/build/$app-build.log" \
      bash -c 'cd "$1" && go build -trimpath -ldflags "-s -w" -o "$3" "./app/$2"' \
      _ "$src" "$app" "$("$name_of" "$app").tmp.$$"
    mv -f "$("$name_of" "$app").tmp.$$" "$("$name_of" "$app")"
  done
  rm -rf "$src"
}

victorialogs_name() { victorialogs_bin; }

build_victorialogs() {
  build_go_module_apps "$VICTORIALOGS_MODULE" "$VICTORIALOGS_VERSION" victorialogs_name victoria-logs
}

build_victoriametrics() {
  build_go_module_apps "$VICTORIAMETRICS_MODULE" "$VICTORIAMETRICS_VERSION" victoriametrics_bin \
    "${VICTORIAMETRICS_APPS[@]}"
}

# Kafka: Maven resolves the runtime dependency tree of kafka/pom.xml into the cache.
install_kafka() {
  local home libs
  home="$(kafka_home)"
  libs="$home/libs"
  if [[ -f "$home/.complete" ]]; then
    log "kafka: cached $home"
    return 0
  fi
  command -v java >/dev/null 2>&1 || die "kafka: Java 17 or newer is needed (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null 2>&1 || die "kafka: Maven is needed to fetch Kafka's jars (apt-get install maven)"
  rm -rf "$home"
  mkdir -p "$libs"
  log "kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies (Maven)"
  run_with_progress "kafka jars" "$CACHE/build/kafka-resolve.log" \
    mvn -B -q -f "$ROOT/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" -Dmaven.repo.local="$CACHE/maven" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs"
  [[ -f "$libs/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after resolution"
  touch "$home/.complete"
  log "kafka: $(find "$libs" -name '*.jar' | wc -l) jars in $libs"
}

build_jaeger() {
  local bin src dir
  bin="$(jaeger_bin)"
  if [[ -x "$bin" ]]; then
    log "jaeger: cached $bin"
    return 0
  fi
  go_env
  log "jaeger: downloading $JAEGER_MODULE@$JAEGER_MODULE_VERSION (Jaeger v$JAEGER_VERSION)"
  run_with_progress "go mod download jaeger" "$CACHE/build/jaeger-download.log" \
    go mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION"
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$CACHE/build/jaeger-download.log" | head -n 1)"
  [[ -n "$dir" && -d "$dir" ]] || die "jaeger: could not locate the downloaded module (see $CACHE/build/jaeger-download.log)"
  src="$CACHE/build/jaeger-src-$JAEGER_MODULE_VERSION"
  rm -rf "$src"
  cp -R "$dir" "$src"
  chmod -R u+w "$src"
  # The module zip has an empty cmd/query/app/ui/actual (the UI is built with npm
  # upstream); `//go:embed actual/*` needs at least one file. Without the assets
  # Jaeger serves a placeholder page at / -- the query API is unaffected.
  if [[ -z "$(ls -A "$src/cmd/query/app/ui/actual" 2>/dev/null)" ]]; then
    mkdir -p "$src/cmd/query/app/ui/actual"
    echo "UI assets are not embedded in this build" >"$src/cmd/query/app/ui/actual/README"
  fi
  log "jaeger: building ./cmd/jaeger (first build takes several minutes)"
  # shellcheck disable=SC2016 # $1..$4 are expanded by the inner bash
  run_with_progress "jaeger build" "$CACHE/build/jaeger-build.log" \
    bash -c 'cd "$1" && go build -trimpath -ldflags "-s -w -X $2/internal/version.latestVersion=v$3" -o "$4" ./cmd/jaeger' \
    _ "$src" "$JAEGER_MODULE" "$JAEGER_VERSION" "$bin.tmp.$$"
  mv -f "$bin.tmp.$$" "$bin"
  rm -rf "$src"
  log "jaeger: built $bin"
}

# --------------------------------------------------------------------------
# Jaeger UI
# --------------------------------------------------------------------------
# The UI source archive shipped beside the clone (shared/vendor/jaeger-ui/), if any.
vendored_ui_archive() {
  local d
  d="$(cd "$ROOT/.." && pwd)/shared/vendor/jaeger-ui"
  [[ -f $d/jaeger-ui-v$JAEGER_UI_VERSION.tar.gz ]] && echo "$d/jaeger-ui-v$JAEGER_UI_VERSION.tar.gz"
}

# The built UI that `start` hands to Jaeger (recorded by `install`); empty if none.
ui_link() { echo "$CACHE/ui/for-jaeger-$JAEGER_VERSION"; }

jaeger_ui_dir() {
  local src="${OTEL_HCV_JAEGER_UI:-}" link
  if [[ -n $src && -f $src/index.html ]]; then
    (cd "$src" && pwd)
    return 0
  fi
  link="$(ui_link)"
  [[ -f $link/index.html ]] && { readlink -f "$link"; return 0; }
  return 1
}

# A Node.js >= NODE_MAJOR on PATH: the machine's, or the npm registry's `node`
# package installed into the cache.
ensure_node() {
  local have prefix
  have="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if (( have >= NODE_MAJOR )); then return 0; fi
  prefix="$(node_prefix)"
  if [[ ! -x $prefix/node_modules/.bin/node ]]; then
    command -v npm >/dev/null 2>&1 || die "jaeger-ui: npm is needed to install Node.js $NODE_MAJOR (apt-get install npm)"
    log "jaeger-ui: installing Node.js $NODE_MAJOR (npm package node@$NODE_MAJOR) into $prefix"
    mkdir -p "$prefix"
    run_with_progress "npm install node@$NODE_MAJOR" "$CACHE/build/node-install.log" \
      npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "node@$NODE_MAJOR"
  fi
  PATH="$prefix/node_modules/.bin:$PATH"
  export PATH
  have="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  (( have >= NODE_MAJOR )) || die "jaeger-ui: Node.js $NODE_MAJOR not usable from $prefix (see $CACHE/build/node-install.log)"
}

# build_ui_archive ARCHIVE OUT: npm ci + the UI package's production build of a
# jaeger-ui source archive; the static assets end up in OUT.
build_ui_archive() {
  local archive="$1" out="$2" src top
  ensure_node
  src="$CACHE/build/jaeger-ui-src"
  rm -rf "$src"
  mkdir -p "$src"
  tar -xzf "$archive" -C "$src"
  # git archive puts everything under one top directory.
  top="$(dirname "$(find "$src" -maxdepth 4 -path '*/packages/jaeger-ui/package.json' | head -n 1)")"
  [[ -n $top && -f $top/package.json ]] || die "jaeger-ui: $archive has no packages/jaeger-ui/package.json"
  top="$(dirname "$(dirname "$top")")"
  export npm_config_cache="$CACHE/npm"
  log "jaeger-ui: npm ci (node $(node --version))"
  run_with_progress "jaeger-ui npm ci" "$CACHE/build/jaeger-ui-npm-ci.log" \
    bash -c 'cd "$1" && npm ci --no-audit --no-fund' _ "$top"
  log "jaeger-ui: production build"
  run_with_progress "jaeger-ui build" "$CACHE/build/jaeger-ui-build.log" \
    bash -c 'cd "$1/packages/jaeger-ui" && npm run build' _ "$top"
  [[ -f $top/packages/jaeger-ui/build/index.html ]] || die "jaeger-ui: the build wrote no index.html (see $CACHE/build/jaeger-ui-build.log)"
  rm -rf "$out.tmp.$$"
  cp -R "$top/packages/jaeger-ui/build" "$out.tmp.$$"
  rm -rf "$out"
  mv "$out.tmp.$$" "$out"
  rm -rf "$src"
}

build_ui() {
  local src="${OTEL_HCV_JAEGER_UI:-}" name version out start=$SECONDS
  mkdir -p "$CACHE/ui"
  if [[ -z $src ]]; then
    src="$(vendored_ui_archive)" || true
  fi
  if [[ -z $src ]]; then
    if [[ -f "$(ui_link)/index.html" ]]; then
      log "jaeger-ui: cached $(readlink -f "$(ui_link)")"
      return 0
    fi
    log "jaeger-ui: NO UI: neither OTEL_HCV_JAEGER_UI nor shared/vendor/jaeger-ui/jaeger-ui-v$JAEGER_UI_VERSION.tar.gz"
    log "  beside the clone exists, so Jaeger will serve a placeholder page at http://$HOST:$JAEGER_QUERY_PORT/"
    log "  (the query API, the demo's output and the tests of the API still work). To get the UI, set"
    log "  OTEL_HCV_JAEGER_UI to a jaeger-ui source archive or a directory of built assets and run install again."
    return 0
  fi
  if [[ -d $src ]]; then
    [[ -f $src/index.html ]] || die "jaeger-ui: OTEL_HCV_JAEGER_UI=$src is a directory without index.html (not built UI assets)"
    ln -sfn "$(cd "$src" && pwd)" "$(ui_link)"
    log "jaeger-ui: using the assets in $src"
    return 0
  fi
  [[ -f $src ]] || die "jaeger-ui: OTEL_HCV_JAEGER_UI=$src does not exist"
  # Cached by the archive's version (jaeger-ui-vX.Y.Z.tar.gz), else by its hash.
  name="$(basename "$src")"
  if [[ $name =~ ^jaeger-ui-v?([0-9][0-9A-Za-z.-]*)\.(tar\.gz|tgz)$ ]]; then
    version="${BASH_REMATCH[1]}"
  else
    version="sha-$(sha256sum "$src" | cut -c1-12)"
  fi
  out="$CACHE/ui/jaeger-ui-$version"
  if [[ ! -f $out/index.html ]]; then
    log "jaeger-ui: building UI $version from $src (first build takes a few minutes)"
    build_ui_archive "$src" "$out"
    log "jaeger-ui: built $out in $((SECONDS - start))s"
  else
    log "jaeger-ui: cached $out"
  fi
  ln -sfn "$out" "$(ui_link)"
}

apt_install() {
  local missing=() pkg
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
  # Kafka (start-clusters) runs on Java 17+ and its jars come through Maven.
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  if (( ${#missing[@]} == 0 )); then
    log "apt: all packages present"
    return 0
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install: ${missing[*]}"
    sudo=(sudo)
  fi
  log "apt: installing ${missing[*]}"
  # Keep package maintainer scripts from starting system-wide services (Debian's
  # redis-server and prometheus would grab 6379/9090) when no policy exists yet.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  local rc=0
  {
    "${sudo[@]}" apt-get update -q &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >"$CACHE/build/apt.log" 2>&1 || rc=$?
  (( added_policy )) && "${sudo[@]}" rm -f "$policy"
  if (( rc != 0 )); then
    tail -n 30 "$CACHE/build/apt.log" >&2
    die "apt-get install failed"
  fi
  for pkg in redis-server prometheus promtool wrk curl npm chromium chromedriver; do
    command -v "$pkg" >/dev/null 2>&1 || die "apt: $pkg still missing after install"
  done
  log "apt: done"
}

cmd_install() {
  mkdir -p "$CACHE/bin" "$CACHE/build"
  local start=$SECONDS
  apt_install
  build_collector
  build_jaeger
  build_ui
  build_victorialogs
  build_kafka_collector
  build_victoriametrics
  install_kafka
  log "install complete in $((SECONDS - start))s"
  log "  collector: $(collector_bin)"
  log "  kafka tier collector: $(kafka_collector_bin)"
  log "  victorialogs: $(victorialogs_bin)"
  log "  victoriametrics: $(victoriametrics_bin) (+ vmauth, vmalert)"
  log "  kafka: $(kafka_home)"
  log "  jaeger:    $(jaeger_bin)"
  log "  jaeger UI: $(jaeger_ui_dir || echo 'none (placeholder page)')"
}

# --------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------
pidfile() { echo "$RUN_DIR/$1.pid"; }
logfile() { echo "$LOG_DIR/$1.log"; }

# Word that must appear in the process command line (guards against pid reuse).
proc_marker() {
  case "$1" in
    postgres) echo postgres ;;
    redis) echo redis ;;
    jaeger) echo jaeger ;;
    collector) echo otelcol-hcv ;;
    victorialogs) echo victoria-logs ;;
    prometheus) echo prometheus ;;
    # Either tier (direct: agent.yaml; kafka: kafka-agent.yaml), from this clone only.
    agent) echo "$ROOT/collector/[a-z-]*agent\.yaml" ;;
    gateway-*) echo "$ROOT/collector/[a-z-]*gateway\.yaml" ;;
    kafka-*) echo "$STATE/clusters/$1/server.properties" ;;
    victoriametrics-*) echo "$STATE/clusters/$1/data" ;;
    vmauth) echo "$STATE/clusters/vmauth.yaml" ;;
    vmalert) echo "-rule=$PROM_RULES" ;;
  esac
}

component_pid() {
  local c="$1" f pid
  if [[ $c == postgres ]]; then
    f="$PGDATA/postmaster.pid"
  else
    f="$(pidfile "$c")"
  fi
  [[ -r "$f" ]] || return 1
  pid="$(head -n 1 "$f" | tr -dc '0-9')"
  [[ -n "$pid" ]] || return 1
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(proc_marker "$c")" || return 1
  echo "$pid"
}

is_running() { component_pid "$1" >/dev/null; }

# Alive and not a zombie waiting for its (re)parent to reap it.
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ "$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" != Z ]]
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

component_port() {
  case "$1" in
    postgres) echo "$PG_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
    jaeger) echo "$JAEGER_QUERY_PORT" ;;
    collector) echo "$OTLP_HTTP_PORT" ;;
    victorialogs) echo "$VICTORIALOGS_PORT" ;;
    prometheus) echo "$PROMETHEUS_PORT" ;;
    agent | gateway-*) tier_port "$1" 18 ;;
    kafka-*) kafka_port "$1" 92 ;;
    victoriametrics-*) vm_port "$1" ;;
    vmauth) echo "$VMAUTH_PORT" ;;
    vmalert) echo "$VMALERT_PORT" ;;
  esac
}

# kafka_port kafka-I SUFFIX: 92 (clients) or 93 (controllers).
kafka_port() { echo $((29000 + 100 * ${1#kafka-} + $2)); }
vm_port() { echo $((28000 + 100 * ${1#victoriametrics-} + 28)); }
kafka_bootstrap() {
  local m out=""
  for m in "${KAFKA_MEMBERS[@]}"; do out+="${out:+,}$HOST:$(kafka_port "$m" 92)"; done
  echo "$out"
}

# tier_port MEMBER SUFFIX: port SUFFIX (17, 18, 33, 88, 89) of a tier member.
tier_port() {
  local k
  case "$1" in
    agent) k=0 ;;
    gateway-*) k="${1#gateway-}" ;;
    *) die "not a tier member: $1" ;;
  esac
  echo $((TIER_PORT_BASE + 100 * k + $2))
}

# The gateways' OTLP gRPC addresses as a YAML list, for the agent's static resolver.
tier_gateway_list() {
  local i out=""
  for ((i = 1; i <= TIER_GATEWAYS; i++)); do
    out+="${out:+, }$HOST:$(tier_port "gateway-$i" 17)"
  done
  echo "[$out]"
}

component_address() {
  case "$1" in
    postgres) echo "postgres://hcv:hcv@$HOST:$PG_PORT/hcv" ;;
    redis) echo "redis://$HOST:$REDIS_PORT/0" ;;
    jaeger) echo "http://$HOST:$JAEGER_QUERY_PORT (OTLP in: $HOST:14317 grpc, $HOST:$JAEGER_OTLP_HTTP_PORT http)" ;;
    collector) echo "OTLP $HOST:$OTLP_GRPC_PORT grpc, http://$HOST:$OTLP_HTTP_PORT; metrics http://$HOST:$COLLECTOR_PROM_PORT/metrics" ;;
    prometheus) echo "http://$HOST:$PROMETHEUS_PORT" ;;
    victorialogs) echo "http://$HOST:$VICTORIALOGS_PORT (UI /select/vmui/, OTLP logs in /insert/opentelemetry/v1/logs)" ;;
    agent) echo "OTLP $HOST:$(tier_port agent 17) grpc, http://$HOST:$(tier_port agent 18); own metrics :$(tier_port agent 88), health :$(tier_port agent 33)" ;;
    gateway-*)
      if [[ $(tier_recorded_mode) == kafka ]]; then
        echo "Kafka group otel-hcv-gateways; metrics http://$HOST:$(tier_port "$1" 89)/metrics, own :$(tier_port "$1" 88), health :$(tier_port "$1" 33)"
      else
        echo "OTLP $HOST:$(tier_port "$1" 17) grpc, :$(tier_port "$1" 18) http; metrics http://$HOST:$(tier_port "$1" 89)/metrics, own :$(tier_port "$1" 88), health :$(tier_port "$1" 33)"
      fi ;;
    kafka-*) echo "$HOST:$(kafka_port "$1" 92) (controller $HOST:$(kafka_port "$1" 93))" ;;
    victoriametrics-*) echo "http://$HOST:$(vm_port "$1") (remote write /api/v1/write)" ;;
    vmauth) echo "http://$HOST:$VMAUTH_PORT (Prometheus query API over the VictoriaMetrics nodes)" ;;
    vmalert) echo "http://$HOST:$VMALERT_PORT (prometheus/rules.yml against vmauth)" ;;
  esac
}

psql_bin() { echo "$(pg_bindir)/psql"; }

is_healthy() {
  case "$1" in
    postgres)
      PGPASSWORD=hcv PGCONNECT_TIMEOUT=2 "$(psql_bin)" -X -q -h "$HOST" -p "$PG_PORT" -U hcv -d hcv \
        -tAc 'select 1' >/dev/null 2>&1 ;;
    redis)
      [[ "$(redis_cmd PING)" == PONG* ]] ;;
    jaeger)
      http_ok "http://$HOST:$JAEGER_HEALTH_PORT/status" && http_ok "http://$HOST:$JAEGER_QUERY_PORT/api/services" ;;
    collector)
      http_ok "http://$HOST:$COLLECTOR_HEALTH_PORT/" && http_ok "http://$HOST:$COLLECTOR_PROM_PORT/metrics" \
        && port_open "$OTLP_GRPC_PORT" && port_open "$OTLP_HTTP_PORT" ;;
    prometheus)
      http_ok "http://$HOST:$PROMETHEUS_PORT/-/ready" ;;
    victorialogs)
      http_ok "http://$HOST:$VICTORIALOGS_PORT/health" ;;
    agent)
      http_ok "http://$HOST:$(tier_port agent 33)/" && port_open "$(tier_port agent 17)" \
        && port_open "$(tier_port agent 18)" ;;
    gateway-*)
      if [[ $(tier_recorded_mode) == kafka ]]; then
        http_ok "http://$HOST:$(tier_port "$1" 33)/" && http_ok "http://$HOST:$(tier_port "$1" 89)/metrics"
      else
        http_ok "http://$HOST:$(tier_port "$1" 33)/" && http_ok "http://$HOST:$(tier_port "$1" 89)/metrics" \
          && port_open "$(tier_port "$1" 17)" && port_open "$(tier_port "$1" 18)"
      fi ;;
    kafka-*)
      port_open "$(kafka_port "$1" 92)" ;;
    victoriametrics-*)
      http_ok "http://$HOST:$(vm_port "$1")/health" ;;
    vmauth)
      http_ok "http://$HOST:$VMAUTH_PORT/api/v1/status/buildinfo" ;;
    vmalert)
      http_ok "http://$HOST:$VMALERT_PORT/health" ;;
  esac
}

redis_cmd() {
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h "$HOST" -p "$REDIS_PORT" "$@" 2>/dev/null || true
  else
    # Inline command over bash's /dev/tcp.
    { exec 3<>"/dev/tcp/$HOST/$REDIS_PORT" && printf '%s\r\n' "$*" >&3 && head -c 64 <&3 | tr -d '+\r\n'; exec 3>&-; } 2>/dev/null || true
  fi
}

# Launch "$@" detached from this shell; record its pid.
spawn() {
  local c="$1"; shift
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  local lf
  lf="$(logfile "$c")"
  printf '\n==== %s starting %s ====\n' "$(date -u +%FT%TZ)" "$c" >>"$lf"
  setsid "$@" >>"$lf" 2>&1 </dev/null &
  echo $! >"$(pidfile "$c")"
}

wait_healthy() {
  local c="$1" deadline=$((SECONDS + START_TIMEOUT))
  while (( SECONDS < deadline )); do
    if is_healthy "$c"; then return 0; fi
    if ! is_running "$c"; then
      # Give a crashing process's last words a moment to reach the log.
      sleep 0.2
      log "$c: process exited during startup"
      return 1
    fi
    sleep 0.2
  done
  log "$c: not healthy after ${START_TIMEOUT}s"
  return 1
}

# Last lines of a component's log, from its latest start only, long lines cut.
show_log_tail() {
  local c="$1" lf
  lf="$(logfile "$c")"
  [[ -s "$lf" ]] || return 0
  log "last lines of $lf:"
  awk '/^==== .* starting / { n = 0; delete buf; next } { buf[++n] = $0 }
       END { for (i = (n > 30 ? n - 29 : 1); i <= n; i++) print buf[i] }' "$lf" \
    | cut -c1-400 | sed 's/^/    /' >&2
}

check_port_free() {
  local c="$1" p
  shift
  for p in "$@"; do
    if port_open "$p"; then
      log "$c: port $HOST:$p is already in use by another process (not this stack's $c)"
      return 1
    fi
  done
}

# --------------------------------------------------------------------------
# Component launchers
# --------------------------------------------------------------------------
as_pg_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

ensure_pg_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "postgres: creating system user $PG_OS_USER (PostgreSQL refuses to run as root)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
}

launch_postgres() {
  local bindir
  bindir="$(pg_bindir)" || { log "postgres: server binaries not found (run: scripts/stack.sh install)"; return 1; }
  check_port_free postgres "$PG_PORT" || return 1
  ensure_pg_user
  mkdir -p "$STATE/postgres" "$PG_SOCKET_DIR" "$LOG_DIR"
  chmod 755 "$STATE" "$STATE/postgres" 2>/dev/null || true
  touch "$LOG_DIR/postgres.log"
  if [[ $(id -u) -eq 0 ]]; then
    chown "$PG_OS_USER" "$STATE/postgres" "$PG_SOCKET_DIR" "$LOG_DIR/postgres.log"
    as_pg_user test -w "$STATE/postgres" \
      || { log "postgres: $PG_OS_USER cannot write to $STATE/postgres (is a parent directory private?)"; return 1; }
  fi
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    log "postgres: initdb $PGDATA"
    rm -rf "$PGDATA"
    as_pg_user "$bindir/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C \
      --auth-local=trust --auth-host=scram-sha-256 >>"$LOG_DIR/postgres.log" 2>&1 \
      || { log "postgres: initdb failed"; return 1; }
  fi
  # Test-stack settings: loopback only, no durability (fsync off) for speed.
  local opts="-c listen_addresses=$HOST -p $PG_PORT -c unix_socket_directories=$PG_SOCKET_DIR"
  opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
  local attempt
  for attempt in 1 2 3 4 5; do
    # After a kill -9 the postmaster's pid and socket lock files stay behind, and
    # its zombie or dying children can hold them for a moment: clear and retry.
    if ! is_running postgres; then
      rm -f "$PGDATA/postmaster.pid" "$PG_SOCKET_DIR/.s.PGSQL.$PG_PORT.lock"
    fi
    if as_pg_user "$bindir/pg_ctl" start -D "$PGDATA" -l "$LOG_DIR/postgres.log" -w -t "$START_TIMEOUT" \
      -o "$opts" >/dev/null 2>&1; then
      break
    fi
    (( attempt < 5 )) || { log "postgres: pg_ctl start failed"; return 1; }
    log "postgres: pg_ctl start failed (attempt $attempt); retrying"
    sleep 1
  done
  # Role and database hcv/hcv (idempotent). CREATEDB lets Django create test databases.
  local psql=("$bindir/psql" -X -q -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1)
  "${psql[@]}" -d postgres -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hcv') THEN
        CREATE ROLE hcv LOGIN CREATEDB PASSWORD 'hcv';
      END IF; END \$\$;" >>"$LOG_DIR/postgres.log" 2>&1 || { log "postgres: creating role hcv failed"; return 1; }
  if [[ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'hcv'")" != 1 ]]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE hcv OWNER hcv" >>"$LOG_DIR/postgres.log" 2>&1 \
      || { log "postgres: creating database hcv failed"; return 1; }
  fi
}

launch_redis() {
  command -v redis-server >/dev/null 2>&1 || { log "redis: redis-server not installed (run: scripts/stack.sh install)"; return 1; }
  check_port_free redis "$REDIS_PORT" || return 1
  mkdir -p "$STATE/redis"
  spawn redis redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$STATE/redis" --daemonize no --protected-mode yes --loglevel notice
}

launch_jaeger() {
  local bin
  bin="$(jaeger_bin)"
  [[ -x "$bin" ]] || { log "jaeger: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free jaeger 14317 "$JAEGER_OTLP_HTTP_PORT" "$JAEGER_QUERY_PORT" "$JAEGER_HEALTH_PORT" || return 1
  local ui store
  ui="$(jaeger_ui_dir)" || { ui=""; log "jaeger: no UI built (see: scripts/stack.sh install); / shows a placeholder page"; }
  case "$JAEGER_STORAGE" in
    badger) store=badger_store ;;
    memory) store=memory_store ;;
    *) log "jaeger: OTEL_HCV_JAEGER_STORAGE must be badger or memory (got '$JAEGER_STORAGE')"; return 1 ;;
  esac
  mkdir -p "$DATA/jaeger/badger"
  spawn jaeger env JAEGER_LISTEN_HOST="$HOST" JAEGER_UI_ASSETS="$ui" JAEGER_TRACE_STORAGE="$store" \
    JAEGER_BADGER_DIR="$DATA/jaeger/badger" JAEGER_RETENTION="$JAEGER_RETENTION" \
    JAEGER_METRICS_PROMETHEUS="http://$HOST:$PROMETHEUS_PORT" JAEGER_UI_CONFIG="$ROOT/jaeger/ui-config.json" \
    "$bin" --config "$JAEGER_CONFIG"
}

launch_collector() {
  local bin
  bin="$(collector_bin)"
  [[ -x "$bin" ]] || { log "collector: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free collector "$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT" "$COLLECTOR_PROM_PORT" \
    "$COLLECTOR_METRICS_PORT" "$COLLECTOR_HEALTH_PORT" || return 1
  mkdir -p "$(dirname "$LOG_SINK")"
  # OTEL_HCV_VENDOR_* / OTEL_HCV_DEBUG_VERBOSITY pass through from the caller's environment.
  spawn collector env OTEL_COLLECTOR_BIND="$HOST" \
    JAEGER_OTLP_ENDPOINT="http://$HOST:$JAEGER_OTLP_HTTP_PORT" \
    VICTORIALOGS_OTLP_LOGS_ENDPOINT="http://$HOST:$VICTORIALOGS_PORT/insert/opentelemetry/v1/logs" \
    OTEL_HCV_LOG_SINK="$LOG_SINK" OTEL_HCV_QUEUE_DIR="$DATA/collector/queue" \
    "$bin" --config "$COLLECTOR_CONFIG"
}

launch_victorialogs() {
  local bin
  bin="$(victorialogs_bin)"
  [[ -x "$bin" ]] || { log "victorialogs: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free victorialogs "$VICTORIALOGS_PORT" || return 1
  mkdir -p "$DATA/victorialogs"
  spawn victorialogs "$bin" -httpListenAddr="$HOST:$VICTORIALOGS_PORT" \
    -storageDataPath="$DATA/victorialogs" -retentionPeriod="$LOGS_RETENTION" -loggerLevel=WARN
}

launch_prometheus() {
  command -v prometheus >/dev/null 2>&1 || { log "prometheus: not installed (run: scripts/stack.sh install)"; return 1; }
  check_port_free prometheus "$PROMETHEUS_PORT" || return 1
  mkdir -p "$STATE/prometheus/data"
  spawn prometheus prometheus --config.file="$PROM_CONFIG" \
    --storage.tsdb.path="$STATE/prometheus/data" --storage.tsdb.retention.time=2d \
    --web.listen-address="$HOST:$PROMETHEUS_PORT" --web.enable-lifecycle --log.level=info
}

# Agent and gateways: the collector binary with collector/agent.yaml or
# collector/gateway.yaml, every address set explicitly. The caller's environment
# passes through (OTEL_HCV_SAMPLING_*, OTEL_COLLECTOR_MEMORY_LIMIT_MIB, ...).
launch_gateway() {
  local c="gateway-$1" bin
  bin="$(collector_bin)"
  [[ -x "$bin" ]] || { log "$c: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free "$c" "$(tier_port "$c" 17)" "$(tier_port "$c" 18)" "$(tier_port "$c" 33)" \
    "$(tier_port "$c" 88)" "$(tier_port "$c" 89)" || return 1
  mkdir -p "$STATE/tier/$c"
  spawn "$c" env OTEL_COLLECTOR_BIND="$HOST" OTEL_HCV_GATEWAY_NAME="$c" \
    OTEL_HCV_OTLP_GRPC_PORT="$(tier_port "$c" 17)" OTEL_HCV_OTLP_HTTP_PORT="$(tier_port "$c" 18)" \
    OTEL_HCV_HEALTH_PORT="$(tier_port "$c" 33)" OTEL_HCV_TELEMETRY_PORT="$(tier_port "$c" 88)" \
    OTEL_HCV_PROMETHEUS_PORT="$(tier_port "$c" 89)" \
    JAEGER_OTLP_ENDPOINT="http://$HOST:$JAEGER_OTLP_HTTP_PORT" \
    OTEL_HCV_LOG_SINK="$STATE/tier/$c/logs.jsonl" \
    "$bin" --config "$GATEWAY_CONFIG"
}

launch_kafka() {
  local c="kafka-$1" libs dir id voters="" m
  libs="$(kafka_home)/libs"
  [[ -f "$(kafka_home)/.complete" ]] || { log "$c: Kafka not installed (run: scripts/stack.sh install)"; return 1; }
  check_port_free "$c" "$(kafka_port "$c" 92)" "$(kafka_port "$c" 93)" || return 1
  dir="$STATE/clusters/$c"
  mkdir -p "$dir/data"
  for m in "${KAFKA_MEMBERS[@]}"; do voters+="${voters:+,}${m#kafka-}@$HOST:$(kafka_port "$m" 93)"; done
  # Three combined broker+controller nodes: the controller quorum and every topic's
  # replicas survive one node down. Writes wait for 2 in-sync replicas (acks=all on
  # the agents), so a record an agent was told OK about is on two brokers.
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$1
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(kafka_port "$c" 92),CONTROLLER://$HOST:$(kafka_port "$c" 93)
advertised.listeners=PLAINTEXT://$HOST:$(kafka_port "$c" 92)
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=$KAFKA_PARTITIONS
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
EOF
  id="$(cat "$STATE/clusters/kafka.cluster-id" 2>/dev/null || true)"
  if [[ -z $id ]]; then
    # A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    echo "$id" >"$STATE/clusters/kafka.cluster-id"
  fi
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    java -cp "$libs/*" -Dlog4j2.configurationFile="$ROOT/kafka/log4j2.properties" kafka.tools.StorageTool \
      format -t "$id" -c "$dir/server.properties" --ignore-formatted >>"$(logfile "$c")" 2>&1 \
      || { log "$c: formatting $dir/data failed"; show_log_tail "$c"; return 1; }
  fi
  spawn "$c" java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/kafka/log4j2.properties" -cp "$libs/*" kafka.Kafka "$dir/server.properties"
}

launch_victoriametrics() {
  local c="victoriametrics-$1" bin
  bin="$(victoriametrics_bin)"
  [[ -x "$bin" ]] || { log "$c: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free "$c" "$(vm_port "$c")" || return 1
  mkdir -p "$STATE/clusters/$c/data"
  # -dedup.minScrapeInterval=1ms: a sample written twice (a retried remote-write
  # request) is stored once. -inmemoryDataFlushInterval=1s: what a node acknowledged
  # is on disk within a second (its floor), so a node killed with SIGKILL loses at
  # most about that much on its own (the other node holds it).
  spawn "$c" "$bin" -httpListenAddr="$HOST:$(vm_port "$c")" -storageDataPath="$STATE/clusters/$c/data" \
    -retentionPeriod=2d -dedup.minScrapeInterval=1ms -search.latencyOffset=0s -inmemoryDataFlushInterval=1s \
    -loggerLevel=WARN
}

launch_vmauth() {
  local bin conf="$STATE/clusters/vmauth.yaml" m
  bin="$(victoriametrics_bin vmauth)"
  [[ -x "$bin" ]] || { log "vmauth: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free vmauth "$VMAUTH_PORT" || return 1
  mkdir -p "$STATE/clusters"
  # Every query goes to a node that answers: a node that refuses the connection or
  # answers 5xx is skipped for -failTimeout and the request is retried on the other.
  {
    echo "unauthorized_user:"
    echo "  url_prefix:"
    for m in "${VM_MEMBERS[@]}"; do echo "    - http://$HOST:$(vm_port "$m")"; done
    echo "  retry_status_codes: [500, 502, 503]"
    echo "  load_balancing_policy: first_available"
  } >"$conf"
  spawn vmauth "$bin" -httpListenAddr="$HOST:$VMAUTH_PORT" -auth.config="$conf" -failTimeout=2s -loggerLevel=WARN
}

launch_vmalert() {
  local bin
  bin="$(victoriametrics_bin vmalert)"
  [[ -x "$bin" ]] || { log "vmalert: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free vmalert "$VMALERT_PORT" || return 1
  # The stack's alert rules, evaluated against the VictoriaMetrics nodes through
  # vmauth; notifications go nowhere (-notifier.blackhole): the rules' state is read
  # from vmalert's API.
  spawn vmalert "$bin" -httpListenAddr="$HOST:$VMALERT_PORT" -rule="$PROM_RULES" \
    -datasource.url="http://$HOST:$VMAUTH_PORT" -notifier.blackhole -evaluationInterval=5s -loggerLevel=WARN
}

# The Kafka tier (start-tier N kafka): the otelcol-hcv-kafka binary with
# collector/kafka-agent.yaml and collector/kafka-gateway.yaml. Same member names and
# ports as the direct tier; the gateways consume from Kafka instead of listening.
launch_kafka_gateway() {
  local c="gateway-$1" bin m urls=()
  bin="$(kafka_collector_bin)"
  [[ -x "$bin" ]] || { log "$c: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free "$c" "$(tier_port "$c" 33)" "$(tier_port "$c" 88)" "$(tier_port "$c" 89)" || return 1
  for m in "${VM_MEMBERS[@]}"; do urls+=("http://$HOST:$(vm_port "$m")/api/v1/write"); done
  mkdir -p "$STATE/tier/$c"
  spawn "$c" env OTEL_COLLECTOR_BIND="$HOST" OTEL_HCV_GATEWAY_NAME="$c" \
    OTEL_HCV_HEALTH_PORT="$(tier_port "$c" 33)" OTEL_HCV_TELEMETRY_PORT="$(tier_port "$c" 88)" \
    OTEL_HCV_PROMETHEUS_PORT="$(tier_port "$c" 89)" \
    OTEL_HCV_KAFKA_BROKERS="[$(kafka_bootstrap)]" \
    JAEGER_OTLP_ENDPOINT="http://$HOST:$JAEGER_OTLP_HTTP_PORT" \
    VICTORIALOGS_OTLP_LOGS_ENDPOINT="http://$HOST:$VICTORIALOGS_PORT/insert/opentelemetry/v1/logs" \
    OTEL_HCV_METRICS_WRITE_URL_1="${urls[0]}" OTEL_HCV_METRICS_WRITE_URL_2="${urls[1]}" \
    "$bin" --config "$KAFKA_GATEWAY_CONFIG"
}

launch_kafka_agent() {
  local bin
  bin="$(kafka_collector_bin)"
  [[ -x "$bin" ]] || { log "agent: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free agent "$(tier_port agent 17)" "$(tier_port agent 18)" "$(tier_port agent 33)" \
    "$(tier_port agent 88)" || return 1
  spawn agent env OTEL_COLLECTOR_BIND="$HOST" \
    OTEL_HCV_OTLP_GRPC_PORT="$(tier_port agent 17)" OTEL_HCV_OTLP_HTTP_PORT="$(tier_port agent 18)" \
    OTEL_HCV_HEALTH_PORT="$(tier_port agent 33)" OTEL_HCV_TELEMETRY_PORT="$(tier_port agent 88)" \
    OTEL_HCV_KAFKA_BROKERS="[$(kafka_bootstrap)]" \
    "$bin" --config "$KAFKA_AGENT_CONFIG"
}

launch_agent() {
  local bin
  bin="$(collector_bin)"
  [[ -x "$bin" ]] || { log "agent: $bin not built (run: scripts/stack.sh install)"; return 1; }
  check_port_free agent "$(tier_port agent 17)" "$(tier_port agent 18)" "$(tier_port agent 33)" \
    "$(tier_port agent 88)" || return 1
  # Loopback has no load balancer in front of the pool: metrics and logs go to gateway-1.
  spawn agent env OTEL_COLLECTOR_BIND="$HOST" \
    OTEL_HCV_OTLP_GRPC_PORT="$(tier_port agent 17)" OTEL_HCV_OTLP_HTTP_PORT="$(tier_port agent 18)" \
    OTEL_HCV_HEALTH_PORT="$(tier_port agent 33)" OTEL_HCV_TELEMETRY_PORT="$(tier_port agent 88)" \
    OTEL_HCV_GATEWAY_RESOLVER=static OTEL_HCV_GATEWAYS="$(tier_gateway_list)" \
    OTEL_HCV_GATEWAY_OTLP_ENDPOINT="http://$HOST:$(tier_port gateway-1 18)" \
    "$bin" --config "$AGENT_CONFIG"
}

launch() {
  case "$1" in
    agent) if [[ $(tier_recorded_mode) == kafka ]]; then launch_kafka_agent; else launch_agent; fi ;;
    gateway-*) if [[ $(tier_recorded_mode) == kafka ]]; then launch_kafka_gateway "${1#gateway-}"; else launch_gateway "${1#gateway-}"; fi ;;
    kafka-*) launch_kafka "${1#kafka-}" ;;
    victoriametrics-*) launch_victoriametrics "${1#victoriametrics-}" ;;
    *) "launch_$1" ;;
  esac
}

start_one() {
  local c="$1" t0=$SECONDS
  if is_running "$c"; then
    if wait_healthy "$c"; then
      log "$c: already running (pid $(component_pid "$c"))"
      return 0
    fi
    log "$c: running but unhealthy; restarting it"
    stop_one "$c"
  fi
  if ! launch "$c"; then
    log "$c: FAILED to start"
    # postgres logs initdb/pg_ctl failures; the others failed before spawning.
    [[ $c == postgres ]] && show_log_tail "$c"
    return 1
  fi
  if ! wait_healthy "$c"; then
    log "$c: FAILED to start"
    show_log_tail "$c"
    return 1
  fi
  log "$c: up in $((SECONDS - t0))s (pid $(component_pid "$c")) -- $(component_address "$c")"
}

stop_one() {
  local c="$1" pid i
  if ! pid="$(component_pid "$c")"; then
    rm -f "$(pidfile "$c")"
    log "$c: not running"
    return 0
  fi
  if [[ $c == postgres ]]; then
    as_pg_user "$(pg_bindir)/pg_ctl" stop -D "$PGDATA" -m fast -w -t 30 >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for ((i = 0; i < 150; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    log "$c: did not exit after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$(pidfile "$c")"
  log "$c: stopped (was pid $pid)"
}

# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------
select_components() {
  if [[ -z "${1:-}" ]]; then
    echo "${COMPONENTS[@]}"
    return 0
  fi
  local c
  for c in "${COMPONENTS[@]}"; do
    [[ $c == "$1" ]] && { echo "$c"; return 0; }
  done
  die "unknown component '$1' (one of: ${COMPONENTS[*]})"
}

cmd_start() {
  local list c failed=() t0=$SECONDS
  list="$(select_components "${1:-}")"
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  for c in $list; do
    start_one "$c" || failed+=("$c")
  done
  if (( ${#failed[@]} > 0 )); then
    die "failed to start: ${failed[*]}"
  fi
  log "started in $((SECONDS - t0))s"
}

cmd_stop() {
  local out list c i
  out="$(select_components "${1:-}")"
  read -r -a list <<<"$out"
  # Everything: the tier first (it exports into the stack), then the clusters.
  if [[ -z "${1:-}" ]]; then
    stop_tier quiet
    cmd_stop_clusters
  fi
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do
    stop_one "${list[$i]}"
  done
}

# A status table: a header naming the first column, then one row per component.
# Returns 1 when any of them is stopped or unhealthy.
status_rows() {
  local title="$1" c pid health rc=0
  shift
  printf '%-17s %-8s %-8s %-9s %s\n' "$title" STATE PID HEALTH ADDRESS
  for c in "$@"; do
    if pid="$(component_pid "$c")"; then
      if is_healthy "$c"; then health=healthy; else health=unhealthy; rc=1; fi
      printf '%-17s %-8s %-8s %-9s %s\n' "$c" running "$pid" "$health" "$(component_address "$c")"
    else
      printf '%-17s %-8s %-8s %-9s %s\n' "$c" stopped - - "$(component_address "$c")"
      rc=1
    fi
  done
  return "$rc"
}

cmd_status() {
  local rc=0
  status_rows COMPONENT "${COMPONENTS[@]}" || rc=1
  echo "state: $STATE   logs: $LOG_DIR   log sink: $LOG_SINK"
  return "$rc"
}

# --------------------------------------------------------------------------
# Agent/gateway tier
# --------------------------------------------------------------------------
# Members in start order: gateway-1..gateway-N, agent.
tier_members() {
  local i
  for ((i = 1; i <= $1; i++)); do echo "gateway-$i"; done
  echo agent
}

tier_recorded_gateways() { cat "$RUN_DIR/tier.gateways" 2>/dev/null || true; }
# direct (agents route spans to the gateways by trace id) or kafka (through the clusters).
tier_recorded_mode() { cat "$RUN_DIR/tier.mode" 2>/dev/null || echo direct; }

cmd_start_tier() {
  local n="${1:-$DEFAULT_GATEWAYS}" mode="${2:-direct}" prev c failed=() t0=$SECONDS
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= MAX_GATEWAYS)) \
    || die "start-tier: the number of gateways must be 1..$MAX_GATEWAYS (got '$n')"
  [[ $mode == direct || $mode == kafka ]] || die "start-tier: the mode must be direct or kafka (got '$mode')"
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  prev="$(tier_recorded_gateways)"
  # The agent's static list names the gateways: another N (or mode) needs a fresh tier.
  if { [[ $prev != "$n" ]] || [[ $(tier_recorded_mode) != "$mode" ]]; } && { [[ -n $prev ]] || is_running agent; }; then
    log "tier: running with ${prev:-an unknown number of} gateway(s) ($(tier_recorded_mode)); restarting it with $n ($mode)"
    stop_tier quiet
  fi
  if [[ $mode == kafka ]]; then
    # The clusters must be up; a member that is down (a broker, a node) is survivable.
    local up=()
    for c in "${CLUSTER_MEMBERS[@]}"; do
      if is_running "$c"; then up+=("$c"); else log "tier: note: $c is not running"; fi
    done
    (( ${#up[@]} > 0 )) || die "start-tier $n kafka: the clusters are not running (scripts/stack.sh start-clusters)"
  fi
  echo "$mode" >"$RUN_DIR/tier.mode"
  for ((c = n + 1; c <= MAX_GATEWAYS; c++)); do
    is_running "gateway-$c" && stop_one "gateway-$c"
  done
  TIER_GATEWAYS=$n
  echo "$n" >"$RUN_DIR/tier.gateways"
  for c in $(tier_members "$n"); do
    start_one "$c" || failed+=("$c")
  done
  if (( ${#failed[@]} > 0 )); then
    die "tier: failed to start: ${failed[*]}"
  fi
  for c in jaeger prometheus; do
    is_running "$c" || log "tier: note: $c is not running (the gateways export to it): scripts/stack.sh start"
  done
  log "tier: agent + $n gateway(s) ($mode) started in $((SECONDS - t0))s; send OTLP to http://$HOST:$(tier_port agent 18) (grpc $HOST:$(tier_port agent 17))"
}

# stop_tier [quiet]: stop the agent, then every gateway that runs.
stop_tier() {
  local c i stopped=0
  for c in agent $(for ((i = MAX_GATEWAYS; i >= 1; i--)); do echo "gateway-$i"; done); do
    if is_running "$c"; then
      stop_one "$c"
      stopped=1
    else
      rm -f "$(pidfile "$c")"
    fi
  done
  rm -f "$RUN_DIR/tier.gateways" "$RUN_DIR/tier.mode"
  (( stopped )) || [[ ${1:-} == quiet ]] || log "tier: not running"
}

# --------------------------------------------------------------------------
# Loopback clusters: Kafka (3 brokers), VictoriaMetrics (2 nodes), vmauth, vmalert
# --------------------------------------------------------------------------
# kafka_tool CLASS ARGS...: one of Kafka's command-line tools on the cached jars.
kafka_tool() {
  local cls="$1"
  shift
  [[ -f "$(kafka_home)/.complete" ]] || die "Kafka not installed (run: scripts/stack.sh install)"
  java -Xmx256m -cp "$(kafka_home)/libs/*" -Dlog4j2.configurationFile="$ROOT/kafka/log4j2.properties" "$cls" "$@"
}

create_kafka_topics() {
  local t
  for t in "${KAFKA_TOPICS[@]}"; do
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_bootstrap)" --create \
      --if-not-exists --topic "$t" --partitions "$KAFKA_PARTITIONS" --replication-factor 3 \
      --config min.insync.replicas=2 >>"$LOG_DIR/kafka-topics.log" 2>&1 \
      || { log "kafka: creating topic $t failed (see $LOG_DIR/kafka-topics.log)"; return 1; }
  done
  log "kafka: topics ${KAFKA_TOPICS[*]} ($KAFKA_PARTITIONS partitions, replication factor 3, min in-sync 2)"
}

cmd_start_clusters() {
  local c failed=() t0=$SECONDS pids=() i
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE/clusters"
  # The three brokers form one quorum: start them together, then wait for each.
  for c in "${KAFKA_MEMBERS[@]}"; do
    if ! is_running "$c"; then launch "$c" || failed+=("$c"); fi
  done
  for c in "${KAFKA_MEMBERS[@]}"; do
    wait_healthy "$c" || { show_log_tail "$c"; failed+=("$c"); }
  done
  (( ${#failed[@]} == 0 )) || die "clusters: failed to start: ${failed[*]}"
  create_kafka_topics || die "clusters: Kafka topics could not be created"
  for c in "${VM_MEMBERS[@]}" vmauth vmalert; do
    start_one "$c" || failed+=("$c")
  done
  (( ${#failed[@]} == 0 )) || die "clusters: failed to start: ${failed[*]}"
  log "clusters: started in $((SECONDS - t0))s; Kafka $(kafka_bootstrap), VictoriaMetrics queries http://$HOST:$VMAUTH_PORT"
}

cmd_stop_clusters() {
  local i
  # The Kafka tier reads from the clusters: stop it first.
  [[ $(tier_recorded_mode) == kafka ]] && stop_tier quiet
  for ((i = ${#CLUSTER_MEMBERS[@]} - 1; i >= 0; i--)); do
    if is_running "${CLUSTER_MEMBERS[$i]}"; then stop_one "${CLUSTER_MEMBERS[$i]}"; else rm -f "$(pidfile "${CLUSTER_MEMBERS[$i]}")"; fi
  done
}

# Stop the clusters and delete their data (Kafka logs, VictoriaMetrics data).
cmd_reset_clusters() {
  cmd_stop_clusters
  rm -rf "$STATE/clusters"
  log "clusters: data removed"
}

cmd_status_clusters() {
  local rc=0
  status_rows MEMBER "${CLUSTER_MEMBERS[@]}" || rc=1
  echo "data: $STATE/clusters   logs: $LOG_DIR/{kafka-N,victoriametrics-N,vmauth,vmalert}.log"
  return "$rc"
}

cmd_status_tier() {
  local n rc=0
  n="$(tier_recorded_gateways)"
  # shellcheck disable=SC2046  # member names are single words
  status_rows MEMBER $(tier_members "${n:-$MAX_GATEWAYS}") || rc=1
  echo "gateways started: ${n:-none}   logs: $LOG_DIR/{agent,gateway-N}.log   log sinks: $STATE/tier/gateway-N/logs.jsonl"
  return "$rc"
}

cmd_env() {
  cat <<EOF
export OTEL_EXPORTER_OTLP_ENDPOINT=http://$HOST:$OTLP_HTTP_PORT
export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
export HCV_DATABASE_URL=postgres://hcv:hcv@$HOST:$PG_PORT/hcv
export HCV_REDIS_URL=redis://$HOST:$REDIS_PORT/0
export JAEGER_QUERY_URL=http://$HOST:$JAEGER_QUERY_PORT
export PROMETHEUS_URL=http://$HOST:$PROMETHEUS_PORT
export VICTORIALOGS_URL=http://$HOST:$VICTORIALOGS_PORT
export COLLECTOR_LOG_SINK=$LOG_SINK
export OTEL_HCV_DATA=$DATA
EOF
}

cmd_validate() {
  local bin rc=0 f
  bin="$(collector_bin)"
  [[ -x "$bin" ]] || die "collector not built: run scripts/stack.sh install"
  log "collector: validate $COLLECTOR_CONFIG"
  OTEL_COLLECTOR_BIND="$HOST" OTEL_HCV_LOG_SINK="$LOG_SINK" "$bin" validate --config "$COLLECTOR_CONFIG" || rc=1
  local resolver
  for resolver in static dns; do
    log "collector: validate $AGENT_CONFIG (OTEL_HCV_GATEWAY_RESOLVER=$resolver)"
    OTEL_COLLECTOR_BIND="$HOST" OTEL_HCV_GATEWAY_RESOLVER="$resolver" "$bin" validate --config "$AGENT_CONFIG" || rc=1
  done
  log "collector: validate $GATEWAY_CONFIG"
  OTEL_COLLECTOR_BIND="$HOST" "$bin" validate --config "$GATEWAY_CONFIG" || rc=1
  bin="$(kafka_collector_bin)"
  if [[ -x "$bin" ]]; then
    for f in "$KAFKA_AGENT_CONFIG" "$KAFKA_GATEWAY_CONFIG"; do
      log "kafka collector: validate $f"
      OTEL_COLLECTOR_BIND="$HOST" "$bin" validate --config "$f" || rc=1
    done
  else
    log "kafka collector: not built, skipping the Kafka tier's configs"
  fi
  bin="$(jaeger_bin)"
  if [[ -x "$bin" ]]; then
    log "jaeger: validate $JAEGER_CONFIG"
    JAEGER_LISTEN_HOST="$HOST" "$bin" validate --config "$JAEGER_CONFIG" || rc=1
  else
    log "jaeger: not built, skipping its config"
  fi
  command -v promtool >/dev/null 2>&1 || die "promtool not installed: run scripts/stack.sh install"
  for f in "$ROOT"/prometheus/prometheus*.yml; do
    log "promtool check config $f"
    promtool check config "$f" || rc=1
  done
  if [[ -f "$PROM_RULES" ]]; then
    log "promtool check rules $PROM_RULES"
    promtool check rules "$PROM_RULES" || rc=1
  fi
  if (( rc == 0 )); then log "all configs valid"; else log "validation FAILED"; fi
  return "$rc"
}

cmd_bin() {
  local p
  case "${1:-}" in
    collector) p="$(collector_bin)" ;;
    kafka-collector) p="$(kafka_collector_bin)" ;;
    jaeger) p="$(jaeger_bin)" ;;
    victorialogs) p="$(victorialogs_bin)" ;;
    victoriametrics | vmauth | vmalert) p="$(victoriametrics_bin "${1/victoriametrics/victoria-metrics}")" ;;
    kafka) p="$(kafka_home)" ;;
    *) die "usage: scripts/stack.sh bin collector|kafka-collector|jaeger|victorialogs|victoriametrics|vmauth|vmalert|kafka" ;;
  esac
  echo "$p"
  [[ -x "$p" ]]
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    install) cmd_install ;;
    start) cmd_start "${1:-}" ;;
    stop) cmd_stop "${1:-}" ;;
    restart) cmd_stop "${1:-}"; cmd_start "${1:-}" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    validate) cmd_validate ;;
    bin) cmd_bin "${1:-}" ;;
    start-tier) cmd_start_tier "${1:-}" "${2:-}" ;;
    start-clusters) cmd_start_clusters ;;
    stop-clusters) cmd_stop_clusters ;;
    reset-clusters) cmd_reset_clusters ;;
    status-clusters) cmd_status_clusters ;;
    kafka-topics) kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_bootstrap)" "$@" ;;
    kafka-consumer-groups)
      kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$(kafka_bootstrap)" "$@" ;;
    stop-tier) stop_tier ;;
    status-tier) cmd_status_tier ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
