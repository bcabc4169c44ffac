"""One gunicorn worker of a variant: started pinned to a core, measured, stopped, its log kept short."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.support.service import EXAMPLE, free_port, service_env

from .variants import Endpoints, Variant
from .workload import post

BENCH = Path(__file__).resolve().parents[1]
GUNICORN_CONF = BENCH / "gunicorn_conf.py"


@dataclass
class Setup:
    """What every worker of one run shares: where telemetry goes, the database, the demo user."""

    run_id: str
    workdir: Path
    endpoints: Endpoints
    database_url: str
    redis_url: str
    token: str
    user_id: int
    slow_ms: float = 0.0  # BENCH_SLOW_MS of the workers (bench/gunicorn_conf.py); 0: off
    state_at_start: str = ""
    sqlite_path: str = ""  # the example's SQLite database, where database_url is empty


def worker_environment(setup: Setup, variant: Variant, service_name: str, stats_path: Path) -> dict[str, str]:
    """The environment of a variant's gunicorn (master and worker)."""
    extra = variant.environment(setup.endpoints)
    python_path = [str(BENCH)]
    if variant.settings_module:
        extra["DJANGO_SETTINGS_MODULE"] = variant.settings_module
        python_path.append(str(EXAMPLE))
    extra.update(
        {
            "PYTHONPATH": os.pathsep.join(python_path),
            "HCV_DATABASE_URL": setup.database_url,
            **({"HCV_SQLITE_PATH": setup.sqlite_path} if setup.sqlite_path else {}),
            "HCV_REDIS_URL": setup.redis_url,
            "HCV_ALLOW_FAILURE_INJECTION": "0",
            "HCV_STORE_DIAGNOSES": "1",
            "OTEL_SERVICE_NAME": service_name,
            "BENCH_STATS_FILE": str(stats_path),
            **({"BENCH_SLOW_MS": str(setup.slow_ms)} if setup.slow_ms else {}),
        }
    )
    return service_env(extra)


class Server:
    """One gunicorn master with one sync worker, pinned to ``core``."""

    def __init__(self, setup: Setup, variant: Variant, shape: str, service_name: str, core: int, tag: str) -> None:
        self.variant = variant
        self.shape = shape
        self.service_name = service_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/diagnose/"
        self.stats_path = setup.workdir / f"{tag}.stats.json"
        self.log_path = setup.workdir / f"{tag}.log"
        self.token = setup.token if shape == "realistic" else None
        self.env = worker_environment(setup, variant, service_name, self.stats_path)
        gunicorn = variant.server_command(
            "gunicorn",
            "-c", str(GUNICORN_CONF),
            "--workers", "1",
            "--worker-class", "sync",
            "--bind", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "5",
            "--no-control-socket",
            "hcv_service.wsgi:application",
        )  # fmt: skip
        self.command = ["taskset", "-c", str(core), *gunicorn]
        self.process: subprocess.Popen[bytes] | None = None
        self.worker: psutil.Process | None = None
        self.requests_served = 0

    def start(self, timeout: float = 120.0) -> None:
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                self.command, cwd=EXAMPLE, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.variant.name}: gunicorn exited with {self.process.returncode}:\n{self.tail()}"
                )
            try:
                status = post(self.url, self.token)
            except OSError:
                time.sleep(0.2)
                continue
            self.requests_served += 1
            if status != 200:
                raise RuntimeError(f"{self.variant.name}: POST answered {status}:\n{self.tail()}")
            break
        else:
            raise RuntimeError(f"{self.variant.name}: no answer within {timeout}s:\n{self.tail()}")
        master = psutil.Process(self.process.pid)
        workers = [child for child in master.children() if child.is_running()]
        if len(workers) != 1:
            raise RuntimeError(f"{self.variant.name}: expected one worker, found {workers}")
        self.worker = workers[0]

    def rss(self) -> int:
        assert self.worker is not None
        return self.worker.memory_info().rss

    def cpu_seconds(self) -> float:
        assert self.worker is not None
        times = self.worker.cpu_times()
        return times.user + times.system

    def stats(self, newer_than: float = 0.0, wait: float = 3.0) -> dict[str, Any] | None:
        """The worker's latest stats (bench/gunicorn_conf.py), waiting for one written after ``newer_than``."""
        deadline = time.monotonic() + wait
        latest = None
        while True:
            with contextlib.suppress(OSError, ValueError):
                latest = json.loads(self.stats_path.read_text())
            if (latest and latest.get("time", 0) > newer_than) or time.monotonic() > deadline:
                return latest
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> float:
        """SIGTERM (graceful: the SDK flushes what it holds), SIGKILL after ``timeout``; seconds taken."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # Leftovers in the group (the worker, if the master died first).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return time.monotonic() - started

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def compact_log(self, keep: int = 30) -> list[str]:
        """Shrink the service log (one JSON line per request) to its head and tail; return its warnings
        and errors, counted by logger and message."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        kept = text
        if len(text) > 2 * keep:
            kept = [*text[:keep], f"... {len(text) - 2 * keep} lines dropped by the benchmark ...", *text[-keep:]]
        self.log_path.write_text("\n".join(kept) + "\n")
        return [f"{count} x {key}" for key, count in count_problems(text).items()]


def count_problems(lines: list[str]) -> dict[str, int]:
    """Warnings, errors and tracebacks in a service log, counted by level, logger and message
    (JSON lines) or by gunicorn's line without its time stamp and pid."""
    seen: dict[str, int] = {}
    for line in lines:
        key = None
        if line.startswith("{") and '"level":"' in line and '"level":"INFO"' not in line:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                    key = f"{record['level']} {record.get('logger')}: {str(record.get('message'))[:160]}"
        elif "Traceback" in line or "[ERROR]" in line or "[CRITICAL]" in line:
            key = re.sub(r"^\[[^]]*\] \[\d+\] ", "", line)[:160]
        if key:
            seen[key] = seen.get(key, 0) + 1
    return seen
