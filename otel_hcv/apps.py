from __future__ import annotations

from django.apps import AppConfig


class OtelHcvConfig(AppConfig):
    name = "otel_hcv"
    verbose_name = "OpenTelemetry for the HCV service"

    def ready(self) -> None:
        from django.core import checks

        from otel_hcv import bootstrap, conf, launcher, state

        checks.register(launcher.system_check)
        # Validate settings at start-up, so a wrong setting fails with its name now.
        settings = conf.load()
        launcher.report()  # another distro or configurator won: say so (once)
        if state.active() is None and not state.launch.auto_instrumentation:
            return  # neither opentelemetry-instrument nor configure(): nothing to set up
        # Under opentelemetry-instrument with DJANGO_SETTINGS_MODULE not yet exported,
        # the distro left setup to this point; otherwise this is a no-op. Providers first:
        # the Django instrumentation takes its tracer and instruments when instrumented,
        # and before the providers exist those are proxies, an indirection on every call.
        bootstrap.configure()
        # Before the server builds its middleware chain, whatever happened to providers
        # (a no-op when configure() instrumented Django already).
        bootstrap.instrument_django(settings)
        # Django's dictConfig(LOGGING) ran after configure() on the early path.
        bootstrap.attach_logging_handler()
