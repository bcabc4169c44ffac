"""The Sentry bridge: errors land in Sentry linked to the OpenTelemetry trace.

With a DSN (``OTEL_HCV['SENTRY_DSN']`` / ``HCV_SENTRY_DSN``, else sentry-sdk's own
``SENTRY_DSN``), :func:`setup` initialises sentry-sdk once the global tracer provider exists,
with sentry-sdk's OTLP integration (``sentry_sdk.integrations.otlp.OTLPIntegration``):

- Error events take their trace and span id from the *current OpenTelemetry span*: the
  integration registers a callback that sentry-sdk's scope prefers over its own propagation
  context, as long as Sentry's own performance tracing is off. So ``traces_sample_rate`` and
  ``traces_sampler`` stay None: with either set, Sentry would start transactions of its own,
  and events would carry Sentry's trace id instead of the one Jaeger shows.
- The integration would *replace* the global propagator with Sentry's, which reads and
  writes only ``sentry-trace``/``baggage``; W3C ``traceparent`` would stop working. We
  install Sentry's propagator ourselves, composed with the propagators already configured
  (``OTEL_PROPAGATORS``, by default tracecontext and baggage).
- Spans go to Sentry's OTLP endpoint only with ``SENTRY_SEND_SPANS`` (the integration would
  add that exporter by default, and unredacted: we add it ourselves, behind the same span
  redaction as every other exporter).

Without a DSN nothing here imports sentry-sdk. Setup failures are logged, never raised,
except a malformed DSN, which is a configuration error like any other wrong setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from otel_hcv import conf, lifecycle, sentry_events
from otel_hcv.exporters import RedactingSpanExporter

logger = logging.getLogger(__name__)

SETTING_DSN = conf.SENTRY_DSN_SETTING
ENV_DSN = conf.SENTRY_DSN_ENV
ENV_ENVIRONMENT = "SENTRY_ENVIRONMENT"
ENV_RELEASE = "SENTRY_RELEASE"



@dataclass(frozen=True)
class SentryOptions:
    """What :func:`setup` passes to sentry-sdk, resolved from settings and environment."""

    dsn: str
    dsn_origin: str  # the setting or variable the DSN came from, for error messages
    environment: str
    release: str | None  # None lets sentry-sdk detect one (SENTRY_RELEASE, git, ...)
    send_spans: bool


def resolve(settings: conf.Settings, environ: Mapping[str, str] | None = None) -> SentryOptions | None:
    """The Sentry options in force, or None without a DSN.

    Each value comes from this package's setting first, then sentry-sdk's standard variable,
    then a default shared with the OpenTelemetry resource (``ENVIRONMENT``, ``SERVICE_VERSION``).
    """
    environ = os.environ if environ is None else environ
    if settings.sentry_dsn.strip():
        dsn, origin = settings.sentry_dsn.strip(), SETTING_DSN
    else:
        dsn, origin = environ.get(ENV_DSN, "").strip(), ENV_DSN
    if not dsn:
        return None
    environment = (
        settings.sentry_environment.strip() or environ.get(ENV_ENVIRONMENT, "").strip() or settings.environment
    )
    release = settings.sentry_release.strip() or environ.get(ENV_RELEASE, "").strip() or settings.service_version
    return SentryOptions(
        dsn=dsn,
        dsn_origin=origin,
        environment=environment,
        release=release or None,
        send_spans=settings.sentry_send_spans,
    )


def setup(settings: conf.Settings) -> None:
    """Initialise sentry-sdk when a DSN is configured; once per process, never twice."""
    options = resolve(settings)
    if options is None:
        return
    conf.validate_dsn(options.dsn, options.dsn_origin)
    # Marked done before trying: a setup that failed once is not retried on every configure().
    if not lifecycle.once("sentry.setup"):
        return
    try:
        _init_sentry_sdk(options, settings)
    except ImportError as exc:
        logger.warning(
            "otel-hcv: a Sentry DSN is set (%s) but sentry-sdk with its OTLP integration cannot be imported "
            "(%s); install otel-hcv[sentry]",
            options.dsn_origin,
            exc,
        )
    except Exception:
        logger.warning("otel-hcv: Sentry could not be set up; the service runs without it", exc_info=True)


def _init_sentry_sdk(options: SentryOptions, settings: conf.Settings) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.otlp import OTLPIntegration, SentryOTLPPropagator

    if sentry_sdk.get_client().is_active():
        logger.warning(
            "otel-hcv: sentry_sdk.init() was already called in this process; that setup is kept, so "
            "otel-hcv's trace linking and privacy rules apply only if it uses them too"
        )
        return
    sentry_sdk.init(
        dsn=options.dsn,
        environment=options.environment,
        release=options.release,
        integrations=[
            OTLPIntegration(
                # Added below when SEND_SPANS is on, behind the span redaction.
                setup_otlp_traces_exporter=False,
                # Installed below, composed with W3C trace context and baggage.
                setup_propagator=False,
                # The Django integration reports unhandled errors already; spans' recorded
                # exceptions would only be deduplicated against those.
                capture_exceptions=False,
            ),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        # No Sentry performance tracing: OpenTelemetry traces, Sentry links errors to them.
        traces_sample_rate=None,
        traces_sampler=None,
        before_send=make_before_send(settings),
        before_breadcrumb=make_before_breadcrumb(settings),
        transport=screening_transport_class(),
        # Frame locals of a failed diagnosis are the lab values; bodies are the lab values.
        include_local_variables=False,
        max_request_body_size="never",
        **_personal_data_options(),
    )
    install_propagator(SentryOTLPPropagator())
    if options.send_spans:
        add_sentry_span_exporter(options.dsn, settings)
    logger.info(
        "otel-hcv: Sentry error reporting on (environment %s, release %s, spans to Sentry: %s)",
        options.environment,
        options.release or "detected by sentry-sdk",
        "yes" if options.send_spans else "no",
    )


def _personal_data_options() -> dict[str, Any]:
    """No personal data by default, in the vocabulary the installed sentry-sdk speaks.

    Recent 2.x releases replace ``send_default_pii`` (deprecated, with a warning) by
    ``data_collection``; there every category that could carry a lab value, a credential or
    a user identity is turned off. Older releases get ``send_default_pii=False``.
    """
    from sentry_sdk.consts import DEFAULT_OPTIONS

    if "data_collection" not in DEFAULT_OPTIONS:
        return {"send_default_pii": False}
    return {
        "data_collection": {
            "user_info": False,
            "cookies": {"mode": "off"},
            # Header names and non-sensitive values help debugging; sentry-sdk's deny-list
            # filters credentials, these terms add client addresses.
            "http_headers": {"request": {"mode": "denylist", "terms": ["forwarded", "-ip", "remote-", "via"]}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "graphql": {"document": False, "variables": False},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        }
    }


def install_propagator(sentry_propagator: Any) -> None:
    """Add Sentry's propagator to the configured global one instead of replacing it.

    Sentry's comes first, so that on extraction a W3C ``traceparent`` wins over a
    ``sentry-trace`` header, and on injection the W3C ``baggage`` (all entries) overwrites
    Sentry's (only its own entries).
    """
    from opentelemetry import propagate
    from opentelemetry.propagators.composite import CompositePropagator

    configured = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([sentry_propagator, configured]))


def add_sentry_span_exporter(dsn: str, settings: conf.Settings) -> None:
    """Export spans to the project's OTLP endpoint as well, as
    ``OTLPIntegration(setup_otlp_traces_exporter=True)`` would (same URL and auth header,
    built with sentry-sdk's helpers), but through this package's span redaction, which the
    integration's own exporter would bypass."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from sentry_sdk.consts import VERSION, EndpointType
    from sentry_sdk.utils import Dsn

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # The integration would install a provider of its own; ours must stay the only one.
        logger.warning(
            "otel-hcv: SENTRY_SEND_SPANS is on, but no SDK tracer provider is installed: no spans for Sentry"
        )
        return
    auth = Dsn(dsn).to_auth(f"sentry.python/{VERSION}")
    exporter = OTLPSpanExporter(
        endpoint=auth.get_api_url(EndpointType.OTLP_TRACES), headers={"X-Sentry-Auth": auth.to_header()}
    )
    provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter, lambda: settings)))


