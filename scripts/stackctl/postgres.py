"""PostgreSQL: its own launcher (initdb, pg_ctl, the hcv role and database), run as an
unprivileged OS user when the stack is started as root -- PostgreSQL refuses to run as root."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.stackctl.components import HOST, Component
from scripts.stackctl.processes import Manager, log

CREATE_ROLE = """DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hcv') THEN
        CREATE ROLE hcv LOGIN CREATEDB PASSWORD 'hcv';
      END IF; END $$;"""


def as_pg_user(m: Manager, command: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", m.s.pg_os_user, "--", *command]
    return list(command)


def ensure_pg_user(m: Manager) -> None:
    if os.geteuid() != 0:
        return
    if subprocess.run(["id", "-u", m.s.pg_os_user], capture_output=True).returncode != 0:
        log(f"postgres: creating system user {m.s.pg_os_user} (PostgreSQL refuses to run as root)")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             m.s.pg_os_user],
            check=True,
        )  # fmt: skip


def launch_postgres(m: Manager, c: Component) -> bool:
    s = m.s
    bindir = Path(s.binary("pg-bindir"))
    if not m.ports_free(c):
        return False
    ensure_pg_user(m)
    for directory in (s.state / "postgres", s.pg_socket_dir, s.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for directory in (s.state, s.state / "postgres"):
        with contextlib.suppress(OSError):
            directory.chmod(0o755)
    pg_log = s.log_dir / "postgres.log"
    pg_log.touch()
    if os.geteuid() == 0:
        for path in (s.state / "postgres", s.pg_socket_dir, pg_log):
            os.chown(path, _uid(s.pg_os_user), -1)
        if subprocess.run(as_pg_user(m, ["test", "-w", str(s.state / "postgres")])).returncode != 0:
            log(f"postgres: {s.pg_os_user} cannot write to {s.state / 'postgres'} (is a parent directory private?)")
            return False
    with open(pg_log, "ab") as out:
        if not (s.pgdata / "PG_VERSION").is_file() or (s.pgdata / "PG_VERSION").stat().st_size == 0:
            log(f"postgres: initdb {s.pgdata}")
            subprocess.run(["rm", "-rf", str(s.pgdata)], check=False)
            initdb = [str(bindir / "initdb"), "-D", str(s.pgdata), "-U", "postgres", "-E", "UTF8", "--locale=C",
                      "--auth-local=trust", "--auth-host=scram-sha-256"]  # fmt: skip
            if subprocess.run(as_pg_user(m, initdb), stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                log("postgres: initdb failed")
                return False
        # Test-stack settings: loopback only, no durability (fsync off) for speed.
        options = (
            f"-c listen_addresses={HOST} -p {c.port} -c unix_socket_directories={s.pg_socket_dir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        start = [str(bindir / "pg_ctl"), "start", "-D", str(s.pgdata), "-l", str(pg_log), "-w",
                 "-t", f"{s.start_timeout:g}", "-o", options]  # fmt: skip
        for attempt in range(1, 6):
            # After a kill -9 the postmaster's pid and socket lock files stay behind, and
            # its zombie or dying children can hold them for a moment: clear and retry.
            if not m.is_running(c):
                (s.pgdata / "postmaster.pid").unlink(missing_ok=True)
                (s.pg_socket_dir / f".s.PGSQL.{c.port}.lock").unlink(missing_ok=True)
            if subprocess.run(as_pg_user(m, start), capture_output=True).returncode == 0:
                break
            if attempt == 5:
                log("postgres: pg_ctl start failed")
                return False
            log(f"postgres: pg_ctl start failed (attempt {attempt}); retrying")
            time.sleep(1)
        # Role and database hcv/hcv (idempotent). CREATEDB lets Django create test databases.
        psql = [str(bindir / "psql"), "-X", "-q", "-h", str(s.pg_socket_dir), "-p", str(c.port), "-U", "postgres",
                "-v", "ON_ERROR_STOP=1", "-d", "postgres"]  # fmt: skip
        if subprocess.run([*psql, "-c", CREATE_ROLE], stdout=out, stderr=subprocess.STDOUT).returncode != 0:
            log("postgres: creating role hcv failed")
            return False
        exists = subprocess.run(
            [*psql, "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'hcv'"], capture_output=True, text=True
        ).stdout.strip()
        if exists != "1":
            created = subprocess.run(
                [*psql, "-c", "CREATE DATABASE hcv OWNER hcv"], stdout=out, stderr=subprocess.STDOUT
            )
            if created.returncode != 0:
                log("postgres: creating database hcv failed")
                return False
    return True


def pg_ctl_stop(m: Manager) -> bool:
    """A fast shutdown through pg_ctl; whether it succeeded."""
    command = [
        str(Path(m.s.binary("pg-bindir")) / "pg_ctl"),
        "stop",
        "-D",
        str(m.s.pgdata),
        "-m",
        "fast",
        "-w",
        "-t",
        "30",
    ]
    try:
        return subprocess.run(as_pg_user(m, command), capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid
