"""The telemetry set up in this process: one place, read by everyone, written by one module.

The OpenTelemetry API's own pattern: the global state sits at the bottom, behind a setter.
:mod:`otel_hcv.bootstrap` (and :mod:`otel_hcv.testing`) call :func:`activate`; everything
else reads :func:`active` or :func:`current_settings`. Objects this package builds are
handed their settings instead; objects Django builds (middleware, views, formatters named in
``LOGGING``) and the public recording functions read them here.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_hcv import conf, lifecycle

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider


@dataclass
class Providers:
    tracer: TracerProvider
    meter: MeterProvider
    logger: LoggerProvider


@dataclass
class Telemetry:
    """What :func:`otel_hcv.configure` set up in this process."""

    settings: conf.Settings
    providers: Providers | None = None
    logging_handler: logging.Handler | None = None
    # Installed by otel_hcv.testing: in-memory providers, settings re-read at configure().
    for_tests: bool = False


@dataclass
class Launch:
    """How ``opentelemetry-instrument`` started this process, as the entry points saw it."""

    # Set by the distro or configurator: the app's ready() then finishes the setup. Without
    # it, only an explicit configure() exports, so management commands and plain test runs
    # send nothing anywhere.
    auto_instrumentation: bool = False
    # Which of this package's launcher entry points were loaded.
    distro_loaded: bool = False
    configurator_loaded: bool = False


launch = Launch()
_active: Telemetry | None = None


def active() -> Telemetry | None:
    """The telemetry set up in this process, or None."""
    # A forked child forgets its parent's setup (the reset below): no getpid() system call
    # here, which runs several times per request.
    return _active


def activate(telemetry: Telemetry | None) -> None:
    global _active
    _active = telemetry


def current_settings() -> conf.Settings:
    """The settings in force: those of the active setup, else loaded once from Django/env."""
    telemetry = _active
    return telemetry.settings if telemetry is not None else _default_settings()


@functools.cache
def _default_settings() -> conf.Settings:
    return conf.load()


@lifecycle.on_reset
def _forget_active() -> None:
    # The parent's providers and export threads do not serve a forked child.
    activate(None)
    _default_settings.cache_clear()


def reset_launch() -> None:
    """Forget how the process was launched (tests only: a real process is launched once)."""
    launch.auto_instrumentation = launch.distro_loaded = launch.configurator_loaded = False
