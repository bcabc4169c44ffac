"""/health/, /health/live and /health/ready through Django's test client (tests.testapp)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

from otel_hcv import bootstrap, state
from otel_hcv.health import runner as runner_module
from otel_hcv.health.checks import BaseCheck, CheckResult
from otel_hcv.health.runner import HealthRunner

TOKEN = "health-token-for-unit-tests"
FAKE_PASSWORD = "hunter2-fake-password-55"
FAKE_HOST = "db-primary.internal.example"
FAKE_DSN = f"postgres://hcv:{FAKE_PASSWORD}@{FAKE_HOST}:5432/hcv"


class FixedCheck(BaseCheck):
    def __init__(self, name: str, healthy: bool = True, *, critical: bool = True, error: Exception | None = None):
        self.name = name
        self.healthy = healthy
        self.critical = critical
        self.error = error
        self.runs = 0
        self._lock = threading.Lock()

    def run(self) -> CheckResult:
        with self._lock:
            self.runs += 1
        if self.error is not None:
            raise self.error
        if self.healthy:
            return CheckResult.ok(f"{self.name} answered", latency_seconds=0.001)
        return CheckResult.failing(f"{self.name} unreachable", error=ConnectionError(FAKE_DSN))


@pytest.fixture
def use_checks() -> Iterator:
    """Serve the endpoints from a runner with the given checks; settings re-read from OTEL_HCV."""
    previous = runner_module.get_runner()

    def install(*checks: BaseCheck) -> HealthRunner:
        runner = HealthRunner(list(checks))
        runner_module.set_runner(runner)
        return runner

    yield install
    runner_module.set_runner(previous)


@pytest.fixture
def health_token(settings) -> Iterator[str]:
    settings.OTEL_HCV = {**settings.OTEL_HCV, "HEALTH_TOKEN": TOKEN}
    bootstrap.configure()  # the test setup re-reads settings here
    yield TOKEN
    settings.OTEL_HCV = {k: v for k, v in settings.OTEL_HCV.items() if k != "HEALTH_TOKEN"}
    bootstrap.configure()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_all_healthy_keeps_the_plans_shape(client, use_checks):
    use_checks(FixedCheck("database"), FixedCheck("cache"))
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "timestamp", "checks"}
    assert body["status"] == "healthy"
    assert isinstance(body["timestamp"], float)
    assert body["checks"] == {
        "database": {"healthy": True, "message": "ok"},
        "cache": {"healthy": True, "message": "ok"},
    }
    assert "no-store" in response["Cache-Control"]


def test_a_failing_check_gives_503_with_a_generic_message(client, use_checks):
    use_checks(FixedCheck("database"), FixedCheck("cache", healthy=False))
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["cache"] == {"healthy": False, "message": "failing"}


def test_ready_consults_critical_checks_only(client, use_checks):
    use_checks(
        FixedCheck("database"), FixedCheck("disk_space", healthy=False), FixedCheck("extra", False, critical=False)
    )
    assert client.get("/health/").status_code == 503  # the full picture includes them
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert list(ready.json()["checks"]) == ["database"]  # "disk_space" is non-critical by default
    assert client.get("/health/ready/").status_code == 200


def test_ready_fails_with_a_critical_check(client, use_checks):
    use_checks(FixedCheck("database", healthy=False), FixedCheck("disk_space"))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": {"healthy": False, "message": "failing"}}


class ExplodingRunner:
    def report(self):
        raise AssertionError("liveness must not run a check")

    latest = None


def test_live_touches_no_dependency(client):
    previous = runner_module.set_runner(ExplodingRunner())  # type: ignore[arg-type]
    try:
        for path in ("/health/live", "/health/live/"):
            response = client.get(path)
            assert response.status_code == 200
            assert response.json()["status"] == "healthy"
    finally:
        runner_module.set_runner(previous)


def test_the_token_shows_messages_details_and_durations(client, use_checks, health_token):
    use_checks(FixedCheck("database"), FixedCheck("cache", healthy=False), FixedCheck("disk_space"))
    response = client.get("/health/", headers=bearer(health_token))
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["message"] == "database answered"
    assert checks["database"]["details"] == {"latency_seconds": 0.001}
    assert checks["database"]["critical"] is True and checks["disk_space"]["critical"] is False
    assert checks["database"]["duration_seconds"] >= 0
    assert checks["cache"] == {
        "healthy": False,
        "message": "cache unreachable",
        "critical": True,
        "duration_seconds": checks["cache"]["duration_seconds"],
        "details": {"error.type": "ConnectionError"},
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token"),
        bearer(TOKEN[:-1]),
        bearer(""),
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
def test_anything_but_the_token_is_anonymous(client, use_checks, health_token, headers):
    use_checks(FixedCheck("database"))
    checks = client.get("/health/", headers=headers).json()["checks"]
    assert checks == {"database": {"healthy": True, "message": "ok"}}


def test_without_a_configured_token_no_bearer_is_accepted(client, use_checks):
    use_checks(FixedCheck("database"))
    assert state.current_settings().health_token == ""
    checks = client.get("/health/", headers=bearer("")).json()["checks"]
    assert checks == {"database": {"healthy": True, "message": "ok"}}


@pytest.mark.django_db
def test_staff_users_are_authorised_others_are_not(client, use_checks):
    use_checks(FixedCheck("database"))
    client.force_login(User.objects.create_user("clinician", password="pw"))
    assert client.get("/health/").json()["checks"]["database"]["message"] == "ok"
    client.force_login(User.objects.create_user("operator", password="pw", is_staff=True))
    assert client.get("/health/").json()["checks"]["database"]["message"] == "database answered"


@pytest.mark.django_db
def test_no_secret_ever_reaches_a_caller_or_the_logs(client, use_checks, health_token, caplog):
    error = RuntimeError(f"could not connect to {FAKE_DSN} (host {FAKE_HOST}, password {FAKE_PASSWORD})")
    use_checks(FixedCheck("database", error=error), FixedCheck("cache", healthy=False))
    client.force_login(User.objects.create_user("operator", password="pw", is_staff=True))
    with caplog.at_level(logging.DEBUG):
        responses = [
            Client().get("/health/"),
            Client().get("/health/ready"),
            Client().get("/health/", headers=bearer(health_token)),
            client.get("/health/"),
        ]
    for response in responses:
        assert response.status_code == 503
        text = response.content.decode()
        for secret in (FAKE_PASSWORD, FAKE_HOST, FAKE_DSN, "hunter2"):
            assert secret not in text
    authorised = responses[2].json()["checks"]["database"]
    assert authorised["message"] == "check raised RuntimeError"
    assert authorised["details"] == {"error.type": "RuntimeError"}
    for secret in (FAKE_PASSWORD, FAKE_HOST):
        assert secret not in caplog.text


def test_only_safe_methods(client, use_checks):
    use_checks(FixedCheck("database"))
    assert client.head("/health/").status_code == 200
    assert client.post("/health/").status_code == 405
    assert client.post("/health/ready").status_code == 405


def test_results_are_cached_between_requests(client, use_checks):
    database = FixedCheck("database")
    use_checks(database)
    first = client.get("/health/").json()
    second = client.get("/health/").json()
    assert first["timestamp"] == second["timestamp"]
    assert database.runs == 1


def test_200_concurrent_requests_run_each_check_once(use_checks):
    checks = [FixedCheck("database"), FixedCheck("cache"), FixedCheck("ai_model")]
    runner = use_checks(*checks)
    barrier = threading.Barrier(200)
    statuses: list[int] = []

    def request() -> None:
        client = Client()
        barrier.wait()
        statuses.append(client.get("/health/").status_code)

    threads = [threading.Thread(target=request) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 200
    assert [check.runs for check in checks] == [1, 1, 1]
    assert runner.started_runs == {"database": 1, "cache": 1, "ai_model": 1}


@pytest.mark.django_db(transaction=True)
def test_the_default_checks_of_the_test_project_pass(client):
    previous = runner_module.set_runner(HealthRunner())
    try:
        response = client.get("/health/", headers={})
        body = json.loads(response.content)
        assert set(body["checks"]) == {"database", "cache", "disk_space", "memory"}
        assert body["checks"]["database"]["healthy"] and body["checks"]["cache"]["healthy"]
    finally:
        runner_module.set_runner(previous)


def test_a_503_is_not_logged_as_a_server_error_per_request(client, use_checks, caplog):
    use_checks(FixedCheck("cache", healthy=False))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert client.get("/health/").status_code == 503
    assert not [r for r in caplog.records if r.name == "django.request"]
    # The runner said it once, when the check started failing.
    assert [r.getMessage() for r in caplog.records if r.name == "otel_hcv.health.runner"] == [
        "health check cache is failing: cache unreachable (ConnectionError)"
    ]


@pytest.mark.parametrize("path", ["/metrics/", "/health/live"])
def test_metrics_summary_is_cached_like_the_health_endpoints(client, path):
    health = client.get("/health/")
    answer = client.get(path)
    assert answer.status_code == 200
    for header in ("Cache-Control", "Expires"):
        assert answer[header].split(",") if header == "Cache-Control" else answer[header]
    assert sorted(answer["Cache-Control"].split(", ")) == sorted(health["Cache-Control"].split(", "))
    assert "no-store" in answer["Cache-Control"]
    assert client.head(path).status_code == 200
    assert client.post(path).status_code == 405
