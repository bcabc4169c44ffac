"""The server span and HTTP server metrics of a Django request, in one lean middleware.

It emits what opentelemetry-instrumentation-django's middleware emits under the stable HTTP
conventions (``OTEL_SEMCONV_STABILITY_OPT_IN=http``): the same span name, kind, attributes,
status, exception event and context propagation, and the same ``http.server.request.duration``
and ``http.server.active_requests`` streams, through the very tracer and instruments
``DjangoInstrumentor`` created (so scope, version and schema URL are upstream's). The work is
arranged differently, which is where the time goes:

- the excluded-URL test runs once per request instead of three times;
- the span is named from the resolver match Django makes anyway (``process_view``), so the URL
  is not resolved a second time at the start of every request; only a request answered before
  any view was chosen (and not a 404) is resolved, at the end, as upstream would have;
- the route is the readable template (:mod:`otel_hcv.routes`) straight away;
- header-capture settings are read once, not from the environment on every request;
- it is async-capable, so under ASGI Django does not run it (and everything after it) in one
  thread shared by all requests.

Where the instrumentation is set up in a way this middleware does not reproduce (the old or
duplicated HTTP conventions, request or response hooks), it hands every request to upstream's
middleware instead; ``SERVER_MIDDLEWARE="upstream"`` chooses upstream's always.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from timeit import default_timer
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from opentelemetry.context import detach
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.asgi import asgi_getter, set_status_code
from opentelemetry.instrumentation.asgi import collect_request_attributes as asgi_request_attributes
from opentelemetry.instrumentation.django.middleware.otel_middleware import (
    _DjangoMiddleware,
    _parse_active_request_count_attrs,
    _parse_duration_attrs,
)
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import _start_internal_or_server_span, extract_attributes_from_object
from opentelemetry.instrumentation.wsgi import add_response_attributes, wsgi_getter
from opentelemetry.instrumentation.wsgi import collect_request_attributes as wsgi_request_attributes
from opentelemetry.trace import Span, SpanKind, use_span
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    get_custom_headers,
    sanitize_method,
)

from otel_hcv import routes

logger = logging.getLogger(__name__)

HTTP_ROUTE = "http.route"
# Upstream's request.META key for the server span: kept, so code that looks there finds it.
SPAN_KEY = _DjangoMiddleware._environ_span_key
_START_TIME_KEY = "opentelemetry-instrumentor-django.starttime_key"


def lean_path_applies() -> bool:
    """The instrumentation is set up the way this middleware reproduces."""
    return (
        _DjangoMiddleware._tracer is not None
        and _DjangoMiddleware._sem_conv_opt_in_mode is _StabilityMode.HTTP
        and _DjangoMiddleware._duration_histogram_new is not None
        and _DjangoMiddleware._otel_request_hook is None
        and _DjangoMiddleware._otel_response_hook is None
    )


class _Request:
    """What one request's telemetry carries from its start to its end."""

    __slots__ = (
        "activation",
        "active_attributes",
        "duration_attributes",
        "exception",
        "method",
        "routed",
        "span",
        "start",
        "token",
    )  # fmt: skip

    def __init__(self, method: str) -> None:
        self.method = method  # as the span name starts: the sanitised method, or "HTTP"
        self.exception: BaseException | None = None
        self.routed = False


def name_by_route(span: Span, method: str, route: str, duration_attributes: dict[str, Any] | None) -> None:
    """Name the server span ``"{method} {route}"`` and give it and the request's duration
    measurement ``http.route`` (this middleware's and, in upstream mode, upstream's)."""
    if span.is_recording():
        span.set_attribute(HTTP_ROUTE, route)
        # "HTTP plain/" for an unknown method, as the conventions name it.
        span.update_name(f"{method} {route}")
    if duration_attributes is not None:
        duration_attributes[HTTP_ROUTE] = route


