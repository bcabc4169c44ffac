"""What the benchmarks compare: variants (how the example service is launched and configured) in
request shapes (``bare``: an anonymous request with a valid body; ``realistic``: a DRF-token user,
whose previous record is read and a new one stored; see ``workload``), and in which order.

A variant's environment may name where its telemetry goes by placeholder: ``{collector}`` is the
collector's OTLP/HTTP endpoint, ``{collector_grpc}`` its gRPC endpoint and ``{closed}`` a loopback
port that refuses connections (``Endpoints``); ``Variant.environment`` fills them in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SHAPES = ("bare", "realistic")

# The example's own settings; a variant that names none runs with these.
EXAMPLE_SETTINGS = "hcv_service.settings"


@dataclass(frozen=True)
class Endpoints:
    """Where a run's telemetry can go: the values of a variant's placeholders."""

    collector: str  # OTLP/HTTP
    collector_grpc: str  # OTLP/gRPC
    closed: str  # refuses connections: the collector-down variants

    def placeholders(self) -> dict[str, str]:
        return {"{collector}": self.collector, "{collector_grpc}": self.collector_grpc, "{closed}": self.closed}


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    instrument: bool  # run under opentelemetry-instrument
    env: Mapping[str, str]
    settings_module: str | None = None  # exported DJANGO_SETTINGS_MODULE, if any
    exports: bool = True  # telemetry is meant to reach the collector
    extra: bool = False  # an attribution row, not one of the four

    def environment(self, endpoints: Endpoints) -> dict[str, str]:
        """The variant's own variables, a value that is a placeholder replaced by its endpoint."""
        places = endpoints.placeholders()
        return {key: places.get(value, value) for key, value in self.env.items()}

    @property
    def needs_upstream_distro(self) -> bool:
        return self.env.get("OTEL_PYTHON_DISTRO") == UPSTREAM_DISTRO

    def python(self) -> Path:
        """The interpreter the variant runs on. The project's environment leaves upstream's
        opentelemetry-distro out (it competes with otel-hcv's); without it, plain
        ``opentelemetry-instrument`` configures no SDK at all and measures nothing. So the
        upstream variants run in a cached environment that adds it (tests/support/envs.py)."""
        if self.needs_upstream_distro:
            from tests.support.envs import upstream_distro_env

            return upstream_distro_env() / "bin" / "python"
        return Path(sys.executable)

    def server_command(self, module: str, *arguments: str) -> list[str]:
        """``python -m module arguments`` on the variant's interpreter, under
        ``opentelemetry-instrument`` when the variant is instrumented."""
        python = self.python()
        launcher = [str(python.parent / "opentelemetry-instrument")] if self.instrument else []
        return [*launcher, str(python), "-m", module, *arguments]


_HCV = {"OTEL_PYTHON_DISTRO": "otel_hcv", "OTEL_EXPORTER_OTLP_ENDPOINT": "{collector}"}
_HCV_DOWN = {**_HCV, "OTEL_EXPORTER_OTLP_ENDPOINT": "{closed}"}
_UPSTREAM = {
    "OTEL_PYTHON_DISTRO": "distro",  # UPSTREAM_DISTRO
    "OTEL_PYTHON_CONFIGURATOR": "configurator",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "{collector}",
}
_NO_SDK = {"OTEL_SDK_DISABLED": "true"}


def _export_batches(size: int) -> dict[str, str]:
    """Spans and log records exported in batches of ``size`` (otel-hcv's default is 64)."""
    return {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(size), "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": str(size)}

