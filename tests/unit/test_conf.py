"""Settings: one validated source, errors that name the setting."""

import pytest

from otel_hcv.conf import ConfigurationError, Settings, load
from otel_hcv.privacy import is_sensitive_key


def test_defaults_without_any_setting(settings):
    del settings.OTEL_HCV
    assert load(environ={}) == Settings()


def test_django_dict_then_environment_then_overrides(settings):
    settings.OTEL_HCV = {"SERVICE_NAME": "from-settings", "ENVIRONMENT": "staging"}
    loaded = load({"environment": "override"}, environ={"HCV_SERVICE_NAME": "from-env"})
    assert loaded.service_name == "from-env"
    assert loaded.environment == "override"


def test_environment_values_are_coerced(settings):
    loaded = load(
        environ={
            "HCV_PSEUDONYMIZE_USER_IDS": "false",
            "HCV_SENSITIVE_KEYS": "mrn, ward",
            "HCV_SUMMARY_WINDOW_SECONDS": "60",
        }
    )
    assert loaded.pseudonymize_user_ids is False
    assert loaded.sensitive_keys == ("mrn", "ward")
    assert loaded.summary_window_seconds == 60
    assert all(is_sensitive_key(key, loaded) for key in ("mrn", "ward", "alb", "hcv.ward_name"))


@pytest.mark.parametrize(
    ("django_dict", "environ", "named"),
    [
        ({"SERVICE_NAM": "typo"}, {}, "OTEL_HCV['SERVICE_NAM']"),
        ({"PSEUDONYMIZE_USER_IDS": "maybe"}, {}, "OTEL_HCV['PSEUDONYMIZE_USER_IDS']"),
        ({}, {"HCV_SUMMARY_WINDOW_SECONDS": "-5"}, "HCV_SUMMARY_WINDOW_SECONDS"),
        ({}, {"HCV_OTLP_LOG_LEVEL": "LOUD"}, "HCV_OTLP_LOG_LEVEL"),
        ({"EXCLUDED_URLS": ["(unclosed"]}, {}, "OTEL_HCV['EXCLUDED_URLS']"),
        ({"REQUEST_ID_HEADER": "X Bad Header"}, {}, "OTEL_HCV['REQUEST_ID_HEADER']"),
        ({"IP_ADDRESSES": "mask"}, {}, "OTEL_HCV['IP_ADDRESSES']"),
        ({"SERVICE_NAME": 42}, {}, "OTEL_HCV['SERVICE_NAME']"),
    ],
)
def test_wrong_settings_fail_naming_the_setting(settings, django_dict, environ, named):
    settings.OTEL_HCV = django_dict
    with pytest.raises(ConfigurationError) as error:
        load(environ=environ)
    assert named in str(error.value)


def test_settings_must_be_a_dict(settings):
    settings.OTEL_HCV = ["not", "a", "dict"]
    with pytest.raises(ConfigurationError, match="OTEL_HCV must be a dict"):
        load(environ={})


def test_unknown_override_is_named():
    with pytest.raises(ConfigurationError, match="service_nmae"):
        load({"service_nmae": "x"}, environ={})
