#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the Python packages (.venv), the
# Debian packages and Go-built binaries of the backend stack (cached outside the clone),
# starts the stack, runs every test suite (and the unit and privacy suites again on the
# lowest and the newest versions pyproject.toml declares), and stops the stack again.
#
#   scripts/test.sh            everything
#   scripts/test.sh -k health  extra arguments go to every pytest run
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }
failures=()
# Each pytest run's output is kept too, so the end of the output can repeat which tests
# failed (a CI log is often read from its tail).
logs_dir="$(mktemp -d "${TMPDIR:-/tmp}/otel-hcv-test-logs.XXXXXX")"

step "Python environment"
bash scripts/bootstrap.sh || exit 1
PY=.venv/bin/python

step "Backend stack: install (first run builds the collector, Jaeger and its UI: several minutes)"
bash scripts/stack.sh install || exit 1
step "Backend stack: start"
bash scripts/stack.sh start || exit 1
trap 'step "Backend stack: stop"; bash scripts/stack.sh stop' EXIT
eval "$(bash scripts/stack.sh env)"

step "Lint"
.venv/bin/ruff check . || failures+=("ruff")

# The lowest and the newest versions pyproject.toml allows, each in a venv cached outside
# the clone (the first run installs both: a few minutes; later runs reinstall nothing).
step "Version bounds: unit and privacy suites on the lowest and the newest declared versions"
"$PY" scripts/check_bounds.py -- "$@" || failures+=("version bounds")

# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
run_pytest() {
  local name="$1"; shift
  step "pytest: $name"
  local log
  log="$(mktemp "$logs_dir/pytest.XXXXXX")"
  "$PY" -m pytest "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  if [ "$status" -ne 0 ]; then
    [ "$status" -eq 5 ] && echo "pytest ($name) collected no tests"
    failures+=("$name")
    grep -E '^(FAILED|ERROR) ' "$log" | sed "s|^|  [$name] |" >> "$logs_dir/summary"
  fi
}

run_pytest "package, privacy, integration, stack, end-to-end and collector tier" tests/unit tests/privacy tests/integration tests/stack tests/e2e tests/tier "$@"
run_pytest "example service" tests/example -p no:cacheprovider --ds=hcv_service.settings "$@"

if [ "${#failures[@]}" -ne 0 ]; then
  printf '\nFAILED: %s\n' "${failures[*]}"
  [ -s "$logs_dir/summary" ] && cat "$logs_dir/summary"
  exit 1
fi
printf '\nAll test suites passed.\n'
