from __future__ import annotations

import pytest

from otel_hcv import bootstrap


@pytest.fixture
def upstream_server(settings):
    """The server span and HTTP metrics made by upstream's Django middleware for one test."""
    default = settings.OTEL_HCV
    settings.OTEL_HCV = {**default, "SERVER_MIDDLEWARE": "upstream"}
    bootstrap.configure()  # the test setup re-reads settings and re-arranges MIDDLEWARE here
    yield
    settings.OTEL_HCV = default
    bootstrap.configure()
