"""The package's layers (docs/architecture.md), checked on every import, inside functions too.

A module imports only from its own layer or the layers below it, leaves import nothing from
the package, and no set of modules imports each other in a cycle. A new module must be given
a layer here before this passes: that is the point.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "otel_hcv"

# Bottom to top.
LAYERS: dict[str, set[str]] = {
    "leaves": {"conf", "attributes", "context", "routes", "lifecycle", "accounting", "receiver"},
    "state": {"state", "summary", "launcher"},
    "privacy": {"privacy", "sentry_events"},
    "signals": {
        "metrics", "tracking", "logging", "servers", "exporters", "middleware", "server", "sentry",
        "health", "health.checks", "health.registry", "health.runner", "health.gauges",
    },
    "composition": {"bootstrap"},
    "entry points": {"", "distro", "apps", "testing", "views", "urls", "health.views"},
}  # fmt: skip
LAYER_OF = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}
LAYER_NAMES = list(LAYERS)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def package_imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(["otel_hcv", *parts, *([base] if base else [])])
            # ``from otel_hcv.x import y``: the module y when it is one, else (a name) x.
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            candidates = [name for name in submodules if _short(name) in MODULES] or [base]
        else:
            continue
        for candidate in candidates:
            if candidate != "otel_hcv" and not candidate.startswith("otel_hcv."):
                continue
            name = _short(candidate)
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            found.add(name)
    return found - {module}


def _short(name: str) -> str:
    return name.removeprefix("otel_hcv").removeprefix(".")


GRAPH = {module: package_imports(module) for module in MODULES}


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER_OF)) == []
    assert sorted(set(LAYER_OF) - set(MODULES)) == [], "a layer names a module that no longer exists"


def test_imports_point_down_only():
    wrong = [
        f"otel_hcv.{module} ({LAYER_NAMES[LAYER_OF[module]]}) imports otel_hcv.{target} "
        f"({LAYER_NAMES[LAYER_OF[target]]})"
        for module, targets in GRAPH.items()
        for target in targets
        if LAYER_OF[target] > LAYER_OF[module]
    ]
    assert wrong == []


def test_leaves_import_nothing_from_the_package():
    assert {module: GRAPH[module] for module in LAYERS["leaves"] if GRAPH[module]} == {}


def test_no_import_cycle():
    # Within a layer imports may go sideways; they must still not come back around.
    visiting: set[str] = set()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append([*path[path.index(module) :], module])
            return
        visiting.add(module)
        for target in sorted(GRAPH[module]):
            visit(target, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert cycles == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    # The checker itself: an import inside a function counts like one at the top.
    assert "bootstrap" in package_imports("apps")


@pytest.mark.parametrize("leaf", ["otel_hcv.conf", "otel_hcv.lifecycle", "otel_hcv.state", "otel_hcv.privacy"])
def test_low_layers_load_neither_django_nor_the_sdk(leaf):
    code = textwrap.dedent(
        f"""
        import sys
        import {leaf}
        loaded = [name for name in ("django.conf", "opentelemetry.sdk", "opentelemetry.sdk.trace")
                  if name in sys.modules]
        print(",".join(loaded))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""