UPSTREAM_DISTRO = "distro"  # opentelemetry-distro's entry point name

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "baseline",
            "uninstrumented: otel_hcv app, middleware and JSON logging removed from the settings "
            "(bench/notelemetry_settings.py), OTEL_SDK_DISABLED=true, plain gunicorn",
            instrument=False,
            env=_NO_SDK,
            settings_module="notelemetry_settings",
            exports=False,
        ),
        Variant(
            "sdk-disabled",
            "the example's settings unchanged, OTEL_SDK_DISABLED=true, plain gunicorn: otel_hcv's app sets "
            "nothing up, but its RequestContextMiddleware, the view's decorators (against OpenTelemetry's no-op "
            "providers) and the JSON console line of the view's INFO log still run",
            instrument=False,
            env=_NO_SDK,
            exports=False,
        ),
        Variant(
            "upstream",
            "plain opentelemetry-instrument: OTEL_PYTHON_DISTRO=distro, OTEL_PYTHON_CONFIGURATOR=configurator, "
            "OTLP over http/protobuf to the collector (upstream's own default would be gRPC), settings as in "
            "baseline (no otel_hcv app, middleware or JSON logging; the view's track_api_metrics and "
            "trace_diagnosis still add their two spans, two measurements and two counts through the upstream SDK)",
            instrument=True,
            env=_UPSTREAM,
            # Upstream's Django instrumentor reads the settings when the launcher starts.
            settings_module="notelemetry_settings",
        ),
        Variant(
            "upstream-example",
            "as upstream, with the example's settings unchanged: otel_hcv's app sets nothing up (no otel_hcv "
            "distro), its RequestContextMiddleware and JSON console logging run, and upstream's logging "
            "instrumentation exports the view's INFO records over OTLP",
            instrument=True,
            env=_UPSTREAM,
            settings_module=EXAMPLE_SETTINGS,
            extra=True,
        ),
        Variant(
            "upstream-grpc",
            "as upstream, with upstream's default protocol: OTLP/gRPC to the collector's :4317",
            instrument=True,
            env={**_UPSTREAM, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "{collector_grpc}"},
            settings_module="notelemetry_settings",
            extra=True,
        ),
        Variant(
            "hcv",
            "otel-hcv, everything on: opentelemetry-instrument with OTEL_PYTHON_DISTRO=otel_hcv; traces "
            "(100% sampled), metrics, OTLP logs over http/protobuf to the collector, health gauges, JSON logs",
            instrument=True,
            env=_HCV,
        ),
        Variant(
            "hcv-upstream-server",
            "as hcv with SERVER_MIDDLEWARE=upstream: opentelemetry-instrumentation-django's middleware makes the "
            "server span and HTTP metrics instead of otel-hcv's lean one",
            instrument=True,
            env={**_HCV, "HCV_SERVER_MIDDLEWARE": "upstream"},
            extra=True,
        ),
        Variant(
            "hcv-fastotel",
            "as hcv with SPAN_PROCESSOR=fastotel (the optional extra otel-hcv[fastotel]): spans are screened in "
            "on_end and handed to fastotel's native processor, which batches, encodes and sends them off the "
            "interpreter lock",
            instrument=True,
            env={**_HCV, "HCV_SPAN_PROCESSOR": "fastotel"},
            extra=True,
        ),
        Variant(
            "hcv-fastotel-down",
            "as hcv-fastotel, collector down: OTEL_EXPORTER_OTLP_ENDPOINT is a closed loopback port",
            instrument=True,
            env={**_HCV_DOWN, "HCV_SPAN_PROCESSOR": "fastotel"},
            exports=False,
            extra=True,
        ),
        Variant(
            "hcv-down",
            "as hcv, collector down: OTEL_EXPORTER_OTLP_ENDPOINT is a closed loopback port",
            instrument=True,
            env=_HCV_DOWN,
            exports=False,
        ),
        Variant(
            "hcv-down-no-traces",
            "as hcv-down with OTEL_TRACES_EXPORTER=none: which signal's failing export costs what",
            instrument=True,
            env={**_HCV_DOWN, "OTEL_TRACES_EXPORTER": "none"},
            exports=False,
            extra=True,
        ),
        Variant(
            "hcv-down-no-logs",
            "as hcv-down with OTEL_LOGS_EXPORTER=none",
            instrument=True,
            env={**_HCV_DOWN, "OTEL_LOGS_EXPORTER": "none"},
            exports=False,
            extra=True,
        ),
        Variant(
            "hcv-no-traces",
            "as hcv with OTEL_TRACES_EXPORTER=none (spans still created and sampled, not exported)",
            instrument=True,
            env={**_HCV, "OTEL_TRACES_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-no-logs",
            "as hcv with OTEL_LOGS_EXPORTER=none (JSON console lines stay)",
            instrument=True,
            env={**_HCV, "OTEL_LOGS_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-no-metrics",
            "as hcv with OTEL_METRICS_EXPORTER=none (instruments still record; no metric reader is left)",
            instrument=True,
            env={**_HCV, "OTEL_METRICS_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-no-export",
            "as hcv with all three OTEL_*_EXPORTER=none (telemetry recorded in-process only)",
            instrument=True,
            env={**_HCV, "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
            extra=True,
        ),
        Variant(
            "hcv-batch-512",
            "as hcv with upstream's export batches of 512 spans and log records (otel-hcv's default is 64): "
            "fewer, longer exports",
            instrument=True,
            env={**_HCV, **_export_batches(512)},
            extra=True,
        ),
        Variant(
            "hcv-batch-16",
            "as hcv with export batches of 16 spans and log records (otel-hcv's default is 64): queued telemetry "
            "is alive for fewer requests, so less of it is promoted to the oldest garbage-collector generation",
            instrument=True,
            env={**_HCV, **_export_batches(16)},
            extra=True,
        ),
        Variant(
            "hcv-gc-freeze",
            "as hcv, and the worker calls gc.freeze() after loading the app and after its first request "
            "(bench/gunicorn_conf.py, BENCH_GC_FREEZE=1): full collections skip the start-up objects",
            instrument=True,
            env={**_HCV, "BENCH_GC_FREEZE": "1"},
            extra=True,
        ),
        Variant(
            "baseline-gc-freeze",
            "as baseline, with gc.freeze() as in hcv-gc-freeze",
            instrument=False,
            env={**_NO_SDK, "BENCH_GC_FREEZE": "1"},
            settings_module="notelemetry_settings",
            exports=False,
            extra=True,
        ),
        Variant(
            "hcv-sampled-10",
            "as hcv with 10% trace sampling (parentbased_traceidratio 0.1); does not count toward the targets",
            instrument=True,
            env={**_HCV, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
            extra=True,
        ),
    )
}

FULL_VARIANTS = {
    "bare": ["baseline", "sdk-disabled", "upstream", "upstream-example", "hcv", "hcv-down", "hcv-no-traces",
             "hcv-no-logs", "hcv-no-metrics"],
    "realistic": ["baseline", "upstream", "hcv", "hcv-down"],
}  # fmt: skip
QUICK_VARIANTS = {
    "bare": ["baseline", "sdk-disabled", "upstream", "hcv", "hcv-down"],
    "realistic": ["baseline", "upstream", "hcv"],
}


def unknown_variants(names: Iterable[str]) -> list[str]:
    """The names in ``names`` that are no variant, in order."""
    return [name for name in names if name not in VARIANTS]


def listing() -> str:
    """One line per variant, name and description: what ``--list-variants`` prints."""
    return "\n".join(f"{name:16} {variant.label}" for name, variant in VARIANTS.items())


def rotated(names: Sequence[T], round_no: int) -> list[T]:
    """The order of a round (counted from 1): ``names`` rotated left by one place per round, so that
    no variant always runs first, or always right after the same neighbour."""
    shift = (round_no - 1) % len(names)
    return [*names[shift:], *names[:shift]]
