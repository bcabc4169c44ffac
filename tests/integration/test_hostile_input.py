"""Hostile input against a real gunicorn server under opentelemetry-instrument: fuzzed
bodies, content types and headers always get a 4xx with a message naming the problem,
never a 500; failures are counted by error type; random URLs create no metric series."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_hcv.receiver import OtlpReceiver, attributes
from tests.support.service import BIN, ServiceProcess, free_port, manage, service_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FIELDS = ("age", "sex", "alb", "alp", "alt", "ast", "bil", "che", "chol", "crea", "ggt", "prot")
VALID = {"age": 44, "sex": "f", "alb": 41.0, "alp": 65.0, "alt": 21.0, "ast": 24.0, "bil": 7.0,
         "che": 8.1, "chol": 5.2, "crea": 75.0, "ggt": 19.0, "prot": 71.0}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    with OtlpReceiver() as receiver:
        env = service_env(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_PYTHON_DISTRO": "otel_hcv",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            },
            database=workdir / "hcv.sqlite3",
        )
        manage(["migrate", "--noinput"], env)
        port = free_port()
        command = [str(BIN / "opentelemetry-instrument"), str(BIN / "gunicorn"), "hcv_service.wsgi",
                   "--bind", f"127.0.0.1:{port}", "--workers", "1"]  # fmt: skip
        service = ServiceProcess(command, env, port, workdir / "server.log")
        try:
            service.wait_ready(timeout=90)
            yield service, receiver
        finally:
            service.stop(timeout=30)


def request(url: str, data: bytes | None, headers: dict[str, str], method: str = "POST") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
lab_value = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.text(max_size=10)
    | st.none()
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
)
lab_bodies = st.fixed_dictionaries(
    {},
    optional={name: lab_value for name in FIELDS} | {"unknown_" + name: lab_value for name in ("x", "y")},
)


def assert_client_error(status: int, body: bytes) -> None:
    assert status < 500, (status, body[:300])
    if status != 200:
        assert 400 <= status < 500
        assert body.strip(), "a 4xx must say what is wrong"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=lab_bodies)
def test_fuzzed_lab_values_never_500(server, body):
    service, _ = server
    encoded = json.dumps(body, allow_nan=True).encode()
    status, response = request(f"{service.url}/api/diagnose/", encoded, {"Content-Type": "application/json"})
    assert_client_error(status, response)
    if status == 400:
        problems = json.loads(response)
        bad = set(problems)
        assert bad, response
        # Each reported field is one the request got wrong (or a general error).
        assert bad <= set(body) | set(FIELDS) | {"non_field_errors", "detail"}


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=json_values)
def test_fuzzed_json_documents_never_500(server, value):
    service, _ = server
    status, response = request(
        f"{service.url}/api/diagnose/", json.dumps(value, allow_nan=True).encode(), {"Content-Type": "application/json"}
    )
    assert_client_error(status, response)


CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "",
    "x/y",
]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(CONTENT_TYPES))
def test_garbage_bytes_and_content_types_never_500(server, raw, content_type):
    service, _ = server
    headers = {"Content-Type": content_type} if content_type else {}
    status, response = request(f"{service.url}/api/diagnose/", raw, headers)
    assert_client_error(status, response)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # NaN and Infinity are not JSON: the parser names the offending literal.
        ({**VALID, "alb": float("nan")}, "NaN"),
        ({**VALID, "che": float("inf")}, "Infinity"),
        ({**VALID, "crea": -5}, "crea"),
        ({**VALID, "ggt": 1e308}, "ggt"),
        ({**VALID, "age": "forty"}, "age"),
        ({k: v for k, v in VALID.items() if k != "prot"}, "prot"),
        ({**VALID, "patient_name": "x"}, "patient_name"),
    ],
)
def test_bad_fields_are_named(server, body, field):
    service, _ = server
    status, response = request(
        f"{service.url}/api/diagnose/", json.dumps(body, allow_nan=True).encode(), {"Content-Type": "application/json"}
    )
    assert status == 400
    problems = json.loads(response)
    assert field in problems or field in problems.get("detail", "")


def test_very_large_body_is_413(server):
    service, _ = server
    huge = json.dumps({**VALID, "padding": "x" * (2 * 1024 * 1024)}).encode()
    status, response = request(f"{service.url}/api/diagnose/", huge, {"Content-Type": "application/json"})
    assert status == 413, response[:200]
    assert response.strip()


def test_client_errors_are_counted_by_status_without_error_type(server):
    service, receiver = server
    url = f"{service.url}/api/diagnose/"
    sent = Counter()
    for body, headers in [
        (b"{not json", {"Content-Type": "application/json"}),
        (json.dumps({**VALID, "alb": "x"}).encode(), {"Content-Type": "application/json"}),
        (b"hello", {"Content-Type": "text/plain"}),
    ]:
        status, _ = request(url, body, headers)
        sent[str(status)] += 1
    time.sleep(1.5)
    counted = Counter()
    latest = {}
    for resource, point in receiver.metric_points("hcv.api.requests"):
        latest[(resource["service.instance.id"], tuple(sorted(attributes(point.attributes).items())))] = point
    for (_, key), point in latest.items():
        attrs = dict(key)
        counted[str(attrs["http.response.status_code"])] += point.as_int
        # The HTTP conventions: a 4xx is the client's error, not the server's.
        assert "error.type" not in attrs or attrs["http.response.status_code"] >= 500, attrs
    for status, count in sent.items():
        assert counted[status] >= count, (counted, sent)
    assert "500" not in counted


def test_random_urls_create_no_new_metric_series(server):
    service, receiver = server

    def series() -> set[tuple]:
        found = set()
        for name in ("http.server.request.duration", "hcv.api.requests", "http.server.active_requests"):
            for _, point in receiver.metric_points(name):
                found.add((name, tuple(sorted(attributes(point.attributes).items()))))
        return found

    for _ in range(5):  # the one series an unmatched GET makes
        request(f"{service.url}/{secrets.token_hex(6)}/", None, {}, method="GET")
    time.sleep(1.5)
    before = series()
    for _ in range(300):
        path = f"/{secrets.token_hex(4)}/{secrets.token_urlsafe(12)}?q={secrets.token_hex(8)}"
        status, _ = request(f"{service.url}{path}", None, {}, method="GET")
        assert status == 404
    time.sleep(1.5)
    after = series()
    assert after == before, after - before
    for _, key in after:
        assert not any(k in ("url.path", "url.full", "http.target", "url.query") for k, _ in key)


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zzzzzzzzzzzzzzzz-01"},
        {"traceparent": "00-" + "a" * 4000},
        {"traceparent": "ff-00000000000000000000000000000000-0000000000000000-01"},
        {"X-Request-ID": "r" * 5000},
        {"X-Request-ID": "bad id\twith tabs"},
        {"tracestate": "," * 3000, "baggage": "k=" + "v" * 6000},
    ],
)
def test_malformed_trace_and_request_id_headers_are_ignored(server, headers):
    service, receiver = server
    status, response = request(
        f"{service.url}/api/diagnose/", json.dumps(VALID).encode(), {"Content-Type": "application/json", **headers}
    )
    assert status in (200, 400, 431), response[:200]  # gunicorn may refuse an oversized header line
    if status == 200 and "traceparent" in headers:
        trace_id = headers["traceparent"][3:35]
        assert all(s.trace_id.hex() != trace_id for _, s in receiver.spans())
