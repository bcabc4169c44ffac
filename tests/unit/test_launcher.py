"""What otel-hcv says when opentelemetry-instrument set the process up without it, and the
development server's metric interval."""

from __future__ import annotations

import logging
import sys

import pytest

from otel_hcv import bootstrap, launcher, lifecycle, state

LOAD_MODULE = "opentelemetry.instrumentation.auto_instrumentation._load"


@pytest.fixture
def launched(monkeypatch):
    """This process as if opentelemetry-instrument had started it; nothing reported yet."""
    monkeypatch.setitem(sys.modules, LOAD_MODULE, sys.modules.get(LOAD_MODULE) or object())
    lifecycle.forget(launcher.REPORT_ONCE)
    monkeypatch.delenv(launcher.REPORTED_VARIABLE, raising=False)
    monkeypatch.setattr(state.launch, "distro_loaded", True)
    monkeypatch.setattr(state.launch, "configurator_loaded", True)


@pytest.mark.parametrize(
    ("distro", "configurator", "expected"),
    [
        (True, True, None),
        (False, True, "another distro"),
        (False, False, "another distro"),
        (True, False, "another configurator"),
    ],
)
def test_problem_names_what_won(launched, monkeypatch, distro, configurator, expected):
    monkeypatch.setattr(state.launch, "distro_loaded", distro)
    monkeypatch.setattr(state.launch, "configurator_loaded", configurator)
    problem = launcher.problem()
    if expected is None:
        assert problem is None and launcher.system_check() == []
    else:
        assert expected in problem
        (warning,) = launcher.system_check()
        assert warning.id == "otel_hcv.W001" and "OTEL_PYTHON_DISTRO=otel_hcv" in warning.hint


def test_nothing_to_say_without_the_launcher(monkeypatch):
    monkeypatch.delitem(sys.modules, LOAD_MODULE, raising=False)
    monkeypatch.setattr(state.launch, "distro_loaded", False)
    assert launcher.problem() is None


def test_reported_once_per_process_tree(launched, monkeypatch, caplog):
    monkeypatch.setattr(state.launch, "distro_loaded", False)
    caplog.set_level(logging.ERROR, logger="otel_hcv")
    assert launcher.report() is True
    assert launcher.report() is False
    launcher.check_at_launch()
    (record,) = caplog.records
    assert "OTEL_PYTHON_DISTRO=otel_hcv" in record.getMessage()
    # A child process inherits the marker and stays quiet.
    lifecycle.forget(launcher.REPORT_ONCE)
    assert launcher.report() is False


@pytest.mark.parametrize(
    ("argv", "interval"),
    [
        (["manage.py", "runserver"], "5000"),
        (["manage.py", "runserver", "0:8000"], "5000"),
        (["manage.py", "runserver_plus"], "5000"),
        (["/venv/bin/gunicorn", "app.wsgi"], None),
        (["manage.py", "migrate"], None),
        (["manage.py", "shell", "-c", "runserver"], None),
    ],
)
def test_development_server_exports_metrics_every_five_seconds(argv, interval):
    environ: dict[str, str] = {}
    bootstrap.apply_otel_env_defaults(environ, argv)
    assert environ.get("OTEL_METRIC_EXPORT_INTERVAL") == interval
    explicit = {"OTEL_METRIC_EXPORT_INTERVAL": "60000"}
    bootstrap.apply_otel_env_defaults(explicit, argv)
    assert explicit["OTEL_METRIC_EXPORT_INTERVAL"] == "60000"  # the standard variable wins


def test_export_summary_says_where_and_how_often():
    line = bootstrap.export_summary(
        state.current_settings(),
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_METRIC_EXPORT_INTERVAL": "5000"},
    )
    assert "http://collector:4318" in line and "metrics every 5 s" in line
