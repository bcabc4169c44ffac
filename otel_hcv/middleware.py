"""Request id and user enrichment for every request (sync and async)."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from opentelemetry import trace

from otel_hcv import context, privacy, routes, server, state

logger = logging.getLogger(__name__)

REQUEST_ID_ATTRIBUTE = "hcv.request.id"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]+")


def valid_request_id(value: str | None, max_length: int) -> bool:
    return bool(value) and len(value) <= max_length and _SAFE_REQUEST_ID.fullmatch(value) is not None


class RequestContextMiddleware:
    """Takes a well-formed incoming request id (or makes one), echoes it in the response,
    puts it on the server span and in a context variable for log records, and marks the
    server span with the authenticated user's pseudonymised id once the view has run.

    Place it after ``SecurityMiddleware`` (and before ``AuthenticationMiddleware`` is
    fine: the user is read on the way out).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        token = self._before(request)
        try:
            response = self.get_response(request)
            return self._after(request, response)
        finally:
            context.request_id.reset(token)

    async def _acall(self, request: HttpRequest) -> Any:
        token = self._before(request)
        try:
            response = await self.get_response(request)
            return self._after(request, response)
        finally:
            context.request_id.reset(token)

    def _before(self, request: HttpRequest) -> Any:
        settings = state.current_settings()
        header = settings.request_id_header
        # request.META, not request.headers: building the headers mapping costs more than the lookup.
        incoming = request.META.get("HTTP_" + header.upper().replace("-", "_"))
        if valid_request_id(incoming, settings.request_id_max_length):
            request_id = incoming
        else:
            # Not a secret, so no os.urandom() system call per request (as for trace ids).
            request_id = f"{random.getrandbits(128):032x}"
            if incoming is not None:
                # The rejected value itself is not logged: it is untrusted input.
                logger.warning(
                    "Replaced a malformed %s header (%d characters) with %s",
                    header,
                    len(incoming),
                    request_id,
                )
        request.request_id = request_id  # type: ignore[attr-defined]
        context.set_finished_request(None)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
        # For the lines Django writes about this request after the span has ended.
        setattr(request, context.REQUEST_ATTRIBUTE, context.RequestIds(span.get_span_context(), request_id))
        return context.request_id.set(request_id)

    def _after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        settings = state.current_settings()
        response[settings.request_id_header] = request.request_id  # type: ignore[attr-defined]
        span = trace.get_current_span()
        if span.is_recording():
            user_id = privacy.user_id_of(request, resolve=False)
            if user_id is not None:
                span.set_attributes(privacy.user_attributes(user_id, settings))
        context.set_finished_request(getattr(request, context.REQUEST_ATTRIBUTE))
        return response


class AbsoluteUriCacheMiddleware:
    """Computes ``request.build_absolute_uri("?")`` once per request.

    Django's OpenTelemetry middleware calls it in ``process_request``, ``process_view``
    and ``process_response`` only to test its excluded URLs, and each call parses and
    re-quotes the URL (about 30 µs). otel-hcv places this right before that middleware.
    The answer cannot change during a request, and one answer also keeps upstream's
    start-of-span and end-of-span decisions the same.
    """

    # Sync only, like the middleware it serves: Django adapts at one boundary either way.
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        _cache_absolute_uri(request)
        try:
            return self.get_response(request)
        finally:
            # The cached method refers to the request: no reference cycle left for the GC.
            del request.build_absolute_uri


def _cache_absolute_uri(request: HttpRequest) -> None:
    build = request.build_absolute_uri
    cache: list[str] = []

    def build_absolute_uri(location: str | None = None) -> str:
        if location != "?":
            return build(location)
        if not cache:
            cache.append(build(location))
        return cache[0]

    request.build_absolute_uri = build_absolute_uri  # type: ignore[method-assign]


# Where Django's OpenTelemetry middleware keeps the request's server span and the
# attributes of its http.server.request.duration measurement.
_UPSTREAM_SPAN_KEY = "opentelemetry-instrumentor-django.span_key"
_UPSTREAM_DURATION_ATTRIBUTES_KEY = "opentelemetry-instrumentor-django.duration_attr_key"


class RouteTemplateMiddleware(MiddlewareMixin):
    """Gives the server span's name, its ``http.route`` and the ``http.route`` of
    ``http.server.request.duration`` the readable template of the route
    (:mod:`otel_hcv.routes`) instead of the regular expression of a ``re_path()`` or a
    DRF router. otel-hcv places it right after Django's OpenTelemetry middleware, so its
    ``process_view`` runs just after the one that set the raw route.
    """

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any) -> None:
        span = request.META.get(_UPSTREAM_SPAN_KEY)
        match = getattr(request, "resolver_match", None)
        if span is None or match is None:
            return
        try:
            template = routes.route_template(match.route or "", getattr(request, "urlconf", None))
            request.route_template = template  # type: ignore[attr-defined]
            method = getattr(span, "name", "").partition(" ")[0] or request.method or "HTTP"
            duration_attributes = request.META.get(_UPSTREAM_DURATION_ATTRIBUTES_KEY)
            if not isinstance(duration_attributes, dict):
                duration_attributes = None
            server.name_by_route(span, method, template, duration_attributes)
            if duration_attributes is not None and "http.target" in duration_attributes:
                duration_attributes["http.target"] = template  # the old conventions' name for it
        except Exception:  # telemetry never breaks a request
            logger.debug("otel-hcv: no route template for this request", exc_info=True)
