"""The benchmark harness behind bench/overhead.py, bench/profile_overhead.py and bench/instructions.py.

One module per job, lower ones first (a module imports only those above it in this list):

* ``variants``: the variants compared (environment, settings module, launcher) and where their
  telemetry goes;
* ``results``: what a measured run yields (``Cell``, ``Soak``) and the statistics over it: medians,
  per-round ratios against the baseline, memory growth;
* ``output``: progress lines, the Markdown section each script replaces in docs/benchmarks.md,
  and the lines saying which command and which code produced it;
* ``workload``: the request (``SHAPES``, ``BODY``) and the load (wrk);
* ``loadgen``: a fixed-rate (open-loop) load: vegeta, built once and cached, and its report;
* ``stack``: the native stack as the benchmark sees it: its addresses, the collector's metrics,
  the benchmark's own database, a closed port for the collector-down variants;
* ``server``: one gunicorn worker of a variant, pinned to a core;
* ``running``: a whole run: preparation, interleaved rounds, waiting for a quiet core, soaks;
* ``reporting``: the overhead section's tables and targets (the fixed-rate table too);
* ``options``: command-line pieces the three scripts share;
* ``cli``: bench/overhead.py's command line and main loop.
"""
