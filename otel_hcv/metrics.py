"""Diagnosis and API telemetry: the monitoring plan's MetricsCollector, done with
OpenTelemetry instruments and spans.

Metric attributes come from a fixed allow-list (:data:`METRIC_ATTRIBUTE_KEYS`): user ids,
request ids and lab values can never become a label.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Exemplar, ExemplarReservoir

# The SDK's per-aggregation reservoir choice has no public name; the view wraps what it returns.
from opentelemetry.sdk.metrics._internal.view import _default_reservoir_factory
from opentelemetry.sdk.metrics.view import View
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from otel_hcv import context, privacy, sdk, summary

INSTRUMENTATION_SCOPE = "otel_hcv"

# Seconds; fine below 100 ms where a model prediction usually lands.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                    2.5, 5.0, 10.0)  # fmt: skip

OUTCOME = "hcv.diagnosis.outcome"
CATEGORY = "hcv.diagnosis.category"
MODEL_VERSION = "hcv.model.version"
PROBABILITY = "hcv.diagnosis.probability"
ENDPOINT = "hcv.endpoint"
HTTP_METHOD = "http.request.method"
HTTP_STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"

METRIC_ATTRIBUTE_KEYS = frozenset({OUTCOME, CATEGORY, ENDPOINT, HTTP_METHOD, HTTP_STATUS, ERROR_TYPE})
# Every instrument's attributes, ours and the instrumentations', pass this allow-list
# (an SDK view): an identifier can never create a time series, whoever records it.
ALLOWED_METRIC_ATTRIBUTES = METRIC_ATTRIBUTE_KEYS | {
    # HTTP server metrics of the Django/ASGI instrumentations (stable conventions)
    "http.route", "url.scheme", "network.protocol.name", "network.protocol.version",
    "server.address", "server.port",
    # database and cache client metrics
    "db.system", "db.system.name", "db.operation.name", "db.collection.name", "db.namespace",
    "db.response.status_code", "db.client.connection.pool.name", "db.client.connection.state",
    # health gauges (otel_hcv.health)
    "hcv.health.check", "hcv.health.critical", "hcv.disk.path", "system.memory.state",
    # telemetry about telemetry
    "otel.component.type", "otel.component.name", "otel.signal",
}  # fmt: skip
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


MAX_ENDPOINTS = 200


class _EndpointLabels:
    """Endpoint values as metric labels: names or route templates, screened, bounded in
    length, and at most :data:`MAX_ENDPOINTS` distinct ones per process (then the overflow
    value), so neither a raw path nor a flood of names becomes a time series."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, value: object) -> str:
        key = str(value)
        label = self._seen.get(key)
        if label is None:
            label = privacy.endpoint_label(key, sdk.current_settings())
            if len(self._seen) < MAX_ENDPOINTS:
                self._seen[key] = label
            elif label not in self._seen.values():
                label = privacy.OVERFLOW_VALUE
        return label


endpoint_label = _EndpointLabels()


def metric_attributes(**candidates: Any) -> dict[str, Any]:
    """Keep only allow-listed keys with plain values (the cardinality guard)."""
    attributes = {}
    for name, value in candidates.items():
        if value is None or name not in METRIC_ATTRIBUTE_KEYS:
            continue
        if name == ENDPOINT:
            attributes[name] = endpoint_label(value)
        else:
            attributes[name] = value if isinstance(value, bool | int | float) else str(value)[:64]
    return attributes


class _ExemplarsWithoutFilteredAttributes(ExemplarReservoir):
    """An exemplar keeps the attributes a view filtered out of its metric point; under the
    allow-list view those are exactly the ones that must not leave (user ids, e-mail addresses,
    lab keys). Exemplars keep their value, time and trace link only."""

    def __init__(self, reservoir: ExemplarReservoir) -> None:
        self._reservoir = reservoir

    def offer(self, value: int | float, time_unix_nano: int, attributes: Any, context: Any) -> None:
        self._reservoir.offer(value, time_unix_nano, attributes, context)

    def collect(self, point_attributes: Any) -> list[Exemplar]:
        return [
            dataclasses.replace(exemplar, filtered_attributes=None)
            for exemplar in self._reservoir.collect(point_attributes)
        ]


def _screened_reservoir_factory(aggregation_type: type) -> Callable[..., ExemplarReservoir]:
    # The SDK's own choice of reservoir per aggregation, wrapped.
    builder = _default_reservoir_factory(aggregation_type)
    return lambda **kwargs: _ExemplarsWithoutFilteredAttributes(builder(**kwargs))


