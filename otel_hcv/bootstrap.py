"""The composition root: builds the providers and wires every signal module to them.

The only module that imports all the others (below it: the signal modules, the privacy
rules, the process state; above it: the entry points). Both entry paths end here: the
``opentelemetry-instrument`` configurator and :func:`configure` called from code. The heavy
lifting (reading ``OTEL_*`` variables, choosing exporters, samplers and id generators) is the
SDK's own configuration helpers (``opentelemetry.sdk._configuration``, what upstream's configurator
and distributions use); this module supplies defaults and the pieces the SDK has no
opinion on: span redaction, metric attribute allow-lists, bounded shutdown.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler as InstrumentationHandler
from opentelemetry.instrumentation.logging.handler import _overwrite_logging_config_fns
from opentelemetry.sdk._configuration import (
    _get_exporter_names,
    _get_id_generator,
    _get_sampler,
    _import_exporters,
    _import_id_generator,
    _import_sampler,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs import LoggingHandler as SdkHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_hcv import accounting, conf, launcher, lifecycle, privacy, sentry, state
from otel_hcv.attributes import INSTRUMENTATION_SCOPE
from otel_hcv.exporters import CountingLogExporter, RedactingSpanExporter, RedactingSpanProcessor
from otel_hcv.health import gauges
from otel_hcv.logging import OtlpLoggingHandler, install_drop_report, report_dropped_spans
from otel_hcv.metrics import allow_list_views
from otel_hcv.servers import adopt_access_logs
from otel_hcv.state import Providers, Telemetry

logger = logging.getLogger(__name__)

# Defaults this package gives standard variables; a value already in the environment wins.
OTEL_ENV_DEFAULTS: Mapping[str, str] = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    # HTTP/protobuf avoids loading gRPC into every worker; the collector serves both.
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
    # The stable HTTP semantic conventions (http.request.method, url.path, ...).
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
    # Exemplars cost a reservoir offer on every measurement (~10 µs each, 7 per request);
    # the collector's Prometheus exporter does not pass them on here.
    "OTEL_METRICS_EXEMPLAR_FILTER": "always_off",
    # Smaller export batches than upstream's 512: encoding a batch holds the interpreter
    # lock, and with 512 spans that stalls requests for tens of milliseconds (p99).
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "64",
    # opentelemetry-instrumentation-logging would add a second OTLP handler that exports
    # records unredacted; ours (otel_hcv.logging.OtlpLoggingHandler) replaces it.
    "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false",
}

_lock = threading.RLock()

# Under Django's development server metrics are exported every 5 s instead of the SDK's
# 60 s, so a developer sees them about as soon as spans and logs. Elsewhere the SDK's
# default stands (one export a minute per process is plenty for Prometheus).
DEVELOPMENT_METRIC_EXPORT_INTERVAL_MS = "5000"


def apply_otel_env_defaults(
    environ: MutableMapping[str, str] | None = None, argv: Sequence[str] | None = None
) -> None:
    environ = os.environ if environ is None else environ
    for name, value in OTEL_ENV_DEFAULTS.items():
        environ.setdefault(name, value)
    if lifecycle.is_development_server(argv):
        environ.setdefault("OTEL_METRIC_EXPORT_INTERVAL", DEVELOPMENT_METRIC_EXPORT_INTERVAL_MS)


def resource_attributes(settings: conf.Settings) -> dict[str, str]:
    """Our resource defaults, minus whatever ``OTEL_RESOURCE_ATTRIBUTES`` /
    ``OTEL_SERVICE_NAME`` already say (the SDK lets passed attributes win over the
    environment, so passing ours unconditionally would break their upstream meaning)."""
    from_env = OTELResourceDetector().detect().attributes
    defaults = {
        "service.name": settings.service_name,
        "service.version": settings.service_version or "unknown",
        "deployment.environment.name": settings.environment,
        # New per process: gunicorn workers and runserver's child each get their own.
        "service.instance.id": str(uuid.uuid4()),
    }
    return {key: value for key, value in defaults.items() if key not in from_env}


def configure(**overrides: Any) -> Telemetry | None:
    """Set up traces, metrics and logs for this process; harmless to call again.

    ``overrides`` take setting names (``service_name="..."``) and win over Django's
    ``OTEL_HCV`` and ``HCV_*`` variables. Returns None where nothing is exported: the
    runserver autoreloader's watcher process, or ``OTEL_SDK_DISABLED=true``.
    """
    with _lock:
        telemetry = state.active()
        if telemetry is not None:
            if telemetry.for_tests:
                telemetry.settings = conf.load(overrides)
                instrument_django(telemetry.settings)
            return telemetry
        if lifecycle.is_autoreload_watcher():
            return None
        settings = conf.load(overrides)
        privacy.check_pseudonym_key(settings)
        apply_otel_env_defaults()
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            launcher.report(
                "another setup already installed the global OpenTelemetry providers, so otel-hcv's are not used"
            )
            return None
        if lifecycle.is_prefork_master():
            # gunicorn --preload imports the app in the master, then forks the workers:
            # providers made here would be shared by every worker (one instance id, one
            # set of export threads). Each worker sets up its own right after the fork.
            instrument_django(settings)
            lifecycle.in_forked_children(lambda: configure(**overrides))
            return None
        providers = _build_providers(settings, Resource.create(resource_attributes(settings)))
        _warn_about_privacy_opt_outs(settings)
        telemetry = Telemetry(settings, providers=providers)
        state.activate(telemetry)
        _after_providers(telemetry)
        lifecycle.flush_on_sigterm(shutdown)
        logger.info("otel-hcv: %s", export_summary(settings))
        return telemetry


def export_summary(settings: conf.Settings, environ: Mapping[str, str] | None = None) -> str:
    """One line saying where telemetry goes and how often metrics leave."""
    environ = os.environ if environ is None else environ
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", OTEL_ENV_DEFAULTS["OTEL_EXPORTER_OTLP_ENDPOINT"])
    protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", OTEL_ENV_DEFAULTS["OTEL_EXPORTER_OTLP_PROTOCOL"])
    try:
        interval = float(environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000")) / 1000
    except ValueError:
        interval = 60.0
    return (
        f"service {settings.service_name!r} exports traces, metrics and logs over OTLP ({protocol}) "
        f"to {endpoint}; metrics every {interval:g} s"
    )


def install_for_tests(
    settings: conf.Settings,
    tracer_provider: Any,
    meter_provider: Any,
    logger_provider: Any,
) -> Telemetry:
    """Install providers built by :mod:`otel_hcv.testing` as if :func:`configure` had."""
    # The same HTTP conventions as production; exporter variables are not touched.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", OTEL_ENV_DEFAULTS["OTEL_SEMCONV_STABILITY_OPT_IN"])
    with _lock:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        set_logger_provider(logger_provider)
        telemetry = Telemetry(settings=settings, for_tests=True)
        state.activate(telemetry)
        _after_providers(telemetry)
        return telemetry


def _build_providers(settings: conf.Settings, resource: Resource) -> Providers:
    """The three global providers, with exporters, sampler and id generator chosen by
    the standard ``OTEL_*`` variables through the SDK's own configuration helpers.

    Built here rather than by the SDK's initialisers for three things they have no
    parameter for: spans pass through the redacting exporter on the export thread,
    metric attributes pass an allow-list view, and shutdown at exit is bounded in time
    (the SDK's own exit hooks wait for exporters that may be retrying a dead collector).
    """
    span_exporters, metric_exporters, log_exporters = _import_exporters(
        _get_exporter_names("traces"), _get_exporter_names("metrics"), _get_exporter_names("logs")
    )
    tracer_provider = TracerProvider(
        resource=resource,
        sampler=_import_sampler(_get_sampler()),
        id_generator=_import_id_generator(_get_id_generator()),
        shutdown_on_exit=False,
    )
    for name, exporter in span_exporters.items():
        tracer_provider.add_span_processor(_span_processor(settings, name, exporter))
    readers = [
        exporter_or_reader() if issubclass(exporter_or_reader, MetricReader)
        else PeriodicExportingMetricReader(exporter_or_reader())
        for exporter_or_reader in metric_exporters.values()
    ]  # fmt: skip
    meter_provider = MeterProvider(
        resource=resource, metric_readers=readers, views=allow_list_views(), shutdown_on_exit=False
    )
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    for exporter in log_exporters.values():
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(CountingLogExporter(exporter())))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    set_logger_provider(logger_provider)
    if lifecycle.once("bootstrap.shutdown_at_exit"):
        atexit.register(shutdown)
    return Providers(tracer_provider, meter_provider, logger_provider)


# The SDK's name of the OTLP/HTTP span exporter: the one transport fastotel's processor speaks.
OTLP_HTTP_EXPORTER = "otlp_proto_http"


def _span_processor(settings: conf.Settings, exporter_name: str, exporter: type) -> SpanProcessor:
    """The processor that sends spans to ``exporter``'s destination, through the privacy rules."""
    if settings.span_processor == "fastotel":
        native = _fastotel_processor_class(exporter_name)
        if native is not None:
            return RedactingSpanProcessor(
                native, state.current_settings, losses=_fastotel_losses, report_dropped=report_dropped_spans
            )
    return BatchSpanProcessor(RedactingSpanExporter(exporter(), state.current_settings))


def _fastotel_processor_class(exporter_name: str) -> Callable[[], SpanProcessor] | None:
    """fastotel's ``OTLPSpanProcessor`` (it reads the same ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*``
    variables as the SDK's), or None, said in a warning, where it cannot replace the SDK's."""
    if exporter_name != OTLP_HTTP_EXPORTER:
        logger.warning(
            "otel-hcv: SPAN_PROCESSOR='fastotel' sends OTLP over HTTP only and the span exporter is %r: "
            "the SDK's span processor is used",
            exporter_name,
        )
        return None
    try:
        from fastotel import OTLPSpanProcessor
    except ImportError:
        logger.warning(
            "otel-hcv: SPAN_PROCESSOR='fastotel' needs the optional extra (pip install 'otel-hcv[fastotel]'): "
            "the SDK's span processor is used"
        )
        return None
    return OTLPSpanProcessor


def _fastotel_losses(processor: Any) -> tuple[int, int]:
    """fastotel's counts of spans dropped (queue full) and failed (export gave up so far).

    fastotel 0.9 keeps them on its native half and has no public accessor yet (its README
    promises one), so they are read where they are; (0, 0) where they are not."""
    native = getattr(processor, "_native", None)
    try:
        return native.dropped_spans(), native.failed_spans()  # type: ignore[union-attr]
    except AttributeError:
        return 0, 0


def shutdown(timeout_seconds: float = lifecycle.SHUTDOWN_TIMEOUT_SECONDS) -> bool:
    """Flush and stop this process's providers, waiting at most ``timeout_seconds``.

    Runs at exit and on SIGTERM (see :func:`otel_hcv.lifecycle.shutdown_within`). Returns
    True when everything was flushed in time.
    """
    telemetry = state.active()
    if telemetry is None or telemetry.providers is None:
        return True
    providers = telemetry.providers
    return lifecycle.shutdown_within((providers.tracer, providers.logger, providers.meter), timeout_seconds)


def _warn_about_privacy_opt_outs(settings: conf.Settings) -> None:
    if not settings.pseudonymize_user_ids:
        logger.warning("otel-hcv: PSEUDONYMIZE_USER_IDS is off: raw user ids are exported on spans")
    if settings.ip_addresses == "keep":
        logger.warning("otel-hcv: IP_ADDRESSES is 'keep': full client IP addresses are written to logs")


def _after_providers(telemetry: Telemetry) -> None:
    """The parts every setup shares once global providers exist."""
    attach_logging_handler(telemetry)
    instrument_django(telemetry.settings)
    gauges.register_gauges(telemetry.settings, start_refresher=not telemetry.for_tests)
    _register_dropped_counter()
    if not telemetry.for_tests:  # a developer's exported SENTRY_DSN must not get test errors
        # After the tracer provider exists: Sentry's OTLP bridge links errors to its traces.
        sentry.setup(telemetry.settings)


def _register_dropped_counter() -> None:
    """``hcv.telemetry.dropped``: spans and log records lost (queue full, export failed).

    Counted where it happens (a queue-full warning, a failed export batch) and observed at
    collection, so it costs nothing per request; the SDK's own per-span self-metrics
    (OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED) would cost several measurements per span.
    """
    if not lifecycle.once("bootstrap.dropped_counter"):
        return
    metrics.get_meter(INSTRUMENTATION_SCOPE).create_observable_counter(
        "hcv.telemetry.dropped",
        callbacks=[accounting.dropped_observations],
        unit="{item}",
        description="Telemetry lost: the batch queue was full, the export failed after retries, or a privacy "
        "rule could not screen a value (which is then dropped, never exported raw).",
    )


def attach_logging_handler(telemetry: Telemetry | None = None) -> None:
    """Send log records at the configured level to the OTLP logger provider.

    Idempotent, and safe to call again after Django's ``dictConfig`` replaced the root
    logger's handlers (the app's ``ready()`` does).
    """
    telemetry = telemetry or state.active()
    if telemetry is None:
        return
    install_drop_report()
    root = logging.getLogger()
    if telemetry.logging_handler is None:
        telemetry.logging_handler = OtlpLoggingHandler(
            level=logging.getLevelName(telemetry.settings.otlp_log_level),
            logger_provider=get_logger_provider(),
            settings_source=state.current_settings,
        )
        # wsgi.py's django.setup() applies LOGGING again after the apps are ready;
        # upstream's wrapper keeps this handler on the root logger through dictConfig.
        _overwrite_logging_config_fns(telemetry.logging_handler)
    if telemetry.logging_handler not in root.handlers:
        root.addHandler(telemetry.logging_handler)
    if telemetry.settings.json_access_logs:
        adopt_access_logs(telemetry.logging_handler)
    _remove_unredacted_otlp_handlers(root, telemetry.logging_handler)


def _remove_unredacted_otlp_handlers(root: logging.Logger, ours: logging.Handler) -> None:
    """Take upstream's OTLP logging handlers off the root logger: whatever added them (the SDK's
    ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED``, the logging instrumentation), they
    export records as they are, beside ours, which exports what the privacy rules allow."""
    for handler in list(root.handlers):
        if handler is not ours and isinstance(handler, InstrumentationHandler | SdkHandler):
            root.removeHandler(handler)
            logger.warning(
                "otel-hcv: removed a second OpenTelemetry logging handler (%s) from the root logger: it "
                "would export log records unredacted; otel-hcv's handler exports them",
                type(handler).__module__,
            )


def instrument_django(settings: conf.Settings) -> None:
    """Instrument Django once, with this package's URL exclusions.

    Under ``opentelemetry-instrument`` the distro defers this to the app's ``ready()``
    when ``DJANGO_SETTINGS_MODULE`` is not exported yet: upstream would otherwise call
    ``settings.configure()`` with empty settings and break ``manage.py``.
    """
    try:
        from django.conf import settings as django_settings
        from opentelemetry.instrumentation.django import DjangoInstrumentor
    except ImportError:
        return
    if not (django_settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
        return
    instrumentor = DjangoInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        kwargs: dict[str, Any] = {}
        if "OTEL_PYTHON_DJANGO_EXCLUDED_URLS" not in os.environ:
            kwargs["excluded_urls"] = ",".join(settings.excluded_urls)
        instrumentor.instrument(**kwargs)
    upstream = DjangoInstrumentor._opentelemetry_middleware
    lean = settings.server_middleware == "otel_hcv"
    ours, theirs = (SERVER_MIDDLEWARE, upstream) if lean else (upstream, SERVER_MIDDLEWARE)
    entries = [entry for entry in getattr(django_settings, "MIDDLEWARE", None) or [] if entry not in UPSTREAM_HELPERS]
    # One server middleware, in the place the instrumentation gave it: the lean one uses the
    # instruments upstream's instrumentor set up.
    if theirs in entries:
        if ours in entries:
            entries.remove(theirs)
        else:
            entries[entries.index(theirs)] = ours
    django_settings.MIDDLEWARE = entries
    if not lean:
        _insert_middleware(django_settings, upstream, ABSOLUTE_URI_CACHE, after=False)
        _insert_middleware(django_settings, upstream, ROUTE_TEMPLATES, after=True)


def uninstrument_django() -> None:
    """Undo :func:`instrument_django`: upstream's instrumentation off and the middleware
    entries either of them added taken out of ``MIDDLEWARE`` again."""
    try:
        from django.conf import settings as django_settings
        from opentelemetry.instrumentation.django import DjangoInstrumentor
    except ImportError:
        return
    instrumentor = DjangoInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    if django_settings.configured:
        entries = list(getattr(django_settings, "MIDDLEWARE", None) or [])
        kept = [entry for entry in entries if entry not in INSERTED_MIDDLEWARE]
        if kept != entries:
            django_settings.MIDDLEWARE = kept


SERVER_MIDDLEWARE = "otel_hcv.server.ServerTelemetryMiddleware"
# With upstream's middleware (SERVER_MIDDLEWARE="upstream"): its excluded-URL test cached, its
# routes made readable.
ABSOLUTE_URI_CACHE = "otel_hcv.middleware.AbsoluteUriCacheMiddleware"
ROUTE_TEMPLATES = "otel_hcv.middleware.RouteTemplateMiddleware"
# Every middleware otel-hcv may have put into MIDDLEWARE.
UPSTREAM_HELPERS = (ABSOLUTE_URI_CACHE, ROUTE_TEMPLATES)
INSERTED_MIDDLEWARE = (SERVER_MIDDLEWARE, *UPSTREAM_HELPERS)


def _insert_middleware(django_settings: Any, anchor: str, middleware: str, *, after: bool) -> None:
    """Put ``middleware`` right before or after ``anchor`` in ``MIDDLEWARE`` (once)."""
    entries = list(getattr(django_settings, "MIDDLEWARE", None) or [])
    if anchor not in entries or middleware in entries:
        return
    entries.insert(entries.index(anchor) + (1 if after else 0), middleware)
    django_settings.MIDDLEWARE = entries
