"""The Sentry bridge: errors land in Sentry linked to the OpenTelemetry trace."""

from __future__ import annotations

from otel_hcv.conf import Settings


def setup(settings: Settings) -> None:
    """Initialise sentry-sdk when a DSN is configured (not yet implemented)."""
