#!/usr/bin/env bash
# Native (no Docker) backend stack for otel-hcv: PostgreSQL, Redis, Jaeger v2,
# an OpenTelemetry Collector built with the official builder (ocb), and
# Prometheus; optionally an agent/gateway collector tier (start-tier). Everything
# listens on 127.0.0.1 only. See docs/stack.md and docs/operations.md.
#
# This script installs and validates (packages, Go builds, the Jaeger UI, Kafka's
# jars); the runtime commands (start, stop, status, env, the tier, the clusters) are
# run by scripts/stackctl/, where every component is one record (ports, process
# marker, health probes, command, environment). This script hands it the binary paths.
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
# Settings (install, validate, bin; the runtime settings live in scripts/stackctl/)
# --------------------------------------------------------------------------
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${OTEL_HCV_CACHE:-$HOME/.cache/otel-hcv}"
STATE="${OTEL_HCV_STATE:-/tmp/otel-hcv-stack}"
HOST=127.0.0.1
JAEGER_QUERY_PORT=16686

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

AGENT_CONFIG="$ROOT/collector/agent.yaml"
GATEWAY_CONFIG="$ROOT/collector/gateway.yaml"
KAFKA_AGENT_CONFIG="$ROOT/collector/kafka-agent.yaml"
KAFKA_GATEWAY_CONFIG="$ROOT/collector/kafka-gateway.yaml"
COLLECTOR_CONFIG="$ROOT/collector/otel-config.yaml"
BUILDER_CONFIG="$ROOT/collector/builder-config.yaml"
JAEGER_CONFIG="$ROOT/jaeger/config.yaml"
PROM_RULES="$ROOT/prometheus/rules.yml"
LOG_SINK="$STATE/collector/logs.jsonl"

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
# Runtime commands: scripts/stackctl (Python 3.11+, standard library only)
# --------------------------------------------------------------------------
# stackctl COMMAND ARGS...: run a runtime command with the binary paths this script
# computes from its install versions (scripts/stackctl/components.py: BINARY_VARIABLES).
# -I -S: the standard library is all it needs; skipping site-packages saves a good part
# of the interpreter's start-up, and the caller's PYTHON* variables and working
# directory cannot change which code runs.
stackctl() {
  local python="${PYTHON:-python3}" bindir="" ui=""
  bindir="$(pg_bindir)" || bindir=""
  ui="$(jaeger_ui_dir)" || ui=""
  _STACK_BIN_COLLECTOR="$(collector_bin)" \
    _STACK_BIN_KAFKA_COLLECTOR="$(kafka_collector_bin)" \
    _STACK_BIN_JAEGER="$(jaeger_bin)" \
    _STACK_BIN_VICTORIALOGS="$(victorialogs_bin)" \
    _STACK_BIN_VICTORIAMETRICS="$(victoriametrics_bin)" \
    _STACK_BIN_VMAUTH="$(victoriametrics_bin vmauth)" \
    _STACK_BIN_VMALERT="$(victoriametrics_bin vmalert)" \
    _STACK_KAFKA_HOME="$(kafka_home)" \
    _STACK_PG_BINDIR="$bindir" \
    _STACK_JAEGER_UI="$ui" \
    "$python" -I -S -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from scripts.stackctl.cli import main; sys.exit(main(sys.argv[1:]))' \
    "$ROOT" "$@"
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
    start) stackctl start "$@" ;;
    stop) stackctl stop "$@" ;;
    restart) stackctl restart "$@" ;;
    status) stackctl status ;;
    env) stackctl env ;;
    validate) cmd_validate ;;
    bin) cmd_bin "${1:-}" ;;
    start-tier) stackctl start-tier "$@" ;;
    start-clusters) stackctl start-clusters ;;
    stop-clusters) stackctl stop-clusters ;;
    reset-clusters) stackctl reset-clusters ;;
    status-clusters) stackctl status-clusters ;;
    kafka-topics) stackctl kafka-topics "$@" ;;
    kafka-consumer-groups) stackctl kafka-consumer-groups "$@" ;;
    stop-tier) stackctl stop-tier ;;
    status-tier) stackctl status-tier ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
