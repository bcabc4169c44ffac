"""Are the version bounds in pyproject.toml true? Installs the lowest and the newest
versions they allow, each in a virtual environment of its own, and runs the unit and
privacy suites, ruff and an import of every declared distribution in both.

lowest  every direct requirement (runtime, every extra, the build system) at its lower
        bound, pinned by a constraints file generated from pyproject.toml (what
        ``uv pip install --resolution lowest-direct`` does); transitive dependencies at the
        newest version their dependents allow, as a user pinning our minimums would get.
newest  no constraints: what ``pip install -e '.[dev,example,sentry]'`` resolves in a fresh
        venv with the pip that ``python -m venv`` ships (23.2 on Python 3.11), which is what
        a newcomer runs. Rebuilt once it is a week old, so that it stays the newest.

In both, the build system is installed first and the project built without isolation, so
that the lowest constraints reach setuptools too. Both use the oldest Python that
``requires-python`` allows (``python3.11``; another with OTEL_HCV_BOUNDS_PYTHON). The
environments are cached outside the clone, in ``$OTEL_HCV_CACHE/bounds`` (default
``~/.cache/otel-hcv/bounds``), named by a digest of the declared requirements and the
interpreter: when nothing changed, nothing is reinstalled. A clone at another path only
re-links its editable install (no resolution).

    scripts/check_bounds.py                 both environments
    scripts/check_bounds.py --only lowest   one of them
    scripts/check_bounds.py --rebuild       reinstall even when cached
    scripts/check_bounds.py -- -k health    arguments after -- go to pytest

Exit status 0 only when both environments were built and every check passed in each;
pytest collecting nothing (its exit status 5) is a failure too.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT_NAME = "otel-hcv"
SUITES = ["tests/unit", "tests/privacy"]
# Bumped when the way an environment is built changes, so cached ones are rebuilt.
RECIPE = "1"
# Operators whose version is the lowest one a specifier admits.
LOWER_BOUND_OPERATORS = (">=", "==", "~=", "===")
# Distributions shown in the summary line of each environment.
SHOWN = ["django", "opentelemetry-sdk", "opentelemetry-instrumentation", "sentry-sdk", "pytest", "pip", "setuptools"]
# Top-level modules that are not meant to be imported on their own.
NOT_IMPORTABLE = {"psycopg_binary"}
# Environments of other bounds kept for a while, for switching branches back and forth.
KEEP_UNUSED_DAYS = 14
KEEP_OTHERS_PER_KIND = 2
# Releases within the bounds keep coming: the newest environment is resolved again after this.
NEWEST_MAX_AGE_DAYS = 7


class BoundsError(Exception):
    """A bound that cannot be checked, or an environment that cannot be built."""


@dataclass
class Declared:
    """The requirements pyproject.toml declares, self-references to extras left out."""

    requires_python: SpecifierSet
    build: list[Requirement]
    runtime: list[Requirement]
    extras: list[str]
    optional: list[Requirement] = field(default_factory=list)

    @property
    def everything(self) -> list[Requirement]:
        return [*self.build, *self.runtime, *self.optional]

    @property
    def distributions(self) -> list[str]:
        """Names of every distribution installed on purpose (the build system aside)."""
        return sorted({canonicalize_name(r.name) for r in [*self.runtime, *self.optional]})

    def digest(self, python_version: str) -> str:
        facts = {
            "recipe": RECIPE,
            "python": python_version,
            "requires_python": str(self.requires_python),
            "requirements": sorted(str(r) for r in self.everything),
            "extras": self.extras,
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def read_declared(pyproject: Path = ROOT / "pyproject.toml") -> Declared:
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    optional: list[Requirement] = []
    for requirements in project.get("optional-dependencies", {}).values():
        for line in requirements:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) != PROJECT_NAME:
                optional.append(requirement)
    return Declared(
        requires_python=SpecifierSet(project.get("requires-python", "")),
        build=[Requirement(line) for line in data["build-system"]["requires"]],
        runtime=[Requirement(line) for line in project["dependencies"]],
        extras=sorted(project.get("optional-dependencies", {})),
        optional=optional,
    )


def lower_bound(requirement: Requirement) -> str:
    versions = [spec.version for spec in requirement.specifier if spec.operator in LOWER_BOUND_OPERATORS]
    if not versions:
        raise BoundsError(f"{requirement} declares no lower bound: every requirement needs one to be checked")
    return max(versions, key=Version)


def lowest_constraints(declared: Declared) -> list[str]:
    """``name==lower-bound`` for every declared requirement, one per distribution."""
    pins: dict[str, str] = {}
    for requirement in declared.everything:
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        version = lower_bound(requirement)
        # The same distribution declared twice (core and an extra): the stricter minimum is the bound.
        pins[name] = max(version, pins.get(name, version), key=Version)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def find_python(declared: Declared) -> Path:
    override = os.environ.get("OTEL_HCV_BOUNDS_PYTHON")
    if override:
        candidates = [override]
    else:
        # The oldest minor version requires-python admits: where old releases lack wheels first.
        minimum = next(
            (f"3.{minor}" for minor in range(8, 30) if declared.requires_python.contains(f"3.{minor}.99")), None
        )
        if minimum is None:
            raise BoundsError(f"no Python 3 version satisfies requires-python {declared.requires_python}")
        candidates = [f"python{minimum}"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found and subprocess.run([found, "-c", ""], capture_output=True, check=False).returncode == 0:
            return Path(found)
    raise BoundsError(f"{candidates[0]} is not on PATH (or does not run); install it or set OTEL_HCV_BOUNDS_PYTHON")


def python_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()


def cache_root() -> Path:
    base = os.environ.get("OTEL_HCV_CACHE") or str(Path.home() / ".cache" / "otel-hcv")
    return Path(base) / "bounds"


def run_logged(command: list[str], log: Path, what: str, env: dict[str, str] | None = None) -> None:
    """Runs a build step; on failure shows its output and raises."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        raise BoundsError(f"{what} failed (exit status {result.returncode}); the end of {log}:\n{tail}")


