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

# The medians of the data set's blood donors: a valid request that the model calls a donor.
BLOOD_DONOR_LAB_VALUES: dict[str, Any] = {
    "age": 47,
    "sex": "m",
    "alb": 42.2,
    "alp": 66.7,
    "alt": 23.1,
    "ast": 24.8,
    "bil": 6.9,
    "che": 8.35,
    "chol": 5.41,
    "crea": 78.0,
    "ggt": 21.4,
    "prot": 72.2,
}


@pytest.fixture
def lab_values() -> dict[str, Any]:
    """A fresh copy of a valid request body, for a test to change."""
    return dict(BLOOD_DONOR_LAB_VALUES)
