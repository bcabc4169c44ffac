"""Start, stop and probe the components described in ``components``.

A component's pid is recorded in ``<state>/run/<name>.pid`` (PostgreSQL keeps its own in
postmaster.pid) and trusted only while the process's command line matches the record's
marker, so a reused pid is never taken for a component. Each component runs in its own
session with its output appended to ``<state>/log/<name>.log``, every start introduced by a
``==== <time> starting <name> ====`` line.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.stackctl.components import BINARY_VARIABLES, HOST, Component, Probe, Settings

STOP_GRACE_SECONDS = 15


def log(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


class StackError(Exception):
    """A command failed; the message is printed as ``[stack] ERROR: ...``."""


# --------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------
def port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Manager:
    def __init__(self, settings: Settings) -> None:
        self.s = settings

    # ----------------------------------------------------------------------
    # Process bookkeeping
    # ----------------------------------------------------------------------
    def pidfile(self, name: str) -> Path:
        return self.s.run_dir / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.s.log_dir / f"{name}.log"

    @staticmethod
    def pid_alive(pid: int) -> bool:
        """Alive and not a zombie waiting for its (re)parent to reap it."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return True
        state = re.search(r"^State:\s+(\S)", status, re.M)
        return not (state and state.group(1) == "Z")

    def pid(self, c: Component) -> int | None:
        """The component's pid if it runs (its command line matching the marker)."""
        path = self.s.pgdata / "postmaster.pid" if c.name == "postgres" else self.pidfile(c.name)
        try:
            first = path.read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        digits = "".join(ch for ch in first if ch.isdigit())
        if not digits:
            return None
        pid = int(digits)
        if not self.pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        return pid if re.search(c.marker, cmdline) else None

    def is_running(self, c: Component) -> bool:
        return self.pid(c) is not None

    def probe(self, c: Component, p: Probe) -> bool:
        if p.kind == "http":
            return http_ok(p.target)
        if p.kind == "tcp":
            return port_open(int(p.target))
        if p.kind == "redis":
            return redis_ping(c.port)
        if p.kind == "postgres":
            psql = Path(self.s.binary("pg-bindir") or "/usr/bin") / "psql"
            env = {**os.environ, "PGPASSWORD": "hcv", "PGCONNECT_TIMEOUT": "2"}
            command = [
                str(psql),
                "-X",
                "-q",
                "-h",
                HOST,
                "-p",
                str(c.port),
                "-U",
                "hcv",
                "-d",
                "hcv",
                "-tAc",
                "select 1",
            ]
            try:
                return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                return False
        raise ValueError(f"unknown probe kind {p.kind}")

    def is_healthy(self, c: Component) -> bool:
        return all(self.probe(c, p) for p in c.probes)

    def wait_healthy(self, c: Component) -> bool:
        deadline = time.monotonic() + self.s.start_timeout
        while time.monotonic() < deadline:
            if self.is_healthy(c):
                return True
            if not self.is_running(c):
                # Give a crashing process's last words a moment to reach the log.
                time.sleep(0.2)
                log(f"{c.name}: process exited during startup")
                return False
            time.sleep(0.2)
        log(f"{c.name}: not healthy after {self.s.start_timeout:g}s")
        return False

    def show_log_tail(self, name: str) -> None:
        """Last lines of a component's log, from its latest start only, long lines cut."""
        path = self.logfile(name)
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return
        if not lines:
            return
        log(f"last lines of {path}:")
        latest: list[str] = []
        for line in lines:
            if re.match(r"^==== .* starting ", line):
                latest = []
            else:
                latest.append(line)
        for line in latest[-30:]:
            print("    " + line[:400], file=sys.stderr)

    def ports_free(self, c: Component) -> bool:
        for port in c.ports.values():
            if port_open(port):
                log(f"{c.name}: port {HOST}:{port} is already in use by another process (not this stack's {c.name})")
                return False
        return True

    def child_env(self, extra: dict[str, str]) -> dict[str, str]:
        """The caller's environment without what stack.sh handed over, plus ``extra``."""
        env = {k: v for k, v in os.environ.items() if k not in BINARY_VARIABLES.values()}
        env.update(extra)
        return env

    def spawn(self, c: Component) -> None:
        """Launch the component detached from this process (a session of its own); record its pid."""
        self.s.run_dir.mkdir(parents=True, exist_ok=True)
        self.s.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with open(self.logfile(c.name), "ab") as out:
            out.write(f"\n==== {stamp} starting {c.name} ====\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(c.command), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.child_env(dict(c.env)), start_new_session=True,
            )  # fmt: skip
        self.pidfile(c.name).write_text(f"{proc.pid}\n")
        # The child's command line reads empty for a moment while its exec completes: the
        # marker check must not take that moment for an exited process.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                    break
            time.sleep(0.01)

    # ----------------------------------------------------------------------
    # Launch, start, stop
    # ----------------------------------------------------------------------
    @staticmethod
    def has_needs(c: Component) -> bool:
        """Whether what the launch needs is there: a command on PATH, an executable, or a file."""
        if "/" not in c.needs:
            present = bool(c.needs) and shutil.which(c.needs) is not None
        else:
            path = Path(c.needs)
            present = path.is_file() and (path.name == ".complete" or os.access(path, os.X_OK))
        if not present:
            log(f"{c.name}: {c.missing}")
        return present

    def launch(self, c: Component) -> bool:
        """Prepare and spawn one component; PostgreSQL and Kafka's first-start formatting have
        steps of their own (postgres.py, kafka.py, imported here: they build on this module)."""
        if not self.has_needs(c):
            return False
        if c.name == "postgres":
            from scripts.stackctl.postgres import launch_postgres

            return launch_postgres(self, c)
        if not self.ports_free(c):
            return False
        if c.name == "jaeger":
            if not c.env.get("JAEGER_TRACE_STORAGE"):
                log(f"jaeger: OTEL_HCV_JAEGER_STORAGE must be badger or memory (got '{self.s.jaeger_storage}')")
                return False
            if not c.env.get("JAEGER_UI_ASSETS"):
                log("jaeger: no UI built (see: scripts/stack.sh install); / shows a placeholder page")
        for directory in c.dirs:
            directory.mkdir(parents=True, exist_ok=True)
        for path, text in c.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if c.name.startswith("kafka-"):
            from scripts.stackctl.kafka import format_storage

            if not format_storage(self, c):
                return False
        self.spawn(c)
        return True

    def start_one(self, c: Component) -> bool:
        t0 = time.monotonic()
        if self.is_running(c):
            if self.wait_healthy(c):
                log(f"{c.name}: already running (pid {self.pid(c)})")
                return True
            log(f"{c.name}: running but unhealthy; restarting it")
            self.stop_one(c)
        if not self.launch(c):
            log(f"{c.name}: FAILED to start")
            # postgres logs initdb/pg_ctl failures; the others failed before spawning.
            if c.name == "postgres":
                self.show_log_tail(c.name)
            return False
        if not self.wait_healthy(c):
            log(f"{c.name}: FAILED to start")
            self.show_log_tail(c.name)
            return False
        log(f"{c.name}: up in {int(time.monotonic() - t0)}s (pid {self.pid(c)}) -- {c.address}")
        return True

    def stop_one(self, c: Component) -> None:
        pid = self.pid(c)
        if pid is None:
            self.pidfile(c.name).unlink(missing_ok=True)
            log(f"{c.name}: not running")
            return
        stopped_by_pg_ctl = False
        if c.name == "postgres":
            from scripts.stackctl.postgres import pg_ctl_stop

            stopped_by_pg_ctl = pg_ctl_stop(self)
        if not stopped_by_pg_ctl:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline and self.pid_alive(pid):
            time.sleep(0.1)
        if self.pid_alive(pid):
            log(f"{c.name}: did not exit after SIGTERM; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        self.pidfile(c.name).unlink(missing_ok=True)
        log(f"{c.name}: stopped (was pid {pid})")

    def stop_if_running(self, c: Component) -> bool:
        """Stop the component if it runs (quietly clearing a stale pid file if not); whether it ran."""
        if self.is_running(c):
            self.stop_one(c)
            return True
        self.pidfile(c.name).unlink(missing_ok=True)
        return False

    def status_rows(self, title: str, components: list[Component]) -> bool:
        """A status table: a header naming the first column, then one row per component.
        Whether every one of them runs and is healthy."""
        ok = True
        row = "{:<17} {:<8} {:<8} {:<9} {}"
        print(row.format(title, "STATE", "PID", "HEALTH", "ADDRESS"))
        for c in components:
            pid = self.pid(c)
            if pid is None:
                print(row.format(c.name, "stopped", "-", "-", c.address))
                ok = False
                continue
            healthy = self.is_healthy(c)
            ok = ok and healthy
            print(row.format(c.name, "running", pid, "healthy" if healthy else "unhealthy", c.address))
        return ok
