"""Spans and measurements around the service's own work: :func:`trace_diagnosis` around a
prediction, :func:`track_api_metrics` around a view, and the monitoring plan's
:class:`MetricsCollector`, kept so existing views migrate by one import.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from otel_hcv import context, privacy, state
from otel_hcv.attributes import (
    CATEGORY,
    ENDPOINT,
    ERROR_TYPE,
    MODEL_VERSION,
    PROBABILITY,
    http_error_type,
    qualified_name,
)
from otel_hcv.metrics import endpoint_label, instruments, record_api_request, record_diagnosis


@dataclass
class DiagnosisRecorder:
    """Handed out by :func:`trace_diagnosis`; tell it what the model predicted."""

    span: Span
    category: str | None = None
    probability: float | None = None

    def set_result(self, category: str, probability: float | None = None) -> None:
        self.category = category
        self.probability = probability
        self.span.set_attribute(CATEGORY, category)
        if probability is not None:
            self.span.set_attribute(PROBABILITY, float(probability))


@contextmanager
def trace_diagnosis(model_version: str | None = None) -> Iterator[DiagnosisRecorder]:
    """A ``hcv.diagnosis`` span around a prediction that records the diagnosis metrics.

    An exception marks the span as failed (its type only: exception messages can carry
    patient data), is counted with ``error.type``, and is re-raised.
    """
    start = time.perf_counter()
    with instruments.tracer.start_as_current_span(
        "hcv.diagnosis", record_exception=False, set_status_on_exception=False
    ) as span:
        if span.is_recording():
            user = context.user_attributes.get()
            if user:
                span.set_attributes(user)
            if model_version:
                span.set_attribute(MODEL_VERSION, model_version)
        recorder = DiagnosisRecorder(span)
        try:
            yield recorder
        except BaseException as exc:
            error_type = qualified_name(type(exc))
            _mark_failed(span, exc, error_type)
            record_diagnosis(time.perf_counter() - start, False, error_type=error_type)
            raise
        record_diagnosis(time.perf_counter() - start, True, category=recorder.category)


def _mark_failed(span: Span, exc: BaseException, error_type: str) -> None:
    if not span.is_recording():
        return
    # The SDK's record_exception would export str(exc); keep the type and stack only.
    span.add_event(
        "exception",
        {"exception.type": qualified_name(type(exc)), "exception.message": privacy.REDACTED},
    )
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def status_for_exception(exc: BaseException) -> int:
    """The HTTP status Django or DRF will answer for ``exc`` once it propagates."""
    status = getattr(exc, "status_code", None)  # DRF's APIException and subclasses
    if isinstance(status, int):
        return status
    try:
        from django.core.exceptions import PermissionDenied, SuspiciousOperation
        from django.http import Http404
    except ImportError:  # pragma: no cover - Django is a dependency
        return 500
    if isinstance(exc, Http404):
        return 404
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, SuspiciousOperation):
        return 400
    return 500


def _request_of(args: tuple[Any, ...]) -> Any:
    # APIView methods get (self, request, ...), function views (request, ...).
    for candidate in args[:2]:
        if hasattr(candidate, "META") and hasattr(candidate, "method"):
            return candidate
    return None


class _ApiCall:
    """The measurements around one call of a decorated view, and the annotations it puts
    on the request's span (the server span under Django's instrumentation).

    No span of its own: the server span already covers the view, and one span fewer per
    request is a third less tracing work. An exception that escapes the view reaches
    Django, whose instrumentation records it on the server span; on any other current
    span this records it itself.
    """

    def __init__(self, endpoint: str, request: Any) -> None:
        self.endpoint = endpoint_label(endpoint)
        self.method = getattr(request, "method", None) or "_OTHER"
        self.start = time.perf_counter()
        user = privacy.user_attributes(privacy.user_id_of(request), state.current_settings())
        self.user_token = context.user_attributes.set(user)
        self.endpoint_token = context.endpoint.set(self.endpoint)
        self.span = trace.get_current_span()
        if self.span.is_recording():
            self.span.set_attributes({ENDPOINT: self.endpoint, **user})

    def finish(self, status_code: int, exc: BaseException | None = None) -> None:
        try:
            error_type = http_error_type(status_code)
            if error_type is not None and self.span.is_recording():
                # Django's instrumentation says the same on its server span; any other
                # span (a job calling the view) gets the exception event from here.
                self.span.set_attribute(ERROR_TYPE, error_type)
                if exc is not None and getattr(self.span, "kind", None) is not SpanKind.SERVER:
                    _mark_failed(self.span, exc, error_type)
            record_api_request(self.endpoint, self.method, status_code, time.perf_counter() - self.start, error_type)
        finally:
            context.user_attributes.reset(self.user_token)
            context.endpoint.reset(self.endpoint_token)


F = TypeVar("F", bound=Callable[..., Any])


def track_api_metrics(endpoint_name: str | None = None) -> Callable[[F], F]:
    """Decorate a DRF ``APIView`` method, a function view or an async view.

    Records ``hcv.api.request.duration`` and ``hcv.api.requests`` by endpoint, method
    and status code, and marks the request's span with the endpoint and the
    (pseudonymised) user. An exception is counted with the status Django will answer for
    it (500 unless it is an HTTP error such as DRF's validation errors) and re-raised.
    ``error.type`` follows :func:`http_error_type`: the status code of a 5xx, nothing for
    a 4xx.
    """

    def decorator(func: F) -> F:
        endpoint = endpoint_name or func.__name__

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = _ApiCall(endpoint, _request_of(args))
                try:
                    response = await func(*args, **kwargs)
                except BaseException as exc:
                    call.finish(status_for_exception(exc), exc)
                    raise
                call.finish(getattr(response, "status_code", 200))
                return response

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _ApiCall(endpoint, _request_of(args))
            try:
                response = func(*args, **kwargs)
            except BaseException as exc:
                call.finish(status_for_exception(exc), exc)
                raise
            call.finish(getattr(response, "status_code", 200))
            return response

        return wrapper  # type: ignore[return-value]

    return decorator


class MetricsCollector:
    """The monitoring plan's interface, kept so existing views migrate by one import."""

    @staticmethod
    def record_diagnosis_metrics(duration: float, success: bool, user_id: object | None = None, **kwargs: Any) -> None:
        record_diagnosis(duration, success, user_id, **kwargs)

    @staticmethod
    def record_api_metrics(endpoint: str, method: str, status_code: int, duration: float) -> None:
        record_api_request(endpoint, method, status_code, duration)