class ServerTelemetryMiddleware:
    """Django's server span and HTTP server metrics (see the module's description)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self.upstream = None if lean_path_applies() else _DjangoMiddleware(get_response)
        # Read once: upstream reads these variables from the environment on every request.
        self.capture_request_headers = bool(
            get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST)
        )
        self.capture_response_headers = bool(
            get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE)
        )

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        if self.upstream is not None:
            return self.upstream(request)
        telemetry = self._start(request)
        response = self.get_response(request)
        return self._finish(request, response, telemetry)

    async def _acall(self, request: HttpRequest) -> Any:
        if self.upstream is not None:
            # Upstream's middleware is synchronous: the same work, without its thread hop.
            self.upstream.process_request(request)
            response = await self.get_response(request)
            return self.upstream.process_response(request, response)
        telemetry = self._start(request)
        response = await self.get_response(request)
        return self._finish(request, response, telemetry)

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any) -> None:
        if self.upstream is not None:
            self.upstream.process_view(request, view_func, view_args, view_kwargs)
            return
        telemetry: _Request | None = getattr(request, "_otel_hcv_server", None)
        match = getattr(request, "resolver_match", None)
        if telemetry is None or match is None or not match.route:
            return
        try:
            template = routes.route_template(match.route, getattr(request, "urlconf", None))
        except Exception:  # telemetry never breaks a request
            logger.debug("otel-hcv: no route template for this request", exc_info=True)
            return
        request.route_template = template  # type: ignore[attr-defined]
        telemetry.routed = True
        self._name_by_route(telemetry, template)

    def process_exception(self, request: HttpRequest, exception: BaseException) -> None:
        if self.upstream is not None:
            self.upstream.process_exception(request, exception)
            return
        telemetry: _Request | None = getattr(request, "_otel_hcv_server", None)
        if telemetry is not None:
            telemetry.exception = exception

    # -- the request's start and end ---------------------------------------------------

    def _start(self, request: HttpRequest) -> _Request | None:
        middleware = _DjangoMiddleware
        if middleware._excluded_urls.url_disabled(request.build_absolute_uri("?")):
            return None
        is_asgi = isinstance(request, ASGIRequest)
        meta = request.META
        if is_asgi:
            carrier: Any = request.scope  # type: ignore[attr-defined]
            attributes = asgi_request_attributes(carrier, _StabilityMode.HTTP)
            getter: Any = asgi_getter
        else:
            carrier = meta
            attributes = wsgi_request_attributes(carrier, _StabilityMode.HTTP)
            getter = wsgi_getter
        telemetry = _Request(_method_name(request))
        span, token = _start_internal_or_server_span(
            tracer=middleware._tracer,
            span_name=telemetry.method,
            start_time=meta.get(_START_TIME_KEY),
            context_carrier=carrier,
            context_getter=getter,
            attributes=attributes,
        )
        telemetry.span, telemetry.token = span, token
        telemetry.active_attributes = _parse_active_request_count_attrs(attributes, _StabilityMode.HTTP)
        # All of them: the duration's own are picked at the end, when the route and status are known.
        telemetry.duration_attributes = attributes
        middleware._active_request_counter.add(1, telemetry.active_attributes)
        if span.is_recording():
            if middleware._traced_request_attrs:
                traced = extract_attributes_from_object(request, middleware._traced_request_attrs, {})
                span.set_attributes(traced)
            if self.capture_request_headers and span.kind == SpanKind.SERVER:
                self._capture_request_headers(request, span, is_asgi)
        telemetry.activation = use_span(span, end_on_exit=True)
        telemetry.activation.__enter__()
        telemetry.start = default_timer()
        meta[SPAN_KEY] = span
        request._otel_hcv_server = telemetry  # type: ignore[attr-defined]
        return telemetry

    def _finish(self, request: HttpRequest, response: HttpResponse, telemetry: _Request | None) -> HttpResponse:
        if telemetry is None:
            return response
        span = telemetry.span
        try:
            if not telemetry.routed and response.status_code != 404:
                self._name_as_upstream_would(request, telemetry)
            if isinstance(request, ASGIRequest):
                set_status_code(
                    span,
                    response.status_code,
                    metric_attributes=telemetry.duration_attributes,
                    sem_conv_opt_in_mode=_StabilityMode.HTTP,
                )
            else:
                add_response_attributes(
                    span,
                    f"{response.status_code} {response.reason_phrase}",
                    [],
                    telemetry.duration_attributes,
                    _StabilityMode.HTTP,
                )
            if self.capture_response_headers and span.is_recording() and span.kind == SpanKind.SERVER:
                self._capture_response_headers(request, response, span)
            propagator = get_global_response_propagator()
            if propagator:
                propagator.inject(response)
        finally:
            duration = max(default_timer() - telemetry.start, 0)
            middleware = _DjangoMiddleware
            middleware._duration_histogram_new.record(
                duration, _parse_duration_attrs(telemetry.duration_attributes, _StabilityMode.HTTP)
            )
            middleware._active_request_counter.add(-1, telemetry.active_attributes)
            exception = telemetry.exception
            if exception is not None:
                telemetry.activation.__exit__(type(exception), exception, exception.__traceback__)
            else:
                telemetry.activation.__exit__(None, None, None)
            if telemetry.token is not None:
                detach(telemetry.token)
            del request._otel_hcv_server  # type: ignore[attr-defined]
        return response

    # -- names and routes ----------------------------------------------------------------

    @staticmethod
    def _name_by_route(telemetry: _Request, route: str) -> None:
        name_by_route(telemetry.span, telemetry.method, route, telemetry.duration_attributes)

    @staticmethod
    def _name_as_upstream_would(request: HttpRequest, telemetry: _Request) -> None:
        """A response given before a view was chosen (a redirect, a middleware's refusal):
        upstream named the span from resolving the path at the start of the request."""
        method = telemetry.method
        if method == "HTTP" or not telemetry.span.is_recording():
            return
        try:
            match = resolve(request.path)
        except Resolver404:
            return
        except Exception:  # telemetry never breaks a request
            return
        if getattr(match, "route", None):
            telemetry.span.update_name(f"{method} {match.route}")
        elif getattr(match, "url_name", None):
            telemetry.span.update_name(f"{method} {match.url_name}")

    # -- header capture (only when configured) ---------------------------------------------

    @staticmethod
    def _capture_request_headers(request: HttpRequest, span: Any, is_asgi: bool) -> None:
        from opentelemetry.instrumentation.django.middleware import otel_middleware as upstream

        if is_asgi:
            captured = upstream.asgi_collect_custom_headers_attributes(
                request.scope,  # type: ignore[attr-defined]
                upstream.SanitizeValue(
                    get_custom_headers(upstream.OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
                ),
                get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST),
                upstream.normalise_request_header_name,
            )
        else:
            captured = upstream.wsgi_collect_custom_request_headers_attributes(request.META)
        if captured:
            span.set_attributes(captured)

    @staticmethod
    def _capture_response_headers(request: HttpRequest, response: HttpResponse, span: Any) -> None:
        from opentelemetry.instrumentation.django.middleware import otel_middleware as upstream

        if isinstance(request, ASGIRequest):
            headers: dict[str, Any] = {}
            for key, value in response.items():
                upstream.asgi_setter.set(headers, key, value)
            captured = upstream.asgi_collect_custom_headers_attributes(
                headers,
                upstream.SanitizeValue(
                    get_custom_headers(upstream.OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
                ),
                get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE),
                upstream.normalise_response_header_name,
            )
        else:
            captured = upstream.wsgi_collect_custom_response_headers_attributes(response.items())
        if captured:
            span.set_attributes(captured)


def _method_name(request: HttpRequest) -> str:
    method = sanitize_method((request.method or "").strip())
    return "HTTP" if method == "_OTHER" else method