def allow_list_views() -> list[View]:
    return [
        View(
            instrument_name="*",
            attribute_keys=set(ALLOWED_METRIC_ATTRIBUTES),
            exemplar_reservoir_factory=_screened_reservoir_factory,
        )
    ]


class _Instruments:
    """Instruments created once per process, on first use, from the global meter."""

    def _create(self) -> None:
        meter = metrics.get_meter(INSTRUMENTATION_SCOPE)
        self.tracer = trace.get_tracer(INSTRUMENTATION_SCOPE)
        self.diagnosis_duration = meter.create_histogram(
            "hcv.diagnosis.duration",
            unit="s",
            description="Time to produce a diagnosis, by outcome and predicted category.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.diagnosis_requests = meter.create_counter(
            "hcv.diagnosis.requests",
            unit="{diagnosis}",
            description="Diagnoses attempted, by outcome and predicted category.",
        )
        self.api_duration = meter.create_histogram(
            "hcv.api.request.duration",
            unit="s",
            description="Duration of API endpoint calls, by endpoint, method and status code.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.api_requests = meter.create_counter(
            "hcv.api.requests",
            unit="{request}",
            description="API endpoint calls, by endpoint, method and status code.",
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached for instrument attributes before _create() ran.
        if name.startswith("_"):
            raise AttributeError(name)
        self._create()
        return self.__dict__[name]


instruments = _Instruments()


def record_diagnosis(
    duration: float,
    success: bool,
    user_id: object | None = None,
    *,
    category: str | None = None,
    error_type: str | None = None,
) -> None:
    """Record one diagnosis: its duration (s) and outcome, and its category when known.

    ``user_id`` goes on the current span (pseudonymised unless configured otherwise),
    never on a metric.
    """
    attributes = metric_attributes(
        **{
            OUTCOME: "success" if success else "failure",
            CATEGORY: category if success else None,
            ERROR_TYPE: None if success else (error_type or "_OTHER"),
        }
    )
    duration = max(float(duration), 0.0)
    instruments.diagnosis_duration.record(duration, attributes)
    instruments.diagnosis_requests.add(1, attributes)
    summary.current.add_diagnosis(duration, success)
    if user_id is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(privacy.user_attributes(user_id, sdk.current_settings()))


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
            error_type = _qualified_name(type(exc))
            _mark_failed(span, exc, error_type)
            record_diagnosis(time.perf_counter() - start, False, error_type=error_type)
            raise
        record_diagnosis(time.perf_counter() - start, True, category=recorder.category)


def record_api_request(
    endpoint: str,
    method: str,
    status_code: int,
    duration: float,
    error_type: str | None = None,
) -> None:
    """Record one API call's duration (s) and count by endpoint, method and status."""
    method = method.upper() if method and method.upper() in _HTTP_METHODS else "_OTHER"
    if error_type is None:
        error_type = http_error_type(status_code)
    attributes = metric_attributes(
        **{ENDPOINT: endpoint, HTTP_METHOD: method, HTTP_STATUS: int(status_code), ERROR_TYPE: error_type}
    )
    duration = max(float(duration), 0.0)
    instruments.api_duration.record(duration, attributes)
    instruments.api_requests.add(1, attributes)
    # Under the endpoint's metric label (text, at most 64 characters), as Prometheus shows it.
    summary.current.add_api_call(str(attributes.get(ENDPOINT, "_OTHER")), int(status_code), duration)


def http_error_type(status_code: int) -> str | None:
    """``error.type`` of an HTTP request as its server sees it (the semantic conventions'
    rule): a 5xx answer is an error, typed by its status code as text; a 4xx is the
    client's mistake and no error of the server. One rule for the server span,
    ``http.server.request.duration`` and ``hcv.api.*``; the exception's class, where one
    was raised, is on the span's exception event."""
    return str(status_code) if status_code >= 500 else None


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _mark_failed(span: Span, exc: BaseException, error_type: str) -> None:
    if not span.is_recording():
        return
    # The SDK's record_exception would export str(exc); keep the type and stack only.
    span.add_event(
        "exception",
        {"exception.type": _qualified_name(type(exc)), "exception.message": privacy.REDACTED},
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
        user = privacy.user_attributes(privacy.user_id_of(request), sdk.current_settings())
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
