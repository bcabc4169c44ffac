"""What a benchmark run leaves behind: progress lines on stderr, its section of docs/benchmarks.md,
and the lines saying which command and which code produced it."""

from __future__ import annotations

import datetime
import hashlib
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.service import REPO

DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
RUNS = Path("/tmp/otel-hcv-bench")  # default parent of each run's working directory


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


def start_run(workdir: Path | None, prefix: str = "") -> tuple[str, Path]:
    """A new run's id (month, day and time) and its working directory, created."""
    run_id = datetime.datetime.now().strftime("%m%d%H%M%S")
    path = workdir or RUNS / f"{prefix}{run_id}"
    path.mkdir(parents=True, exist_ok=True)
    return run_id, path


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran ``script``, relative to the repository, as a reader would type it."""
    arguments = list(argv) if argv is not None else sys.argv[1:]
    return shlex.join([os.path.relpath(sys.executable, REPO), script, *arguments])


def code_state() -> str:
    """HEAD, whether the tree has uncommitted changes, and a digest of the code under test
    (otel_hcv/, example/, bench/): the tree can change while a long run is going on."""
    digest = hashlib.sha256()
    for folder in ("otel_hcv", "example", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    changes = " with uncommitted changes" if dirty.strip() else ""
    return f"{commit.strip()}{changes}, code digest {digest.hexdigest()[:12]}"


def same_code(state_at_start: str, state_at_end: str) -> bool:
    """Whether two ``code_state()`` lines have the same code digest (their last word)."""
    return state_at_start.rsplit(" ", 1)[-1] == state_at_end.rsplit(" ", 1)[-1]


def markers(section: str, script: str = "bench/overhead.py") -> tuple[str, str]:
    """The comments that delimit a run's section in the Markdown output (``--section``)."""
    name = script if section == "main" else f"{script} {section}"
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def write_section(
    path: Path, section: str, name: str = "main", script: str = "bench/overhead.py", title: str = "Overhead"
) -> None:
    """Replace the section between the script's markers in ``path`` (or append it)."""
    begin, end = markers(name, script)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section.rstrip("\n") + tail
    else:
        heading = f"{title} ({script})" if name == "main" else f"{title}: {name} ({script})"
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + section
    path.write_text(text)


def publish(
    section: str, output: Path, no_write: bool, *, name: str = "main", script: str = "bench/overhead.py",
    title: str = "Overhead",
) -> None:  # fmt: skip
    """Print the section (``--no-write``) or write it into ``output`` between the script's markers."""
    if no_write:
        print(section)
    else:
        write_section(output, section, name, script, title)
        log(f"wrote {output}")
