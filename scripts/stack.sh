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
                     tests, postgresql if no server binaries exist), build the
                     collector and Jaeger v2 into the cache (needs Go >= 1.25 on
                     PATH; apt needs root or sudo) and the Jaeger UI (Node.js 24
                     from the npm registry; see OTEL_HCV_JAEGER_UI). Idempotent;
                     cached binaries and UI builds are reused.
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
  bin NAME           Print the path of the cached binary NAME (collector|jaeger);
                     exit 1 if it has not been built.
  start-tier [N]     Start the agent/gateway tier beside the stack: N gateways
                     (collector/gateway.yaml; default 2, at most 4) and one agent
                     (collector/agent.yaml) that routes spans to them by trace id
                     (static resolver). Send OTLP to the agent (http://127.0.0.1:25018).
                     The gateways export to Jaeger and are scraped by Prometheus, so
                     run `start` too. A tier running with another N is restarted.
                     OTEL_HCV_SAMPLING_* in the environment reach the gateways.
  stop-tier          Stop the agent and the gateways (`stop` without a component
                     stops them too).
  status-tier        Show pid, health and address of the agent and the gateways
                     (exit 1 if the tier is not fully running and healthy).
  help               Show this help.

Components (start order): postgres redis jaeger collector prometheus
Tier members (start-tier): gateway-1 .. gateway-N, then agent. Member k (agent 0,
  gateway-i i) listens on 25k17 OTLP gRPC, 25k18 OTLP HTTP, 25k33 health, 25k88 own
  metrics, and a gateway on 25k89 (prometheus exporter): agent 25017, gateway-1 25117.

Environment:
  OTEL_HCV_CACHE          build cache: Go toolchain caches and binaries
                          (default: $HOME/.cache/otel-hcv)
  OTEL_HCV_STATE          pid files, logs, PostgreSQL/Prometheus data (default: /tmp/otel-hcv-stack)
  OTEL_HCV_DATA           what must outlive a reboot: Jaeger's Badger store and the
                          collector's persistent export queues
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

COMPONENTS=(postgres redis jaeger collector prometheus)

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
builder_bin() { echo "$CACHE/tools/builder-v$OCB_VERSION/builder"; }

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
  builder="$(builder_bin)"
  if [[ ! -x "$builder" ]]; then
    log "collector: installing builder v$OCB_VERSION (go install)"
    run_with_progress "go install builder" "$CACHE/build/builder-install.log" \
      env GOBIN="$(dirname "$builder")" go install "go.opentelemetry.io/collector/cmd/builder@v$OCB_VERSION"
  fi
  out="$CACHE/build/otelcol-hcv-$OCB_VERSION-$(builder_config_hash)"
  rm -rf "$out"
  log "collector: building with ocb v$OCB_VERSION (first build takes several minutes)"
  run_with_progress "collector build" "$CACHE/build/otelcol-build.log" \
    "$builder" --config "$BUILDER_CONFIG" --output-path "$out"
  cp "$out/otelcol-hcv" "$bin.tmp.$$"
  mv -f "$bin.tmp.$$" "$bin"
  log "collector: built $bin"
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
  log "install complete in $((SECONDS - start))s"
  log "  collector: $(collector_bin)"
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
    prometheus) echo prometheus ;;
    agent) echo "$AGENT_CONFIG" ;;
    gateway-*) echo "$GATEWAY_CONFIG" ;;
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
    prometheus) echo "$PROMETHEUS_PORT" ;;
    agent | gateway-*) tier_port "$1" 18 ;;
  esac
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
    agent) echo "OTLP $HOST:$(tier_port agent 17) grpc, http://$HOST:$(tier_port agent 18); own metrics :$(tier_port agent 88), health :$(tier_port agent 33)" ;;
    gateway-*) echo "OTLP $HOST:$(tier_port "$1" 17) grpc, :$(tier_port "$1" 18) http; metrics http://$HOST:$(tier_port "$1" 89)/metrics, own :$(tier_port "$1" 88), health :$(tier_port "$1" 33)" ;;
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
    agent)
      http_ok "http://$HOST:$(tier_port agent 33)/" && port_open "$(tier_port agent 17)" \
        && port_open "$(tier_port agent 18)" ;;
    gateway-*)
      http_ok "http://$HOST:$(tier_port "$1" 33)/" && http_ok "http://$HOST:$(tier_port "$1" 89)/metrics" \
        && port_open "$(tier_port "$1" 17)" && port_open "$(tier_port "$1" 18)" ;;
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
    JAEGER_METRICS_PROMETHEUS="http://$HOST:$PROMETHEUS_PORT" \
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
    OTEL_HCV_LOG_SINK="$LOG_SINK" OTEL_HCV_QUEUE_DIR="$DATA/collector/queue" \
    "$bin" --config "$COLLECTOR_CONFIG"
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
    agent) launch_agent ;;
    gateway-*) launch_gateway "${1#gateway-}" ;;
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
  # Everything: the tier first (it exports into the stack).
  [[ -n "${1:-}" ]] || stop_tier quiet
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do
    stop_one "${list[$i]}"
  done
}

