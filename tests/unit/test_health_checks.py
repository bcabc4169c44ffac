"""The built-in health checks, the registration API and the check list built from settings."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.db.utils import ConnectionHandler

from otel_hcv import conf
from otel_hcv.health import checks, registry
from otel_hcv.health.checks import (
    AiModelCheck,
    BaseCheck,
    CacheCheck,
    CheckResult,
    DatabaseCheck,
    DiskCheck,
    MemoryCheck,
    default_checks,
)

REPO = Path(__file__).resolve().parents[2]
FAKE_PASSWORD = "hunter2-fake-password-71"


def sqlite_handler(path: Path) -> ConnectionHandler:
    return ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


# -- database ---------------------------------------------------------------------------


def test_database_check_round_trip_and_closes_its_connection(tmp_path, django_db_blocker):
    handler = sqlite_handler(tmp_path / "health.sqlite3")
    with django_db_blocker.unblock():
        result = DatabaseCheck("default", connections=handler).run()
    assert result == CheckResult(True, "database answered", {"alias": "default", "vendor": "sqlite"})
    assert handler["default"].connection is None


def test_database_check_unreachable_reports_a_fixed_message_and_the_type_only(django_db_blocker):
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": str(closed_port()),
                "NAME": "hcv",
                "USER": "health-user",
                "PASSWORD": FAKE_PASSWORD,
            }
        }
    )
    with django_db_blocker.unblock():
        result = DatabaseCheck("default", connections=handler).run()
    assert not result.healthy
    assert result.message == "database unreachable"
    assert result.details == {"alias": "default", "vendor": "postgresql", "error.type": "OperationalError"}
    assert FAKE_PASSWORD not in repr(result) and "127.0.0.1" not in repr(result)


def test_database_check_names_follow_the_alias():
    assert DatabaseCheck("default").name == "database"
    assert DatabaseCheck("replica").name == "database.replica"
    assert CacheCheck("default").name == "cache"
    assert CacheCheck("sessions").name == "cache.sessions"


class FakeCursor:
    def __init__(self, row):
        self.row = row

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql):
        if self.row is Exception:
            from django.db import DatabaseError

            raise DatabaseError(f"relation missing; password={FAKE_PASSWORD}")

    def fetchone(self):
        return self.row


class FakeConnection:
    vendor = "fake"
    features = SimpleNamespace(bare_select_suffix="")

    def __init__(self, row):
        self.row = row
        self.closed = False

    def ensure_connection(self):
        pass

    def cursor(self):
        return FakeCursor(self.row)

    def close(self):
        self.closed = True


@pytest.mark.parametrize(
    ("row", "message"),
    [((2,), "database returned an unexpected result"), (Exception, "database query failed")],
)
def test_database_check_wrong_answer_or_failed_query(row, message):
    connection = FakeConnection(row)
    result = DatabaseCheck("default", connections={"default": connection}).run()
    assert (result.healthy, result.message) == (False, message)
    assert FAKE_PASSWORD not in repr(result)
    assert connection.closed


# -- cache ------------------------------------------------------------------------------


def test_cache_check_sets_gets_and_deletes_a_unique_key():
    cache = LocMemCache("health-test", {})
    result = CacheCheck("default", caches={"default": cache}).run()
    assert result == CheckResult(True, "cache answered", {"alias": "default", "backend": "LocMemCache"})
    assert not cache._cache  # the key is gone


class ForgetfulCache(LocMemCache):
    def get(self, key, default=None, version=None):
        return "someone else's value"


class BrokenCache(LocMemCache):
    def set(self, *args, **kwargs):
        raise ConnectionError(f"Error 111 connecting to redis.internal.example:6379 password={FAKE_PASSWORD}")


def test_cache_check_wrong_value():
    result = CacheCheck("default", caches={"default": ForgetfulCache("x", {})}).run()
    assert (result.healthy, result.message) == (False, "cache returned a wrong value")


def test_cache_check_unavailable_reveals_the_type_only():
    result = CacheCheck("default", caches={"default": BrokenCache("x", {})}).run()
    assert (result.healthy, result.message) == (False, "cache unavailable")
    assert result.details["error.type"] == "ConnectionError"
    assert FAKE_PASSWORD not in repr(result) and "redis.internal" not in repr(result)


def test_dummy_cache_is_healthy_on_purpose():
    from django.core.cache.backends.dummy import DummyCache

    result = CacheCheck("default", caches={"default": DummyCache("x", {})}).run()
    assert result.healthy and result.message == "dummy cache, nothing to check"


def test_cache_check_uses_djangos_caches_by_default():
    assert CacheCheck("default").run().healthy
    assert caches["default"].get("otel_hcv:health:anything") is None


# -- disk and memory --------------------------------------------------------------------


def test_disk_check_reports_figures_per_path(tmp_path):
    result = DiskCheck(["/", str(tmp_path)], min_free_bytes=1, min_free_percent=0.001).run()
    assert result.healthy and result.message == "enough disk space"
    usage = psutil.disk_usage("/")
    figures = result.details[checks.DISK_PATHS]["/"]
    assert figures[checks.TOTAL_BYTES] == usage.total
    assert abs(figures[checks.FREE_BYTES] - usage.free) < 512 * 1024**2  # other writers exist
    assert figures[checks.FREE_PERCENT] == pytest.approx(100 - figures[checks.UTILIZATION] * 100, abs=0.01)
    assert set(result.details[checks.DISK_PATHS]) == {"/", str(tmp_path)}


def test_disk_check_fails_below_the_byte_threshold():
    result = DiskCheck(["/"], min_free_bytes=2**62, min_free_percent=0.001).run()
    assert (result.healthy, result.message) == (False, "low disk space")


def test_disk_check_fails_below_the_percent_threshold():
    result = DiskCheck(["/"], min_free_bytes=1, min_free_percent=100.0).run()
    assert (result.healthy, result.message) == (False, "low disk space")


def test_disk_check_missing_path(tmp_path):
    result = DiskCheck([str(tmp_path / "not-there")], min_free_bytes=1).run()
    assert (result.healthy, result.message) == (False, "disk path not found")


def test_memory_check_reports_system_and_process_memory():
    result = MemoryCheck(max_percent=100.0).run()
    assert result.healthy and result.message == "memory usage normal"
    assert 0 < result.details[checks.SYSTEM_MEMORY_UTILIZATION] < 1
    rss = psutil.Process().memory_info().rss
    assert result.details[checks.PROCESS_MEMORY_BYTES] == pytest.approx(rss, rel=0.5)


def test_memory_check_fails_above_the_threshold():
    result = MemoryCheck(max_percent=0.001).run()
    assert (result.healthy, result.message) == (False, "high memory usage")


# -- the AI model -----------------------------------------------------------------------


class ModelHealthError(Exception):
    pass


def wrong_probe():
    raise ModelHealthError("model classified age=61 alt=88.1 as 3=Cirrhosis")


def test_model_check_reports_category_probability_and_latency():
    prediction = SimpleNamespace(category="0=Blood Donor", probability=0.97)
    result = AiModelCheck(lambda: prediction).run()
    assert result.healthy and result.message == "model answered"
    assert result.details["category"] == "0=Blood Donor"
    assert result.details["probability"] == 0.97
    assert 0 <= result.details["latency_seconds"] < 1


def test_model_check_wrong_answer_reveals_the_type_only():
    result = AiModelCheck(wrong_probe).run()
    assert (result.healthy, result.message) == (False, "model gave a wrong answer or failed")
    assert result.details["error.type"] == "ModelHealthError"
    assert "88.1" not in repr(result)


def test_model_check_no_prediction():
    assert AiModelCheck(lambda: None).run().message == "model gave no prediction"


def test_model_check_probe_that_cannot_be_imported():
    result = AiModelCheck("no_such_module_hcv.probe").run()
    assert (result.healthy, result.message) == (False, "model probe could not be imported")


def test_model_check_asks_the_example_model_for_a_real_prediction(monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(str(REPO / "example"))
    result = AiModelCheck("diagnosis.model.health_probe").run()
    assert result.healthy, result
    assert result.details["category"] == "0=Blood Donor"
    for name in [name for name in sys.modules if name == "diagnosis" or name.startswith("diagnosis.")]:
        del sys.modules[name]


# -- the check list ---------------------------------------------------------------------


def names(check_list):
    return [check.name for check in check_list]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_default_checks_follow_djangos_settings(settings):
    settings.DATABASES = {**settings.DATABASES, "replica": dict(settings.DATABASES["default"])}
    settings.CACHES = {**settings.CACHES, "sessions": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert names(default_checks(conf.Settings())) == [
        "database", "database.replica", "cache", "cache.sessions", "disk_space", "memory",
    ]  # fmt: skip
    with_model = default_checks(conf.Settings(health_model_probe="diagnosis.model.health_probe"))
    assert names(with_model)[-1] == "ai_model"
    disk = next(c for c in with_model if c.name == "disk_space")
    assert disk.paths == ("/",) and disk.min_free_bytes == 1024**3


class SettingsCheck(BaseCheck):
    name = "settings_check"

    def run(self):
        return CheckResult.ok()


settings_check_instance = SettingsCheck()
settings_check_instance.name = "settings_instance"


def payments_reachable():
    return True


class ReplacementDatabaseCheck(BaseCheck):
    name = "database"

    def run(self):
        return CheckResult.ok("replaced")


def test_health_checks_setting_accepts_classes_instances_and_functions():
    settings = conf.Settings(
        health_checks=(
            f"{__name__}.SettingsCheck",
            f"{__name__}.settings_check_instance",
            f"{__name__}.payments_reachable",
            f"{__name__}.ReplacementDatabaseCheck",
        )
    )
    built = {check.name: check for check in registry.configured_checks(settings)}
    assert {"settings_check", "settings_instance", "payments_reachable"} <= set(built)
    assert isinstance(built["database"], ReplacementDatabaseCheck)  # replaces the built-in
    assert built["payments_reachable"].run() == CheckResult.ok()


def test_health_checks_setting_with_a_bad_path_names_it():
    with pytest.raises(conf.ConfigurationError, match="no_such_module_hcv"):
        registry.configured_checks(conf.Settings(health_checks=("no_such_module_hcv.Check",)))
    with pytest.raises(conf.ConfigurationError, match="is not a check"):
        registry.configured_checks(conf.Settings(health_checks=(f"{__name__}.FAKE_PASSWORD",)))


def test_register_a_check_a_function_and_a_decorated_function():
    check = SettingsCheck()
    check.name = "registered_check"
    try:
        assert registry.register(check, critical=False) is check and not check.critical
        function_check = registry.register(payments_reachable, name="payments", timeout=0.5)
        assert (function_check.name, function_check.critical, function_check.timeout) == ("payments", True, 0.5)

        @registry.register(critical=False)
        def queue_depth_ok() -> CheckResult:
            return CheckResult.failing("queue too deep", depth=1200)

        built = {c.name: c for c in registry.configured_checks(conf.Settings())}
        assert {"registered_check", "payments", "queue_depth_ok"} <= set(built)
        assert built["queue_depth_ok"].run().message == "queue too deep"
    finally:
        for name in ("registered_check", "payments", "queue_depth_ok"):
            registry.unregister(name)
    assert "payments" not in names(registry.configured_checks(conf.Settings()))


@pytest.mark.parametrize("bad_name", ["", "has space", "x" * 65, "ünïcode", "a/b"])
def test_register_rejects_names_unfit_for_a_metric_attribute(bad_name):
    with pytest.raises(conf.ConfigurationError, match="name"):
        registry.register(payments_reachable, name=bad_name)
    assert bad_name not in registry.registered()


def test_register_rejects_what_is_not_a_check():
    with pytest.raises(conf.ConfigurationError):
        registry.register(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "non_critical", "critical"),
    [
        ("disk_space", ("disk_space", "memory"), False),
        ("database", ("disk_space", "memory"), True),
        ("disk_space", ("disk",), False),  # the name of earlier releases still counts
        ("cache.sessions", ("cache",), False),
        ("cache_warmer", ("cache",), True),  # a prefix only counts up to a dot
    ],
)
def test_is_critical(name, non_critical, critical):
    check = SettingsCheck()
    check.name = name
    assert registry.is_critical(check, conf.Settings(health_non_critical=non_critical)) is critical


def test_a_check_that_calls_itself_non_critical_stays_so():
    check = SettingsCheck()
    check.critical = False
    assert registry.is_critical(check, conf.Settings(health_non_critical=())) is False


@pytest.mark.parametrize("entry", ["NoDots", "myapp.", "my app.Check", "1app.Check", "myapp..Check"])
def test_the_health_checks_setting_takes_dotted_paths_only(entry):
    with pytest.raises(conf.ConfigurationError, match="HCV_HEALTH_CHECKS entries must be dotted paths"):
        conf.load(environ={"HCV_HEALTH_CHECKS": entry})


def test_the_health_checks_setting_from_the_environment():
    loaded = conf.load(environ={"HCV_HEALTH_CHECKS": "myapp.health.PaymentsCheck, myapp.ledger_ok"})
    assert loaded.health_checks == ("myapp.health.PaymentsCheck", "myapp.ledger_ok")
