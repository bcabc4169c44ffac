"""Fixtures for the example service's tests.

These tests use the example's own settings (``hcv_service.settings``, found through
``tests/example/pytest.ini``), so they run as ``pytest tests/example``. Collected together with
the package's tests, which use another settings module, they are left out with a warning rather
than failing on a missing app.
"""

import os
import warnings
from typing import Any

import pytest

EXAMPLE_SETTINGS_MODULE = "hcv_service.settings"

if os.environ.get("DJANGO_SETTINGS_MODULE") != EXAMPLE_SETTINGS_MODULE:
    collect_ignore_glob = ["test_*.py"]
    warnings.warn(
        f"tests/example needs DJANGO_SETTINGS_MODULE={EXAMPLE_SETTINGS_MODULE}; "
        "run it on its own: pytest tests/example",
        pytest.PytestConfigWarning,
        stacklevel=1,
    )


@pytest.fixture
def lab_values() -> dict[str, Any]:
    """A fresh copy of a valid request body, for a test to change: the model's health-probe
    sample, the medians of the data set's blood donors."""
    from diagnosis.model import HEALTH_PROBE_SAMPLE

    return dict(HEALTH_PROBE_SAMPLE)
