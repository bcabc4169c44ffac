"""The example service under the real ``opentelemetry-instrument`` command, exporting
over OTLP/HTTP to a loopback receiver started by the test."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
import time
from collections import Counter
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToJson

from otel_hcv.receiver import OtlpReceiver, attributes
from tests.support.service import (
    ServiceProcess,
    free_port,
    instrumented_runserver,
    manage,
    post_json,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PSEUDONYM_KEY = "integration-test-pseudonym-key"
# Distinctive lab values: none of them may appear in any exported byte.
CANARY_LABS = {
    "age": 47, "sex": "m", "alb": 41.37, "alp": 63.19, "alt": 27.83, "ast": 29.91, "bil": 8.17,
    "che": 8.43, "chol": 5.29, "crea": 81.73, "ggt": 31.67, "prot": 72.11,
}  # fmt: skip
CATEGORIES = {"0=Blood Donor", "0s=suspect Blood Donor", "1=Hepatitis", "2=Fibrosis", "3=Cirrhosis"}


def otel_env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "HCV_PSEUDONYM_KEY": PSEUDONYM_KEY,
        # Named as a user with several distros installed would (tests/integration/test_competing_distro.py).
        "OTEL_PYTHON_DISTRO": "otel_hcv",
        **extra,
    }


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """A migrated SQLite database with a demo user; returns (path, token, user pk)."""
    path = tmp_path_factory.mktemp("db") / "hcv.sqlite3"
    env = service_env({}, database=path)
    manage(["migrate", "--noinput"], env)
    output = manage(["create_demo_user", "--username", "canary-clinician-7731", "--json"], env)
    created = json.loads(output)
    return path, created["token"], int(created["user_id"])


@pytest.fixture(scope="module")
def exported(database, tmp_path_factory):
    """Run the service once with every kind of request; return what was exported."""
    db_path, token, user_pk = database
    with OtlpReceiver() as receiver:
        port = free_port()
        log = tmp_path_factory.mktemp("logs") / "service.log"
        service = ServiceProcess(instrumented_runserver(port), service_env(otel_env(receiver), db_path), port, log)
        try:
            service.wait_ready()
            url = f"{service.url}/api/diagnose/"
            body = json.dumps(CANARY_LABS)
            responses = {
                "anonymous": post_json(url, body),
                "authenticated": post_json(url, body, {"Authorization": f"Token {token}"}),
                "invalid": post_json(url, json.dumps({**CANARY_LABS, "alb": "lots"})),
                "raising": post_json(url, body, {"X-HCV-Fail": "diagnosis"}),
            }
            received = receiver.wait_for(
                lambda: (
                    sum(1 for _, s in receiver.spans() if s.name == "hcv.diagnosis") >= 3
                    and any(True for _ in receiver.metric_points("hcv.api.requests"))
                )
            )
            time.sleep(1.5)  # one more metric export interval, so the counts are final
        finally:
            service.stop()
        assert received, f"nothing exported; service output:\n{service.output()}"
        yield receiver, responses, user_pk, service.output()


def test_responses(exported):
    _, responses, _, _ = exported
    assert responses["anonymous"][0] == 200
    assert json.loads(responses["anonymous"][1])["category"] in CATEGORIES
    assert responses["authenticated"][0] == 200
    assert responses["invalid"][0] == 400
    assert b"alb" in responses["invalid"][1]
    assert responses["raising"][0] == 500


def test_resource_is_ours(exported):
    receiver, *_ = exported
    resources = [resource for resource, _ in receiver.spans()]
    assert resources
    resource = resources[0]
    assert resource["service.name"] == "hcv-diagnosis"
    assert resource["deployment.environment.name"]
    assert resource["service.version"]
    assert re.fullmatch(r"[0-9a-f-]{36}", resource["service.instance.id"])


def server_spans(receiver):
    return [s for _, s in receiver.spans() if s.kind == 2 and attributes(s.attributes).get("http.route")]


def test_server_span_endpoint_and_pseudonymised_user(exported):
    receiver, _, user_pk, _ = exported
    spans = server_spans(receiver)
    diagnose = [s for s in spans if attributes(s.attributes)["http.route"] == "api/diagnose/"]
    assert len(diagnose) == 4
    expected = hmac.new(PSEUDONYM_KEY.encode(), str(user_pk).encode(), hashlib.sha256).hexdigest()[:32]
    users = [attributes(s.attributes).get("enduser.pseudo.id") for s in diagnose]
    assert users.count(expected) == 1, users
    assert users.count(None) == 3  # anonymous requests carry no user id
    for span in diagnose:
        attrs = attributes(span.attributes)
        assert attrs["http.request.method"] == "POST"
        assert attrs["hcv.endpoint"] == "hcv_diagnosis"
        assert "enduser.id" not in attrs
    statuses = sorted(attributes(s.attributes)["http.response.status_code"] for s in diagnose)
    assert statuses == [200, 200, 400, 500]


def test_diagnosis_span_is_a_child_with_its_result(exported):
    receiver, *_ = exported
    spans = [s for _, s in receiver.spans()]
    by_id = {s.span_id: s for s in spans}
    diagnosis = [s for s in spans if s.name == "hcv.diagnosis"]
    assert len(diagnosis) == 3  # the invalid request never reaches the model
    ok = [s for s in diagnosis if s.status.code != 2]
    failed = [s for s in diagnosis if s.status.code == 2]
    assert len(ok) == 2 and len(failed) == 1
    for span in ok:
        assert attributes(span.attributes)["hcv.diagnosis.category"] in CATEGORIES
        parent = by_id[span.parent_span_id]
        assert parent.kind == 2  # the server span: the view adds no span of its own
        assert attributes(parent.attributes)["hcv.endpoint"] == "hcv_diagnosis"
    assert [e.name for e in failed[0].events] == ["exception"]


def test_metric_points(exported):
    receiver, *_ = exported

    def latest_sums(name):
        # Cumulative points: the last export of each attribute set holds the total.
        latest = {}
        for _, point in receiver.metric_points(name):
            latest[tuple(sorted(attributes(point.attributes).items()))] = point
        return latest

    outcomes = Counter()
    for key, point in latest_sums("hcv.diagnosis.requests").items():
        outcomes[dict(key)["hcv.diagnosis.outcome"]] += point.as_int
    assert outcomes == {"success": 2, "failure": 1}
    histogram_count = sum(p.count for p in latest_sums("hcv.diagnosis.duration").values())
    assert histogram_count == 3
    api = Counter()
    for key, point in latest_sums("hcv.api.requests").items():
        attrs = dict(key)
        assert attrs["hcv.endpoint"] == "hcv_diagnosis"
        api[attrs["http.response.status_code"]] += point.as_int
    assert api == {200: 2, 400: 1, 500: 1}
    server_duration = latest_sums("http.server.request.duration")
    assert sum(p.count for p in server_duration.values()) >= 4


def test_no_lab_value_in_any_exported_byte(exported):
    receiver, *_ = exported
    everything = b"".join(receiver.raw)
    decoded = "".join(MessageToJson(message) for signal in receiver.requests.values() for message in signal)
    for name, value in CANARY_LABS.items():
        if isinstance(value, float):
            assert struct.pack("<d", value) not in everything, name
            assert repr(value) not in decoded, name
    assert "canary-clinician-7731" not in decoded


def test_log_records_exported_once_with_trace_context(exported):
    receiver, *_ = exported
    spans = {s.span_id: s for _, s in receiver.spans()}
    received = [r for _, r in receiver.log_records() if r.body.string_value == "Diagnosis request received"]
    assert len(received) == 4  # once per request: no second OTLP handler
    for record in received:
        attrs = attributes(record.attributes)
        assert record.span_id in spans and spans[record.span_id].trace_id == record.trace_id
        assert re.fullmatch(r"[0-9a-f]{32}", attrs["request_id"])
        assert attrs["endpoint"] == "hcv_diagnosis"
    for _, record in receiver.log_records():
        assert "request" not in attributes(record.attributes)  # Django's request/socket objects


def test_one_process_one_instance(exported):
    receiver, *_ = exported
    instances = {resource["service.instance.id"] for resource, _ in receiver.spans()}
    instances |= {r["service.instance.id"] for r, _ in receiver.metric_points("hcv.api.requests")}
    assert len(instances) == 1


def test_autoreloader_exports_from_exactly_one_process(database, tmp_path):
    db_path, _, _ = database
    with OtlpReceiver() as receiver:
        port = free_port()
        service = ServiceProcess(
            instrumented_runserver(port, noreload=False),
            service_env(otel_env(receiver), db_path),
            port,
            tmp_path / "reload.log",
        )
        try:
            service.wait_ready()
            for _ in range(3):
                assert post_json(f"{service.url}/api/diagnose/", json.dumps(CANARY_LABS))[0] == 200
            assert receiver.wait_for(lambda: sum(1 for _, s in receiver.spans() if s.name == "hcv.diagnosis") >= 3), (
                service.output()
            )
            time.sleep(2)  # both processes would have exported metrics by now
        finally:
            service.stop()
    diagnosis_spans = [s for _, s in receiver.spans() if s.name == "hcv.diagnosis"]
    assert len(diagnosis_spans) == 3  # no duplicates
    instances = {r["service.instance.id"] for r, _ in receiver.spans()}
    with receiver.lock:
        metric_requests = list(receiver.requests["metrics"])
    for request in metric_requests:
        for resource_metrics in request.resource_metrics:
            instances.add(attributes(resource_metrics.resource.attributes)["service.instance.id"])
    assert len(instances) == 1, instances
