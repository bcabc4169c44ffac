"""Synthetic OTLP trace traffic for the agent/gateway tier tests and the gateway benchmark.

Every trace looks like one request to the HCV service: a SERVER root span and four
children (database, cache, diagnosis, model). Traces are either

* ``error``: a span has status ERROR -- the model span and the root (HTTP 500), or only
  the cache span (a handled failure, HTTP 200): the tail sampler must see it anywhere;
* ``slow``: the root lasts ``slow_ms`` (above the gateways' latency threshold);
* ``normal``: 20-300 ms, no error -- kept only by the probabilistic policy.

Requests are OTLP/HTTP protobuf (opentelemetry-proto). A trace's spans are split over
two requests like an SDK's batches are -- the children in one, the root in a later one
-- so the tier has to bring them back together by trace id.
"""

from __future__ import annotations

import http.client
import random
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SPANS_PER_TRACE = 5
ROOT_NAME = "POST /api/diagnose/"
CHILD_NAMES = ("SELECT hcv", "GET", "hcv.diagnose", "hcv.model.predict")


@dataclass
class Trace:
    trace_id: bytes
    kind: str  # "error" | "slow" | "normal"
    start_ns: int
    duration_ns: int
    span_ids: list[bytes] = field(default_factory=list)
    sent_at: float = 0.0  # time.monotonic() when its last request was accepted

    @property
    def hex_id(self) -> str:
        return self.trace_id.hex()

    @property
    def hex_span_ids(self) -> set[str]:
        return {s.hex() for s in self.span_ids}


def _str(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _int(key: str, value: int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value))


def make_traces(
    count: int,
    rng: random.Random,
    *,
    error_share: float = 0.08,
    slow_share: float = 0.08,
    slow_ms: int = 1500,
    now_ns: int | None = None,
) -> list[Trace]:
    """``count`` traces with random ids; a fixed share of errors and of slow ones, shuffled."""
    now_ns = now_ns or time.time_ns()
    n_error = round(count * error_share)
    n_slow = round(count * slow_share)
    kinds = ["error"] * n_error + ["slow"] * n_slow + ["normal"] * (count - n_error - n_slow)
    rng.shuffle(kinds)
    traces = []
    for i, kind in enumerate(kinds):
        duration_ms = slow_ms if kind == "slow" else rng.randint(20, 300)
        start = now_ns - 5_000_000_000 + i * 1000  # recent, distinct start times
        traces.append(
            Trace(
                trace_id=rng.randbytes(16),
                kind=kind,
                start_ns=start,
                duration_ns=duration_ms * 1_000_000,
                span_ids=[rng.randbytes(8) for _ in range(SPANS_PER_TRACE)],
            )
        )
    return traces


def _spans(trace: Trace, rng: random.Random) -> tuple[Span, list[Span]]:
    root_id = trace.span_ids[0]
    error_in_root = trace.kind == "error" and trace.trace_id[0] % 2 == 0
    root = Span(
        trace_id=trace.trace_id,
        span_id=root_id,
        name=ROOT_NAME,
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=trace.start_ns,
        end_time_unix_nano=trace.start_ns + trace.duration_ns,
        attributes=[
            _str("http.request.method", "POST"),
            _str("http.route", "/api/diagnose/"),
            _int("http.response.status_code", 500 if error_in_root else 200),
        ],
        status=Status(code=Status.STATUS_CODE_ERROR if error_in_root else Status.STATUS_CODE_UNSET),
    )
    children = []
    step = trace.duration_ns // (len(CHILD_NAMES) + 1)
    for i, (name, span_id) in enumerate(zip(CHILD_NAMES, trace.span_ids[1:], strict=True)):
        start = trace.start_ns + (i + 1) * step // 2
        failed = trace.kind == "error" and (
            (error_in_root and name == "hcv.model.predict") or (not error_in_root and name == "GET")
        )
        children.append(
            Span(
                trace_id=trace.trace_id,
                span_id=span_id,
                parent_span_id=root_id,
                name=name,
                kind=Span.SPAN_KIND_CLIENT if i < 2 else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start,
                end_time_unix_nano=start + max(step // 2, 1000),
                status=Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_UNSET),
            )
        )
    return root, children


def _request(service: str, instance: str, spans: Iterable[Span]) -> bytes:
    resource = Resource(attributes=[_str("service.name", service), _str("service.instance.id", instance)])
    scope = ScopeSpans(scope=InstrumentationScope(name="tests.tier.traffic"), spans=list(spans))
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope])]
    ).SerializeToString()


def requests_for(
    traces: list[Trace], service: str, *, group: int = 25, instance: str = "tier-test-1", seed: int = 0
) -> Iterator[tuple[bytes, list[Trace]]]:
    """(payload, traces completed by it): children of group g, then the roots of group g-1."""
    rng = random.Random(seed)
    pending_roots: list[tuple[Span, Trace]] = []
    for start in range(0, len(traces), group):
        chunk = traces[start : start + group]
        built = [(_spans(t, rng), t) for t in chunk]
        children = [c for (_, cs), _ in built for c in cs]
        yield _request(service, instance, children), []
        if pending_roots:
            yield _request(service, instance, [r for r, _ in pending_roots]), [t for _, t in pending_roots]
        pending_roots = [(root, t) for (root, _), t in built]
    if pending_roots:
        yield _request(service, instance, [r for r, _ in pending_roots]), [t for _, t in pending_roots]


class OtlpHttpSender:
    """Keep-alive OTLP/HTTP protobuf client; retries 429/502/503/504 and connection errors."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname, url.port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0
        self.retries = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def send(self, payload: bytes, attempts: int = 20) -> None:
        for attempt in range(attempts):
            try:
                conn = self._connection()
                conn.request("POST", "/v1/traces", body=payload, headers={"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.requests += 1
                    return
                if response.status not in (429, 502, 503, 504):
                    raise RuntimeError(f"OTLP export answered {response.status}")
            except (OSError, http.client.HTTPException):
                self.close()
            self.retries += 1
            time.sleep(min(0.05 * 2**attempt, 1.0))
        raise RuntimeError(f"OTLP export failed after {attempts} attempts")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
