"""configure(), the distro and the configurator, each in a fresh interpreter: global
OpenTelemetry providers can be set only once per process."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_hcv.lifecycle import is_autoreload_watcher


def run_python(code: str, **env: str) -> dict:
    environ = {"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **env}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


SETUP_DJANGO = """
import django, json, os
from django.conf import settings
settings.configure(SECRET_KEY="k", INSTALLED_APPS=["otel_hcv"], OTEL_HCV={"SERVICE_NAME": "svc", "PSEUDONYM_KEY": "pk"})
django.setup()
"""


def test_configure_sets_resource_and_is_idempotent():
    result = run_python(
        SETUP_DJANGO
        + """
import otel_hcv
from opentelemetry import trace
first = otel_hcv.configure()
second = otel_hcv.configure()
resource = dict(trace.get_tracer_provider().resource.attributes)
print(json.dumps({"same": first is second, "resource": resource,
                  "protocol": os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"],
                  "semconv": os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"]}))
"""
    )
    assert result["same"] is True
    assert result["resource"]["service.name"] == "svc"
    assert result["resource"]["deployment.environment.name"] == "development"
    assert "service.instance.id" in result["resource"] and "service.version" in result["resource"]
    assert result["protocol"] == "http/protobuf"
    assert result["semconv"] == "http"


def test_standard_variables_keep_their_meaning():
    result = run_python(
        SETUP_DJANGO
        + """
import otel_hcv
from opentelemetry import trace
otel_hcv.configure()
provider = trace.get_tracer_provider()
print(json.dumps({"resource": dict(provider.resource.attributes),
                  "processors": len(provider._active_span_processor._span_processors)}))
""",
        OTEL_SERVICE_NAME="env-name",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=prod",
        OTEL_TRACES_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
    )
    assert result["resource"]["service.name"] == "env-name"
    assert result["resource"]["deployment.environment.name"] == "prod"
    assert result["processors"] == 0  # OTEL_TRACES_EXPORTER=none: no span exporter


def test_sdk_disabled_configures_nothing():
    result = run_python(
        SETUP_DJANGO
        + """
import otel_hcv
print(json.dumps({"telemetry": otel_hcv.configure() is None}))
""",
        OTEL_SDK_DISABLED="true",
    )
    assert result["telemetry"] is True


def test_wrong_setting_fails_at_start_up_naming_it():
    code = """
import django
from django.conf import settings
settings.configure(SECRET_KEY="k", INSTALLED_APPS=["otel_hcv"], OTEL_HCV={"SERVCE_NAME": "x"})
django.setup()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "OTEL_HCV['SERVCE_NAME'] is not a known setting" in result.stderr


@pytest.mark.parametrize(
    ("argv", "run_main", "watcher"),
    [
        (["manage.py", "runserver"], None, True),
        (["manage.py", "runserver"], "true", False),
        (["manage.py", "runserver", "--noreload"], None, False),
        (["manage.py", "migrate"], None, False),
        (["gunicorn", "hcv_service.wsgi"], None, False),
    ],
)
def test_autoreload_watcher_detection(argv, run_main, watcher):
    environ = {} if run_main is None else {"RUN_MAIN": run_main}
    assert is_autoreload_watcher(argv, environ) is watcher


def test_another_configurator_first_is_reported_not_overridden():
    setup_without_our_app = SETUP_DJANGO.replace('INSTALLED_APPS=["otel_hcv"]', "INSTALLED_APPS=[]")
    result = run_python(
        setup_without_our_app
        + """
import logging, io
stream = io.StringIO()
logging.getLogger("otel_hcv").addHandler(logging.StreamHandler(stream))
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
import otel_hcv
print(json.dumps({"telemetry": otel_hcv.configure() is None, "log": stream.getvalue()}))
"""
    )
    assert result["telemetry"] is True
    assert "OTEL_PYTHON_DISTRO=otel_hcv" in result["log"] and "OTEL_PYTHON_CONFIGURATOR=otel_hcv" in result["log"]
    assert result["log"].count("otel-hcv:") == 1


@pytest.mark.parametrize(
    ("argv", "parent", "master"),
    [
        (["/venv/bin/gunicorn", "app.wsgi"], ["/usr/bin/python3", "-m", "pytest"], True),
        (["/venv/lib/python3.11/site-packages/gunicorn/__main__.py", "app.wsgi"], ["bash"], True),
        (["/venv/bin/gunicorn", "app.wsgi"], ["/venv/bin/python", "/venv/bin/gunicorn", "app.wsgi"], False),
        (["/venv/bin/gunicorn", "app.wsgi"], ["/venv/bin/python", "-m", "gunicorn", "app.wsgi"], False),
        (["/venv/bin/gunicorn", "app.wsgi"], ["gunicorn: master [app.wsgi]"], False),
        (["manage.py", "runserver"], ["bash"], False),
    ],
)
def test_prefork_master_detection(monkeypatch, argv, parent, master):
    import psutil

    from otel_hcv import lifecycle

    class Parent:
        def cmdline(self):
            return parent

    monkeypatch.setattr(psutil, "Process", lambda pid: Parent())
    assert lifecycle.is_prefork_master(argv) is master


@pytest.mark.parametrize(("correlation", "injected"), [(None, False), ("true", True)])
def test_logging_instrumentation_loads_only_for_log_correlation(correlation, injected):
    # Its record factory costs every log record; our formatter and handler read the context.
    env = {"OTEL_PYTHON_DISTRO": "otel_hcv", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    if correlation:
        env["OTEL_PYTHON_LOG_CORRELATION"] = correlation
    result = run_python(
        """
import json, logging
from opentelemetry.instrumentation.auto_instrumentation import initialize
initialize()
record = logging.getLogRecordFactory()("n", logging.INFO, "p", 1, "m", None, None)
print(json.dumps({"injected": hasattr(record, "otelTraceID"),
                  "factory_replaced": logging.getLogRecordFactory() is not logging.LogRecord}))
""",
        **env,
    )
    assert result == {"injected": injected, "factory_replaced": injected}


def test_django_is_instrumented_with_the_real_providers_when_setup_waits_for_ready(tmp_path):
    # manage.py / wsgi.py export DJANGO_SETTINGS_MODULE after the launcher ran: setup happens in
    # the app's ready(), and the instrumentation must get the SDK's tracer, not a proxy.
    example = Path(__file__).resolve().parents[2] / "example"
    result = run_python(
        """
import json, os
from opentelemetry.instrumentation.auto_instrumentation import initialize
initialize()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hcv_service.settings")
from django.core.wsgi import get_wsgi_application
get_wsgi_application()
from opentelemetry.instrumentation.django.middleware.otel_middleware import _DjangoMiddleware
print(json.dumps({"tracer": type(_DjangoMiddleware._tracer).__name__,
                  "counter": type(_DjangoMiddleware._active_request_counter).__name__}))
""",
        OTEL_PYTHON_DISTRO="otel_hcv",
        PYTHONPATH=str(example),
        HCV_SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        HCV_PSEUDONYM_KEY="unit-test-pseudonym-key",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    assert result == {"tracer": "Tracer", "counter": "_UpDownCounter"}
