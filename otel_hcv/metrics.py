"""Metric instruments of the diagnosis and the API, the allow-list view, and the two
recording functions of the monitoring plan (:func:`record_diagnosis`, :func:`record_api_request`).

Metric attributes come from a fixed allow-list (:data:`otel_hcv.attributes.METRIC_ATTRIBUTE_KEYS`):
user ids, request ids and lab values can never become a label. Spans around a diagnosis or
an API call are :mod:`otel_hcv.tracking`'s.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Exemplar, ExemplarReservoir

# The SDK's per-aggregation reservoir choice has no public name; the view wraps what it returns.
from opentelemetry.sdk.metrics._internal.view import _default_reservoir_factory
from opentelemetry.sdk.metrics.view import View

from otel_hcv import lifecycle, privacy, state, summary
from otel_hcv.attributes import (
    ALLOWED_METRIC_ATTRIBUTES,
    CATEGORY,
    ENDPOINT,
    ERROR_TYPE,
    HTTP_METHOD,
    HTTP_METHODS,
    HTTP_STATUS,
    INSTRUMENTATION_SCOPE,
    METRIC_ATTRIBUTE_KEYS,
    OUTCOME,
    http_error_type,
)

# Seconds; fine below 100 ms where a model prediction usually lands.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                    2.5, 5.0, 10.0)  # fmt: skip


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
            label = privacy.endpoint_label(key, state.current_settings())
            if len(self._seen) < MAX_ENDPOINTS:
                self._seen[key] = label
            elif label not in self._seen.values():
                label = privacy.OVERFLOW_VALUE
        return label


endpoint_label = _EndpointLabels()
lifecycle.on_reset(endpoint_label._seen.clear)


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


class _Counts:
    """How many measurements a duration histogram took, by attribute set, for the counter
    that repeats that count (``hcv.api.requests``, ``hcv.diagnosis.requests``).

    Each request is one fact, recorded once in the histogram; the counter reads these
    counts when metrics are collected instead of taking a second SDK measurement per
    request (a dictionary increment here against about 8 µs through the SDK's
    measurement path). The attribute sets are the histogram's, already bounded by the
    allow-list and the endpoint bound.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[tuple[str, Any], ...], int] = {}

    def add(self, attributes: Mapping[str, Any]) -> None:
        key = tuple(attributes.items())
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [Observation(count, dict(key)) for key, count in counts]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


# One of each per process: a meter asked again for an instrument of the same name returns
# the first one, with the first callback, so the counts it reads must stay the same objects.
diagnosis_counts = _Counts()
api_counts = _Counts()
lifecycle.on_reset(diagnosis_counts.clear)
lifecycle.on_reset(api_counts.clear)


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
        meter.create_observable_counter(
            "hcv.diagnosis.requests",
            callbacks=[diagnosis_counts.observe],
            unit="{diagnosis}",
            description="Diagnoses attempted, by outcome and predicted category.",
        )
        self.api_duration = meter.create_histogram(
            "hcv.api.request.duration",
            unit="s",
            description="Duration of API endpoint calls, by endpoint, method and status code.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        meter.create_observable_counter(
            "hcv.api.requests",
            callbacks=[api_counts.observe],
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


@lifecycle.on_reset
def _forget_instruments() -> None:
    # Recreated on first use from the providers in force then.
    instruments.__dict__.clear()


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
    diagnosis_counts.add(attributes)
    summary.current.add_diagnosis(duration, success)
    if user_id is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(privacy.user_attributes(user_id, state.current_settings()))


def record_api_request(
    endpoint: str,
    method: str,
    status_code: int,
    duration: float,
    error_type: str | None = None,
) -> None:
    """Record one API call's duration (s) and count by endpoint, method and status."""
    method = method.upper() if method and method.upper() in HTTP_METHODS else "_OTHER"
    if error_type is None:
        error_type = http_error_type(status_code)
    attributes = metric_attributes(
        **{ENDPOINT: endpoint, HTTP_METHOD: method, HTTP_STATUS: int(status_code), ERROR_TYPE: error_type}
    )
    duration = max(float(duration), 0.0)
    instruments.api_duration.record(duration, attributes)
    api_counts.add(attributes)
    # Under the endpoint's metric label (text, at most 64 characters), as Prometheus shows it.
    summary.current.add_api_call(str(attributes.get(ENDPOINT, "_OTHER")), int(status_code), duration)
