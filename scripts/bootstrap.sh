#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs otel-hcv with its dev, example and Sentry extras.
# Idempotent: a second run only checks that the installed set is current.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "otel-hcv needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    echo "==> python3-venv is missing; installing it with apt-get"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  fi
fi

# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.otel-hcv-installed
digest="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "==> installing otel-hcv[dev] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$digest" > "$stamp"
fi

# A second distro makes opentelemetry-instrument pick one of the two at random; the tests
# that need upstream's distro build an environment of their own. An older .venv may have it.
if .venv/bin/python -m pip show -q opentelemetry-distro >/dev/null 2>&1; then
  echo "==> removing opentelemetry-distro from .venv (it competes with otel-hcv's distro)"
  .venv/bin/python -m pip uninstall -q -y opentelemetry-distro
fi
