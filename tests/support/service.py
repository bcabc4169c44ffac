"""Start the example service as a real server process, the way a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "example"
BIN = Path(sys.executable).parent
TEST_PSEUDONYM_KEY = "integration-test-pseudonym-key"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that nothing listens on now (the kernel's choice; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def service_env(extra: Mapping[str, str], database: Path | None = None) -> dict[str, str]:
    """The environment of a service process: ours minus test-session leftovers."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "HCV_", "DJANGO_", "PYTEST_", "SENTRY_"))
    }
    # The example's SECRET_KEY is a public development key: pseudonyms need a key of their own.
    env.update({"PYTHONUNBUFFERED": "1", "HCV_ALLOW_FAILURE_INJECTION": "1", "HCV_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY})
    if database is not None:
        env["HCV_SQLITE_PATH"] = str(database)
    env.update(extra)
    return env


def manage(args: Sequence[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class ServiceProcess:
    """``opentelemetry-instrument python manage.py runserver`` (or any command), run in
    example/ unless ``cwd`` names another project."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str], port: int, log_path: Path, cwd: Path = EXAMPLE
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str = "/metrics/", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"service did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        return self.process.returncode


def instrumented_runserver(port: int, *, noreload: bool = True) -> list[str]:
    command = [
        str(BIN / "opentelemetry-instrument"),
        sys.executable,
        "manage.py",
        "runserver",
        f"127.0.0.1:{port}",
    ]
    return [*command, "--noreload"] if noreload else command


def post_json(
    url: str,
    body: bytes | str | Mapping[str, Any] | list[Any],
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """POST a JSON body (encoded here unless it is bytes or str); the answer's status and body,
    an error status included."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