def pip_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@dataclass
class Environment:
    kind: str  # "lowest" or "newest"
    directory: Path
    constraints: list[str]

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"

    @property
    def complete_marker(self) -> Path:
        return self.directory / ".complete"

    @property
    def linked_root_marker(self) -> Path:
        return self.directory / ".project-root"

    @property
    def built_marker(self) -> Path:
        return self.directory / ".built"

    def outdated(self) -> bool:
        if self.kind != "newest":
            return False
        if not self.built_marker.exists():
            return True
        age_days = (time.time() - float(self.built_marker.read_text())) / 86400
        return age_days > NEWEST_MAX_AGE_DAYS

    def pip_install(self, *args: str) -> list[str]:
        constraint = ["-c", str(self.directory / "constraints.txt")] if self.constraints else []
        return [str(self.python), "-m", "pip", "install", *constraint, *args]


def project_target(declared: Declared) -> str:
    return f"{ROOT}[{','.join(declared.extras)}]" if declared.extras else str(ROOT)


def build(environment: Environment, declared: Declared, python: Path) -> None:
    directory = environment.directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    log = directory / "build.log"
    env = pip_environment()
    if environment.constraints:
        (directory / "constraints.txt").write_text("\n".join(environment.constraints) + "\n")
    run_logged([str(python), "-m", "venv", str(directory)], log, f"{environment.kind}: creating the venv", env)
    # The build system first, at its bound: the editable install below builds without
    # isolation so that the constraints reach setuptools too.
    run_logged(
        environment.pip_install(*[str(r) for r in declared.build]),
        log, f"{environment.kind}: installing the build system", env,
    )  # fmt: skip
    run_logged(
        environment.pip_install("--no-build-isolation", "-e", project_target(declared)),
        log, f"{environment.kind}: installing {PROJECT_NAME} with every extra", env,
    )  # fmt: skip
    freeze = subprocess.run([str(environment.python), "-m", "pip", "freeze", "--all"],
                            capture_output=True, text=True, check=True, env=env)  # fmt: skip
    (directory / "freeze.txt").write_text(freeze.stdout)
    environment.linked_root_marker.write_text(str(ROOT))
    environment.built_marker.write_text(str(time.time()))
    # Last: only a complete environment is ever used. Its modification time says when it was
    # last used (for pruning).
    environment.complete_marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def relink(environment: Environment, declared: Declared) -> None:
    """The cached environment's editable install points at another clone: point it here."""
    log = environment.directory / "build.log"
    run_logged(
        environment.pip_install("--no-deps", "--no-build-isolation", "-e", project_target(declared)),
        log, f"{environment.kind}: re-linking the editable install", pip_environment(),
    )  # fmt: skip
    environment.linked_root_marker.write_text(str(ROOT))