# A status table: a header naming the first column, then one row per component.
# Returns 1 when any of them is stopped or unhealthy.
status_rows() {
  local title="$1" c pid health rc=0
  shift
  printf '%-11s %-8s %-8s %-9s %s\n' "$title" STATE PID HEALTH ADDRESS
  for c in "$@"; do
    if pid="$(component_pid "$c")"; then
      if is_healthy "$c"; then health=healthy; else health=unhealthy; rc=1; fi
      printf '%-11s %-8s %-8s %-9s %s\n' "$c" running "$pid" "$health" "$(component_address "$c")"
    else
      printf '%-11s %-8s %-8s %-9s %s\n' "$c" stopped - - "$(component_address "$c")"
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

cmd_start_tier() {
  local n="${1:-$DEFAULT_GATEWAYS}" prev c failed=() t0=$SECONDS
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= MAX_GATEWAYS)) \
    || die "start-tier: the number of gateways must be 1..$MAX_GATEWAYS (got '$n')"
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  prev="$(tier_recorded_gateways)"
  # The agent's static list names the gateways: another N needs a fresh tier.
  if [[ $prev != "$n" ]] && { [[ -n $prev ]] || is_running agent; }; then
    log "tier: running with ${prev:-an unknown number of} gateway(s); restarting it with $n"
    stop_tier quiet
  fi
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
  log "tier: agent + $n gateway(s) started in $((SECONDS - t0))s; send OTLP to http://$HOST:$(tier_port agent 18) (grpc $HOST:$(tier_port agent 17))"
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
  rm -f "$RUN_DIR/tier.gateways"
  (( stopped )) || [[ ${1:-} == quiet ]] || log "tier: not running"
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
export COLLECTOR_LOG_SINK=$LOG_SINK
export OTEL_HCV_DATA=$DATA
EOF
}

cmd_validate() {
  local bin rc=0
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
  bin="$(jaeger_bin)"
  if [[ -x "$bin" ]]; then
    log "jaeger: validate $JAEGER_CONFIG"
    JAEGER_LISTEN_HOST="$HOST" "$bin" validate --config "$JAEGER_CONFIG" || rc=1
  else
    log "jaeger: not built, skipping its config"
  fi
  command -v promtool >/dev/null 2>&1 || die "promtool not installed: run scripts/stack.sh install"
  local f
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
    jaeger) p="$(jaeger_bin)" ;;
    *) die "usage: scripts/stack.sh bin collector|jaeger" ;;
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
    start-tier) cmd_start_tier "${1:-}" ;;
    stop-tier) stop_tier ;;
    status-tier) cmd_status_tier ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
