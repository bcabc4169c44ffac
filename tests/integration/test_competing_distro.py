"""opentelemetry-instrument with upstream's opentelemetry-distro installed next to ours.

The project's own environment carries no second distro; these tests build one that does:
a virtual environment (cached outside the clone, keyed by the instrumentation version)
that sees the development environment's packages plus ``opentelemetry-distro`` of the
matching version. When upstream's distro wins, otel-hcv must say so once, naming
``OTEL_PYTHON_DISTRO=otel_hcv``, at launch and in a Django system check; when ours is
named, everything works.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness.variants import VARIANTS
from otel_hcv.receiver import OtlpReceiver
from tests.support.envs import upstream_distro_env
from tests.support.service import REPO, ServiceProcess, free_port, service_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROJECT = REPO / "tests" / "budgets_project"
LAUNCH_LINE = "otel-hcv: opentelemetry-instrument loaded another distro"
FIX = "OTEL_PYTHON_DISTRO=otel_hcv"
UPSTREAM_DISTRO = "distro"  # the entry point name of opentelemetry-distro's distro


@pytest.fixture(scope="module")
def distro_env() -> Path:
    return upstream_distro_env()


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("budgets-distro") / "budgets.sqlite3"
    env = service_env({"BUDGETS_SQLITE_PATH": str(path)})
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=PROJECT, env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return path


def launch(distro_env: Path, args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    env = service_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", **extra})
    command = [str(distro_env / "bin" / "opentelemetry-instrument"), str(distro_env / "bin" / "python"), *args]
    return subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False)


def launch_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if LAUNCH_LINE in line and "otel_hcv.W001" not in line]


def test_the_environment_really_has_both_distros(distro_env):
    result = subprocess.run(
        [str(distro_env / "bin" / "python"), "-c",
         "from importlib.metadata import entry_points; print(sorted(e.name for e in "
         "entry_points(group='opentelemetry_distro')))"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == str(sorted([UPSTREAM_DISTRO, "otel_hcv"]))
    # ...and the development environment has only ours.
    names = sorted(e.name for e in importlib.metadata.entry_points(group="opentelemetry_distro"))
    assert names == ["otel_hcv"]


def test_upstream_distro_winning_is_named_once_before_djangos_unrelated_error(distro_env, database):
    # manage.py exports DJANGO_SETTINGS_MODULE only after the launcher ran: upstream's
    # Django instrumentation then configures empty settings and runserver fails.
    result = launch(distro_env, ["manage.py", "runserver", "--noreload"], OTEL_PYTHON_DISTRO=UPSTREAM_DISTRO,
                    BUDGETS_SQLITE_PATH=str(database))  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    (line,) = launch_lines(output)
    assert FIX in line and "ALLOWED_HOSTS" in line
    assert output.index(LAUNCH_LINE) < output.index("You must set settings.ALLOWED_HOSTS")


def test_system_check_and_startup_line_name_the_fix(distro_env, database):
    result = launch(distro_env, ["manage.py", "check"], OTEL_PYTHON_DISTRO=UPSTREAM_DISTRO,
                    DJANGO_SETTINGS_MODULE="budget_site.settings", BUDGETS_SQLITE_PATH=str(database))  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output  # a warning: the service itself still works
    assert "otel_hcv.W001" in output and FIX in output
    assert len(launch_lines(output)) == 1, output


def test_our_distro_named_works_next_to_upstreams(distro_env, database, tmp_path):
    with OtlpReceiver() as receiver:
        port = free_port()
        env = service_env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_PYTHON_DISTRO": "otel_hcv",
                           "OTEL_BSP_SCHEDULE_DELAY": "200", "BUDGETS_SQLITE_PATH": str(database)})  # fmt: skip
        command = [str(distro_env / "bin" / "opentelemetry-instrument"), str(distro_env / "bin" / "python"),
                   "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]  # fmt: skip
        service = ServiceProcess(command, env, port, tmp_path / "server.log", cwd=PROJECT)
        try:
            service.wait_ready(path="/health/live")
            import urllib.error
            import urllib.request

            try:
                urllib.request.urlopen(f"{service.url}/api/users/me/budgets/", timeout=10)
            except urllib.error.HTTPError as error:
                assert error.code == 401
            exported = receiver.wait_for(lambda: any(s.kind == 2 for _, s in receiver.spans()))
            time.sleep(0.5)
        finally:
            service.stop()
        output = service.output()
    assert exported, output
    assert not launch_lines(output) and "otel_hcv.W001" not in output


def test_upstream_variants_run_where_upstream_distro_is_installed() -> None:
    """Plain opentelemetry-instrument needs opentelemetry-distro, which the project's own
    environment leaves out: without it the upstream variants configure no SDK and measure
    nothing. They run on the cached environment that adds it; the others on this one."""
    upstream = VARIANTS["upstream"]
    python = upstream.python()  # built here on first use
    assert python != Path(sys.executable) and python.exists()
    listed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; "
         "print(sorted(e.name for e in m.entry_points(group='opentelemetry_distro')))"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "'distro'" in listed.stdout
    command = upstream.server_command("gunicorn", "app:application")
    launcher = str(python.parent / "opentelemetry-instrument")
    assert command == [launcher, str(python), "-m", "gunicorn", "app:application"]
    assert Path(command[0]).exists()
    assert VARIANTS["hcv"].server_command("uvicorn")[1:] == [sys.executable, "-m", "uvicorn"]
    assert VARIANTS["baseline"].server_command("gunicorn") == [sys.executable, "-m", "gunicorn"]
    assert all(VARIANTS[name].python() == Path(sys.executable) for name in ("baseline", "hcv", "hcv-down"))
