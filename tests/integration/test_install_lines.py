"""The README's install lines, run as written in throwaway venvs outside the clone.

The lines are read from the README's first ``pip`` block (``/path/to/otel-hcv`` becomes
this checkout), each ``pip`` runs as the venv's own pip (the one ``python -m venv`` ships,
23.2 on Python 3.11), and the result must be what a user needs: otel_hcv importable from
the venv, not from the clone; the ``sentry`` extra installed; ``opentelemetry-instrument``
loading otel-hcv's distro and configurator.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.service import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

README = REPO / "README.md"
CHECKOUT_PLACEHOLDER = "/path/to/otel-hcv"
PUBLISHED_LINE = 'pip install "otel-hcv[sentry]"'


def readme_install_lines() -> list[list[str]]:
    """The commands of the README's first shell block that runs pip, comments dropped."""
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        lines = [shlex.split(line, comments=True) for line in block.splitlines()]
        commands = [words for words in lines if words]
        if any(words[0] == "pip" for words in commands):
            return commands
    raise AssertionError("README.md has no shell block with pip install lines")


def in_checkout(word: str) -> str:
    return word.replace(CHECKOUT_PLACEHOLDER, str(REPO))


def clean_env(venv: Path) -> dict[str, str]:
    """A user's shell with the venv activated: nothing of this test session leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "PIP_", "PYTHON", "VIRTUAL_ENV", "DJANGO_", "PYTEST_", "SENTRY_"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=180)
    return path


def run_readme_line(words: list[str], venv: Path, cwd: Path) -> None:
    assert words[0] == "pip", f"README install block has a line that is not pip: {words}"
    command = [str(venv / "bin" / "python"), "-m", "pip", *[in_checkout(word) for word in words[1:]]]
    result = subprocess.run(command, cwd=cwd, env=clean_env(venv), capture_output=True, text=True, timeout=600,
                            check=False)  # fmt: skip
    assert result.returncode == 0, f"`{shlex.join(words)}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def in_venv(venv: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=cwd, env=clean_env(venv), capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def assert_usable_install(venv: Path, cwd: Path) -> None:
    python = str(venv / "bin" / "python")
    where = in_venv(venv, cwd, python, "-c", "import otel_hcv, sentry_sdk; print(otel_hcv.__file__)")
    assert where.returncode == 0, where.stderr
    module_path = Path(where.stdout.strip()).resolve()
    assert module_path.is_relative_to(venv.resolve()), f"otel_hcv imported from {module_path}, not the venv"

    entry_points = in_venv(venv, cwd, python, "-c", (
        "from importlib.metadata import entry_points\n"
        "for group in ('opentelemetry_distro', 'opentelemetry_configurator'):\n"
        "    print(group, sorted(f'{e.name}={e.value}' for e in entry_points(group=group)))"
    ))  # fmt: skip
    assert entry_points.returncode == 0, entry_points.stderr
    assert entry_points.stdout.splitlines() == [
        "opentelemetry_distro ['otel_hcv=otel_hcv.distro:OtelHcvDistro']",
        "opentelemetry_configurator ['otel_hcv=otel_hcv.distro:OtelHcvConfigurator']",
    ]

    # The launcher really loads our distro: it names our configurator before the program runs.
    launched = in_venv(venv, cwd, str(venv / "bin" / "opentelemetry-instrument"), python, "-c",
                       "import os; print(os.environ.get('OTEL_PYTHON_CONFIGURATOR'))")  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    assert launched.stdout.strip() == "otel_hcv"
    assert "another distro" not in launched.stderr


def test_readme_gives_the_checkout_and_wheel_lines_and_keeps_the_published_name_for_later():
    commands = readme_install_lines()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert [words[:2] for words in commands] == [["pip", "install"], ["pip", "wheel"], ["pip", "install"]]
    assert commands[0][-1] == f"{CHECKOUT_PLACEHOLDER}[sentry]"
    # The wheel named in the README is the one the current version builds.
    assert commands[2][-1] == f"dist/otel_hcv-{version}-py3-none-any.whl[sentry]"
    text = README.read_text()
    assert PUBLISHED_LINE in text and "Once it is published" in text
    assert PUBLISHED_LINE not in "\n".join(shlex.join(words) for words in commands)


def test_install_from_the_checkout(tmp_path):
    path_line = readme_install_lines()[0]
    venv = make_venv(tmp_path / "venv")
    run_readme_line(path_line, venv, tmp_path)
    assert_usable_install(venv, tmp_path)


def test_build_a_wheel_and_install_it(tmp_path):
    wheel_line, install_line = readme_install_lines()[1:3]
    venv = make_venv(tmp_path / "venv")
    run_readme_line(wheel_line, venv, tmp_path)
    run_readme_line(install_line, venv, tmp_path)
    assert_usable_install(venv, tmp_path)