def ensure(environment: Environment, declared: Declared, python: Path, rebuild: bool) -> str:
    """Builds the environment unless cached; returns what was done."""
    lock_path = environment.directory.with_name(environment.directory.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if rebuild or not environment.complete_marker.exists() or environment.outdated():
            build(environment, declared, python)
            return "built"
        if environment.linked_root_marker.read_text() != str(ROOT):
            relink(environment, declared)
            os.utime(environment.complete_marker)
            return "cached, editable install re-linked"
        os.utime(environment.complete_marker)
        return "cached"


def installed_versions(environment: Environment) -> dict[str, str]:
    versions = {}
    for line in (environment.directory / "freeze.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            versions[canonicalize_name(name)] = version
    return versions


# Imports every package a declared distribution installs: the outermost ones with an
# __init__.py, so that namespace packages (opentelemetry.*) are entered, not just named.
IMPORT_EVERY_DISTRIBUTION = """
import importlib, os, sys
from importlib.metadata import distribution
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.testapp.settings")
import django
django.setup()
skipped = set(sys.argv[2].split(","))
modules = set()
for name in sys.argv[1].split(","):
    files = [f for f in distribution(name).files or () if not f.parts[0].endswith(("..", ".dist-info", ".data"))]
    packages = {".".join(f.parts[:-1]) for f in files if f.name == "__init__.py"}
    own = {p for p in packages if not any(p.startswith(q + ".") for q in packages)}
    own |= {f.parts[0][:-3] for f in files if len(f.parts) == 1 and f.name.endswith(".py")}
    own = {m for m in own if not m.split(".")[-1].startswith("_") and m.split(".")[0] not in skipped}
    if not own:
        sys.exit(f"{name}: no importable package found")
    modules |= own
for module in sorted(modules):
    importlib.import_module(module)
print(f"imported {len(modules)} packages of {len(sys.argv[1].split(','))} distributions")
"""


def check(environment: Environment, declared: Declared, pytest_args: list[str]) -> list[str]:
    """Runs the checks in the environment; returns the names of those that failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_"))}
    env["PATH"] = f"{environment.directory / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(environment.directory)
    failed = []
    steps = [
        ("imports", [str(environment.python), "-c", IMPORT_EVERY_DISTRIBUTION,
                     ",".join(declared.distributions), ",".join(sorted(NOT_IMPORTABLE))]),
        ("ruff", [str(environment.directory / "bin" / "ruff"), "check", "."]),
        ("pytest", [str(environment.python), "-m", "pytest", *SUITES, "-q", "-p", "no:cacheprovider", *pytest_args]),
    ]  # fmt: skip
    for name, command in steps:
        print(f"--- {environment.kind}: {name}", flush=True)
        status = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
        if status == 5 and name == "pytest":
            print(f"{environment.kind}: pytest collected no tests, which is a failure here", flush=True)
        if status != 0:
            failed.append(name)
    return failed


def prune(keep: set[Path]) -> None:
    """Removes environments of other bounds (older ones, other branches) once unused for a
    while or beyond the few most recently used of each kind, and the remains of interrupted
    builds; never one that another run holds."""
    root = cache_root()
    if not root.is_dir():
        return
    cutoff = time.time() - KEEP_UNUSED_DAYS * 86400
    last_used: dict[Path, float] = {}
    for directory in root.iterdir():
        if directory.is_dir() and directory not in keep:
            marker = directory / ".complete"
            last_used[directory] = marker.stat().st_mtime if marker.exists() else 0.0
    seen_per_kind: dict[str, int] = {}
    for directory in sorted(last_used, key=last_used.__getitem__, reverse=True):
        kind = directory.name.split("-", 1)[0]
        seen_per_kind[kind] = seen_per_kind.get(kind, 0) + 1
        if last_used[directory] >= cutoff and seen_per_kind[kind] <= KEEP_OTHERS_PER_KIND:
            continue
        lock_path = directory.with_name(directory.name + ".lock")
        with lock_path.open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being built or checked right now
            shutil.rmtree(directory, ignore_errors=True)
        lock_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["lowest", "newest"], help="check one environment")
    parser.add_argument("--rebuild", action="store_true", help="reinstall even when cached")
    parser.add_argument("--show-constraints", action="store_true", help="print the lowest constraints and exit")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)

    try:
        declared = read_declared()
        constraints = lowest_constraints(declared)
        if args.show_constraints:
            print("\n".join(constraints))
            return 0
        python = find_python(declared)
        version = python_version(python)
        digest = declared.digest(version)
    except BoundsError as error:
        print(f"bounds check FAILED: {error}", file=sys.stderr)
        return 1

    kinds = [args.only] if args.only else ["lowest", "newest"]
    environments = [
        Environment(kind, cache_root() / f"{kind}-py{version}-{digest}", constraints if kind == "lowest" else [])
        for kind in kinds
    ]
    prune({e.directory for e in environments})
    failures: list[str] = []
    for environment in environments:
        started = time.monotonic()
        print(f"\n=== {environment.kind} declared versions, Python {version}: {environment.directory}", flush=True)
        try:
            done = ensure(environment, declared, python, args.rebuild)
        except BoundsError as error:
            print(f"bounds check FAILED: could not build the {environment.kind} environment: {error}",
                  file=sys.stderr, flush=True)  # fmt: skip
            if environment.kind == "lowest":
                print("(each lower bound must name a released version: >=2.3.1, not >=2.3 when 2.3.0 was never"
                      " released)", file=sys.stderr, flush=True)  # fmt: skip
            failures.append(f"{environment.kind} (environment not built)")
            continue
        installed = installed_versions(environment)
        shown = ", ".join(f"{name} {installed.get(name, '-')}" for name in SHOWN)
        print(f"{environment.kind}: {done} in {time.monotonic() - started:.0f} s; {shown}", flush=True)
        failed = check(environment, declared, args.pytest_args)
        print(f"{environment.kind}: checks took {time.monotonic() - started:.0f} s in all", flush=True)
        failures.extend(f"{environment.kind} ({name})" for name in failed)

    if failures:
        print(f"\nbounds check FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    print(f"\nbounds check passed: {' and '.join(kinds)} declared versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
