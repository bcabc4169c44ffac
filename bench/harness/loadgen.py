"""A fixed-rate (open-loop) load: vegeta, built once from the Go module proxy and cached outside
the clone, keyed by version.

wrk is closed-loop: each connection sends its next request only when the previous one has been
answered, so a slow response holds back the requests behind it instead of being measured by them
(coordinated omission), and the load follows the server's speed. vegeta is open-loop: it sends at
the rate it is given whatever the server does (with as many concurrent requests as that takes), so
every variant gets the same load and its p99 is what clients arriving at that rate see.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .workload import BODY

VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"


def cache_dir() -> Path:
    """Where slow builds are kept: ``$OTEL_HCV_CACHE``, else ``~/.cache/otel-hcv`` (as scripts/stack.sh)."""
    return Path(os.environ.get("OTEL_HCV_CACHE") or Path.home() / ".cache" / "otel-hcv")


def go_environment(cache: Path) -> dict[str, str]:
    """The Go settings scripts/stack.sh builds with: caches under ``cache``, the local toolchain only."""
    return {
        **os.environ,
        "GOPATH": str(cache / "go"),
        "GOMODCACHE": str(cache / "go" / "pkg" / "mod"),
        "GOCACHE": str(cache / "go-build"),
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-buildvcs=false",
    }


def find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_vegeta(version: str = VEGETA_VERSION) -> Path:
    """The vegeta binary of ``version``, built with ``go install`` the first time (about a minute)."""
    cache = cache_dir()
    binary = cache / "bin" / f"vegeta-{version}"
    if os.access(binary, os.X_OK):
        return binary
    go = find_go()
    if go is None:
        raise SystemExit("vegeta is built with Go (>= 1.22 on PATH); Go was not found")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vegeta-", dir=binary.parent) as staging:
        env = {**go_environment(cache), "GOBIN": staging}
        result = subprocess.run(
            [go, "install", f"{VEGETA_MODULE}@{version}"], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"go install {VEGETA_MODULE}@{version} failed:\n{result.stderr[-3000:]}")
        # Renamed into place whole: a concurrent or interrupted build leaves no half-written binary.
        os.replace(Path(staging) / "vegeta", binary)
    return binary


def run_vegeta(
    vegeta: Path, url: str, token: str | None, rate: float, seconds: float, core: int | None
) -> dict[str, Any]:
    """``POST url`` at ``rate`` requests per second for ``seconds``: vegeta's JSON report, with the
    latencies in milliseconds (``p50``, ``p90``, ``p99``, ``max``, ``mean``) added."""
    with tempfile.TemporaryDirectory(prefix="vegeta-run-") as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(BODY)
        headers = ["Content-Type: application/json", *([f"Authorization: Token {token}"] if token else [])]
        targets = Path(tmp) / "targets.txt"
        targets.write_text("\n".join([f"POST {url}", *headers, f"@{body}", ""]))
        attack = [
            str(vegeta), "attack", f"-rate={rate:g}/s", f"-duration={seconds:g}s", f"-targets={targets}",
            "-timeout=10s", f"-max-workers={max(8, int(rate))}",
        ]  # fmt: skip
        if core is not None:
            attack = ["taskset", "-c", str(core), *attack]
        results = Path(tmp) / "results.bin"
        with open(results, "wb") as out:
            subprocess.run(attack, stdout=out, stderr=subprocess.PIPE, timeout=seconds + 60, check=True)
        report = subprocess.run(
            [str(vegeta), "report", "-type=json", str(results)], capture_output=True, text=True, timeout=60, check=True
        )
    data = json.loads(report.stdout)
    latencies = data["latencies"]
    data.update(
        p50=latencies["50th"] / 1e6,
        p90=latencies["90th"] / 1e6,
        p99=latencies["99th"] / 1e6,
        max=latencies["max"] / 1e6,
        mean=latencies["mean"] / 1e6,
    )
    return data
