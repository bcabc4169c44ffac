"""The load: ``POST /api/diagnose/`` with one body, sent once (``post``) or by wrk (``run_wrk``).

Two shapes (``variants.SHAPES``): ``bare``, an anonymous request with a valid body (parsing,
validation, the model's prediction), and ``realistic``, a DRF-token-authenticated user (token
lookup, the user's previous DiagnosisRecord read, the prediction, a new record stored).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.service import EXAMPLE

LUA = Path(__file__).resolve().parents[1] / "wrk_post.lua"

# The request body: the example model's health-probe sample (the data set's median blood donor).
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
from diagnosis.model import HEALTH_PROBE_SAMPLE  # noqa: E402

BODY = json.dumps(dict(HEALTH_PROBE_SAMPLE))


def post(url: str, token: str | None, timeout: float = 10.0) -> int:
    """One request; its status."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=BODY.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def run_wrk(url: str, token: str | None, seconds: float, connections: int, core: int | None) -> dict[str, Any]:
    """wrk with one thread for ``seconds`` (pinned to ``core`` if given): bench/wrk_post.lua's result,
    with requests per second and the error count added."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA), url,
    ]  # fmt: skip
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "BENCH_BODY": BODY, "BENCH_TOKEN": token or ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line.removeprefix("BENCH_RESULT "))
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            data["error_count"] = sum(data["errors"].values())
            return data
    raise RuntimeError(f"wrk gave no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
