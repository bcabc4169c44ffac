#!/usr/bin/env python3
"""Telemetry overhead of the example service, measured side by side (issue 8).

Runs ``POST /api/diagnose/`` of the example service under gunicorn (one sync worker, pinned to one
core with taskset) and wrk (pinned to the other core), in two shapes:

* ``bare``: an anonymous request with a valid body: parsing, validation, model prediction;
* ``realistic``: a DRF-token-authenticated user: token lookup, the user's previous
  DiagnosisRecord read, the prediction, a new record stored (PostgreSQL of the native stack).

and in several variants (``--list-variants``), interleaved over rounds: every round starts a fresh
worker per variant in a rotated order, warms it up, then measures it. Afterwards a soak phase
drives chosen variants to ``--soak-requests`` requests each and samples the worker's resident
memory. The result is written between markers into ``docs/benchmarks.md`` (``--output``), with
the command line and the machine; raw results go to ``--workdir`` as JSON.

Needs the native stack (``bash scripts/stack.sh start``): the collector on 127.0.0.1:4318 (and its
own metrics on :8888, span metrics on :8889) and PostgreSQL. The benchmark uses its own database
(``--database``, created and migrated if missing) and a closed loopback port for the collector-down
variant; it never stops a stack component. Run it with the project's virtualenv::

    .venv/bin/python bench/overhead.py            # the full run (about 25 minutes)
    .venv/bin/python bench/overhead.py --quick    # a smoke run (about 4 minutes)

The code is the package bench/harness/ (variants, load, workers, rounds, report; its docstring
maps it), which bench/profile_overhead.py and bench/instructions.py share.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
