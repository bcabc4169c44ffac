"""Environments beside the project's own: a venv that adds upstream's opentelemetry-distro.

The project's environment carries no second distro (it competes with otel-hcv's). What needs
one -- the competing-distro tests, the benchmarks' plain-upstream variants -- runs in a venv
cached outside the clone, keyed by the instrumentation version, that sees the development
environment's packages plus ``opentelemetry-distro`` of the matching version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otel-hcv" / "envs"


def upstream_distro_env() -> Path:
    """A venv seeing this environment's packages plus opentelemetry-distro; built once."""
    version = importlib.metadata.version("opentelemetry-instrumentation")
    key = hashlib.sha256(f"{sys.prefix}|{sys.version}|{version}".encode()).hexdigest()[:16]
    root = cache_root() / f"upstream-distro-{version}-{key}"
    if (root / ".complete").exists():
        return root
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(building)], check=True, timeout=120)
    site_packages = Path(
        sysconfig.get_path("purelib", vars={"base": str(building), "platbase": str(building)})
    )
    # An import line, so the development environment's own .pth files (the editable
    # install of otel-hcv) are processed too; its packages come after this venv's own.
    (site_packages / "otel_hcv_development.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n"
    )
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site_packages),
         f"opentelemetry-distro=={version}"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    if install.returncode != 0:
        raise RuntimeError(f"could not install opentelemetry-distro=={version}:\n{install.stderr}")
    launcher = building / "bin" / "opentelemetry-instrument"
    launcher.write_text(
        f"#!{building / 'bin' / 'python'}\nfrom opentelemetry.instrumentation.auto_instrumentation import run\nrun()\n"
    )
    launcher.chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)
    # The launcher's first line names the directory it was written in.
    launcher = root / "bin" / "opentelemetry-instrument"
    launcher.write_text(launcher.read_text().replace(str(building), str(root)))
    (root / ".complete").write_text(version)
    return root
