"""Pseudonymisation, redaction and IP truncation."""

import pytest

from otel_hcv.conf import Settings
from otel_hcv.privacy import (
    PSEUDONYMOUS_USER_ID_KEY,
    RAW_USER_ID_KEY,
    REDACTED,
    client_ip,
    pseudonymize_user_id,
    safe_structure,
    user_attributes,
)

KEYED = Settings(pseudonym_key="key-one")


def test_pseudonym_is_stable_keyed_and_not_the_id():
    first = pseudonymize_user_id(42, KEYED)
    assert first == pseudonymize_user_id("42", Settings(pseudonym_key="key-one"))
    assert first != pseudonymize_user_id(42, Settings(pseudonym_key="key-two"))
    assert first != pseudonymize_user_id(43, KEYED)
    assert "42" not in first and len(first) == 32


def test_pseudonym_key_defaults_to_one_derived_from_secret_key(settings):
    settings.SECRET_KEY = "secret-a"
    a = pseudonymize_user_id(7, Settings())
    settings.SECRET_KEY = "secret-b"
    assert pseudonymize_user_id(7, Settings()) != a


def test_user_attributes_follow_the_setting():
    assert user_attributes(5, KEYED) == {PSEUDONYMOUS_USER_ID_KEY: pseudonymize_user_id(5, KEYED)}
    raw = Settings(pseudonym_key="k", pseudonymize_user_ids=False)
    assert user_attributes(5, raw) == {RAW_USER_ID_KEY: "5"}
    assert user_attributes(None, KEYED) == {}


def test_walker_nested_keys_values_and_non_strings():
    data = {
        "ALB": 41.2,
        "patient": {"email": "x@y.org", "notes": ["call jane.doe@example.org", 3, None]},
        "headers": {"Authorization": "Bearer abc.def"},
        "http.request.header.cookie": "sessionid=1",
        "text": "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "count": 3,
        "status_code": 404,
        "notes": ["call jane.doe@example.org", 3, None],
    }
    assert safe_structure(data, KEYED) == {
        "ALB": REDACTED,
        "patient": REDACTED,  # a person's record, whatever it holds
        "headers": {"Authorization": REDACTED},
        "http.request.header.cookie": REDACTED,
        "text": f"token {REDACTED}",
        "count": REDACTED,  # a number under a key nobody declared safe
        "status_code": 404,  # a key known to be safe
        "notes": [f"call {REDACTED}", REDACTED, None],
    }
    assert safe_structure({"count": 3}, Settings(pseudonym_key="k", safe_keys=("count",))) == {"count": 3}


def test_user_added_keys_are_redacted():
    assert safe_structure({"mrn": "123"}, Settings(sensitive_keys=("mrn",))) == {"mrn": REDACTED}
    assert safe_structure({"hcv.mrn_value": "123"}, Settings(sensitive_keys=("mrn",))) == {"hcv.mrn_value": REDACTED}


@pytest.mark.parametrize(
    ("mode", "address", "expected"),
    [
        ("truncate", "192.168.17.42", "192.168.17.0"),
        ("truncate", "2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("drop", "192.168.17.42", None),
        ("keep", "192.168.17.42", "192.168.17.42"),
        ("truncate", "not-an-ip", None),
    ],
)
def test_client_ip(mode, address, expected):
    assert client_ip(address, Settings(ip_addresses=mode)) == expected