def make_before_send(settings: conf.Settings) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]:
    """sentry-sdk's ``before_send``: :func:`otel_hcv.sentry_events.scrub_event`, with the log
    record the event came from when there is one (its arguments are screened, not its copy).

    Returns None (sentry-sdk drops the event) when the event cannot be screened.
    """

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        if is_asgi_lifespan_rejection(hint):
            return None
        return sentry_events.scrub_event(event, settings, hint)

    return before_send


_LIFESPAN_REJECTION = "Django can only handle ASGI/HTTP connections, not lifespan"


def is_asgi_lifespan_rejection(hint: Mapping[str, Any]) -> bool:
    """Django's ASGI handler refuses the ``lifespan`` protocol that uvicorn tries at start-up
    (https://code.djangoproject.com/ticket/31508); uvicorn carries on without it, but
    sentry-sdk's ASGI middleware would report one error per worker start."""
    exc_info = hint.get("exc_info") if isinstance(hint, Mapping) else None
    error = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
    return isinstance(error, ValueError) and str(error).startswith(_LIFESPAN_REJECTION)


def make_before_breadcrumb(
    settings: conf.Settings,
) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]:
    """sentry-sdk's ``before_breadcrumb``: breadcrumbs are scrubbed when recorded, so that no
    other path (a future event type, a debugging dump of the scope) sees them raw."""

    def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        return sentry_events.scrub_breadcrumb(crumb, settings, hint)

    return before_breadcrumb


def screening_transport_class() -> type:
    """sentry-sdk's HTTP transport, with every envelope's ``trace`` header (the dynamic sampling
    context, which ``before_send`` never sees) cut down to its sampling keys before sending."""
    from sentry_sdk.transport import HttpTransport

    class ScreeningHttpTransport(HttpTransport):
        def capture_envelope(self, envelope: Any) -> None:
            headers = getattr(envelope, "headers", None)
            if isinstance(headers, dict) and isinstance(headers.get("trace"), Mapping):
                headers["trace"] = sentry_events.sampling_context(headers["trace"])
            super().capture_envelope(envelope)

    return ScreeningHttpTransport
