"""The environment variables that settings.py reads, checked on fresh copies of the module."""

import runpy
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

import hcv_service

SETTINGS_FILE = Path(hcv_service.__file__).with_name("settings.py")

ENVIRONMENT_VARIABLES = (
    "HCV_SECRET_KEY",
    "HCV_DEBUG",
    "HCV_ALLOWED_HOSTS",
    "HCV_DATABASE_URL",
    "HCV_DATABASE_CONN_MAX_AGE",
    "HCV_SQLITE_PATH",
    "HCV_REDIS_URL",
    "HCV_ALLOW_FAILURE_INJECTION",
    "HCV_STORE_DIAGNOSES",
)


@pytest.fixture
def load_settings(monkeypatch):
    """Execute settings.py with the given environment, without touching the loaded settings."""

    def load(**environment: str) -> dict[str, Any]:
        for name in ENVIRONMENT_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS_FILE), run_name="settings_under_test")

    return load


def test_defaults(load_settings):
    settings = load_settings()
    assert settings["DEBUG"] is False
    assert settings["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert str(settings["DATABASES"]["default"]["NAME"]).endswith("example/db.sqlite3")
    assert settings["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert settings["HCV_ALLOW_FAILURE_INJECTION"] is False
    assert settings["HCV_STORE_DIAGNOSES"] is True
    assert settings["MIDDLEWARE"][1] == "otel_hcv.middleware.RequestContextMiddleware"
    assert settings["OTEL_HCV"]["HEALTH_MODEL_PROBE"] == "diagnosis.model.health_probe"


def test_postgres_from_url(load_settings):
    settings = load_settings(
        HCV_DATABASE_URL="postgres://hcv:p%40ss%2Fword@db.internal:6432/hcv?sslmode=require"
    )
    assert settings["DATABASES"]["default"] | {"CONN_MAX_AGE": None} == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "hcv",
        "USER": "hcv",
        "PASSWORD": "p@ss/word",
        "HOST": "db.internal",
        "PORT": "6432",
        "OPTIONS": {"sslmode": "require"},
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
    }
    assert settings["DATABASES"]["default"]["CONN_MAX_AGE"] == 60


def test_postgres_connection_age_can_be_set(load_settings):
    settings = load_settings(HCV_DATABASE_URL="postgresql://hcv@localhost/hcv", HCV_DATABASE_CONN_MAX_AGE="0")
    assert settings["DATABASES"]["default"]["CONN_MAX_AGE"] == 0
    assert settings["DATABASES"]["default"]["PORT"] == ""


@pytest.mark.parametrize(
    "url",
    [
        "mysql://hcv:topsecret@localhost/hcv",
        "postgres://hcv:topsecret@localhost:5432/",
        "postgres://hcv:topsecret@localhost:port/hcv",
    ],
)
def test_bad_database_url_fails_without_showing_the_password(load_settings, url):
    with pytest.raises(ImproperlyConfigured) as raised:
        load_settings(HCV_DATABASE_URL=url)
    assert "topsecret" not in str(raised.value)
    assert "HCV_DATABASE_URL" in str(raised.value)


def test_sqlite_path_can_be_set(load_settings, tmp_path):
    settings = load_settings(HCV_SQLITE_PATH=str(tmp_path / "other.sqlite3"))
    assert settings["DATABASES"]["default"]["NAME"] == str(tmp_path / "other.sqlite3")


def test_redis_cache_from_url(load_settings):
    settings = load_settings(HCV_REDIS_URL="redis://localhost:6379/1")
    assert settings["CACHES"]["default"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://localhost:6379/1",
    }


def test_flags_and_hosts(load_settings):
    settings = load_settings(
        HCV_DEBUG="yes",
        HCV_ALLOW_FAILURE_INJECTION="1",
        HCV_STORE_DIAGNOSES="off",
        HCV_ALLOWED_HOSTS="hcv.example.org, api.example.org",
    )
    assert settings["DEBUG"] is True
    assert settings["HCV_ALLOW_FAILURE_INJECTION"] is True
    assert settings["HCV_STORE_DIAGNOSES"] is False
    assert settings["ALLOWED_HOSTS"][-2:] == ["hcv.example.org", "api.example.org"]


def test_misspelt_flag_fails_loudly(load_settings):
    with pytest.raises(ImproperlyConfigured, match="HCV_ALLOW_FAILURE_INJECTION"):
        load_settings(HCV_ALLOW_FAILURE_INJECTION="enabled")
