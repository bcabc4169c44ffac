#!/usr/bin/env bash
# The demo: brings the backend stack up (Docker Compose where a Docker engine answers, the
# native stack otherwise), runs the example service under opentelemetry-instrument, sends
# diagnoses and prints the telemetry read back from Jaeger and Prometheus.
#
#   scripts/demo.sh           as above; the stack keeps running afterwards (scripts/stack.sh stop)
#   scripts/demo.sh --local   no stack: telemetry goes to a loopback receiver and is printed
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode=native
if [ "${1:-}" = "--local" ]; then
  mode=local
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  mode=docker
elif ! command -v go >/dev/null 2>&1; then
  echo "Neither a Docker engine nor Go is available, so the collector, Jaeger and Prometheus"
  echo "cannot run here: printing the telemetry locally instead."
  mode=local
fi

bash scripts/bootstrap.sh

case "$mode" in
  docker)
    # The key of the user-id pseudonyms, generated once and kept beside the stack's cache.
    key_file="${OTEL_HCV_CACHE:-$HOME/.cache/otel-hcv}/pseudonym.key"
    if [ -z "${HCV_PSEUDONYM_KEY:-}" ]; then
      if [ ! -s "$key_file" ]; then
        mkdir -p "$(dirname "$key_file")"
        (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$key_file")
      fi
      HCV_PSEUDONYM_KEY="$(cat "$key_file")"
      export HCV_PSEUDONYM_KEY
    fi
    echo "==> docker compose up (collector, Jaeger, Prometheus)"
    docker compose up -d --wait otel-collector jaeger prometheus
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
    exec .venv/bin/python scripts/demo.py
    ;;
  native)
    echo "==> native stack (first run builds the collector, Jaeger and its UI: several minutes)"
    bash scripts/stack.sh install
    bash scripts/stack.sh start
    eval "$(bash scripts/stack.sh env)"
    exec .venv/bin/python scripts/demo.py
    ;;
  local)
    exec .venv/bin/python scripts/demo.py --local
    ;;
esac
