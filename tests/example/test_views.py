import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from diagnosis import model
from diagnosis.categories import CATEGORIES
from diagnosis.exception_handler import api_exception_handler
from diagnosis.models import DiagnosisRecord

DIAGNOSE_URL = "/api/diagnose/"


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user(username="clinician", password="correct horse")


@pytest.fixture
def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def post_json(client: APIClient, body: object, **extra: str):
    return client.post(DIAGNOSE_URL, json.dumps(body), content_type="application/json", **extra)


@pytest.mark.django_db
def test_anonymous_diagnosis(api_client, lab_values):
    response = post_json(api_client, lab_values)
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "category": "0=Blood Donor",
        "label": "Blood Donor",
        "probability": pytest.approx(body["probability"]),
        "model_version": model.MODEL_VERSION,
        "previous_diagnosis": None,
    }
    assert 0.9 < body["probability"] <= 1.0
    assert DiagnosisRecord.objects.count() == 0


@pytest.mark.django_db
def test_category_is_one_of_the_data_sets_five(api_client, lab_values):
    lab_values.update({"alb": 25.0, "che": 2.5, "bil": 150.0, "ast": 180.0, "ggt": 300.0})
    response = post_json(api_client, lab_values)
    assert response.status_code == 200
    assert response.json()["category"] in CATEGORIES


def test_token_user_gets_their_previous_diagnosis_and_a_stored_record(token_client, user, lab_values):
    first = post_json(token_client, lab_values)
    assert first.status_code == 200
    assert first.json()["previous_diagnosis"] is None
    second = post_json(token_client, lab_values)
    previous = second.json()["previous_diagnosis"]
    assert previous["category"] == first.json()["category"]
    assert previous["probability"] == first.json()["probability"]
    assert DiagnosisRecord.objects.filter(user=user).count() == 2


def test_session_user_is_recognised(user, lab_values):
    client = APIClient()
    client.force_login(user)
    assert post_json(client, lab_values).status_code == 200
    assert DiagnosisRecord.objects.filter(user=user).count() == 1


def test_storing_diagnoses_can_be_turned_off(token_client, user, lab_values, settings):
    settings.HCV_STORE_DIAGNOSES = False
    assert post_json(token_client, lab_values).status_code == 200
    assert not DiagnosisRecord.objects.exists()


@pytest.mark.django_db
def test_invalid_token_is_refused_rather_than_treated_as_anonymous(api_client, lab_values):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert post_json(api_client, lab_values).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "bad_field"),
    [
        ({"alb": "lots"}, "alb"),
        ({"age": True}, "age"),
        ({"che": 7500}, "che"),
        ({"sex": "x"}, "sex"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_values_are_a_400_naming_the_field(api_client, lab_values, change, bad_field):
    response = post_json(api_client, {**lab_values, **change})
    assert response.status_code == 400
    assert list(response.json()) == [bad_field]


@pytest.mark.django_db
def test_missing_values_are_each_named(api_client, lab_values):
    del lab_values["alb"], lab_values["prot"]
    response = post_json(api_client, lab_values)
    assert response.status_code == 400
    assert sorted(response.json()) == ["alb", "prot"]


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["{bad json", '{"age": NaN}', '{"age": Infinity}', "\xff"])
def test_malformed_json_is_a_400(api_client, body):
    response = api_client.post(DIAGNOSE_URL, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


@pytest.mark.django_db
def test_empty_body_is_a_400_listing_required_fields(api_client):
    response = api_client.post(DIAGNOSE_URL, "", content_type="application/json")
    assert response.status_code == 400
    assert "alb" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_other_content_types_are_a_415(api_client, lab_values, content_type):
    response = api_client.post(DIAGNOSE_URL, json.dumps(lab_values), content_type=content_type)
    assert response.status_code == 415


@pytest.mark.django_db
def test_oversized_body_is_a_413(api_client, settings):
    body = json.dumps({"padding": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    response = api_client.post(DIAGNOSE_URL, body, content_type="application/json")
    assert response.status_code == 413
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in response.json()["detail"]


@pytest.mark.django_db
def test_body_exactly_at_the_limit_is_parsed(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200
    body = json.dumps({"padding": "x"}).ljust(200)  # JSON allows trailing whitespace
    response = api_client.post(DIAGNOSE_URL, body, content_type="application/json")
    assert response.status_code == 400  # parsed, then rejected for its fields, not its size
    assert "padding" in response.json()


@pytest.mark.django_db
def test_oversized_token_request_is_a_413(api_client, settings):
    body = json.dumps({"username": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "password": "y"})
    response = api_client.post("/api/token/", body, content_type="application/json")
    assert response.status_code == 413


def test_djangos_own_size_error_becomes_a_413():
    response = api_exception_handler(RequestDataTooBig("too big"), {})
    assert response is not None
    assert response.status_code == 413


def test_token_endpoint_returns_the_users_token(api_client, user):
    response = api_client.post(
        "/api/token/", {"username": "clinician", "password": "correct horse"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=user).key


@pytest.mark.django_db
def test_get_is_not_allowed(api_client):
    assert api_client.get(DIAGNOSE_URL).status_code == 405


@pytest.mark.django_db
def test_injected_failure_is_a_500_when_enabled(api_client, lab_values, settings):
    settings.HCV_ALLOW_FAILURE_INJECTION = True
    api_client.raise_request_exception = False  # answer like a server, don't re-raise
    response = post_json(api_client, lab_values, HTTP_X_HCV_FAIL="diagnosis")
    assert response.status_code == 500
    assert "injected" not in response.content.decode()  # no exception text in responses


@pytest.mark.django_db
def test_injected_failure_raises_inside_the_view(api_client, lab_values, settings):
    settings.HCV_ALLOW_FAILURE_INJECTION = True
    with pytest.raises(RuntimeError, match="injected diagnosis failure"):
        post_json(api_client, lab_values, HTTP_X_HCV_FAIL="diagnosis")


@pytest.mark.django_db
def test_failure_header_is_ignored_when_injection_is_off(api_client, lab_values, settings):
    settings.HCV_ALLOW_FAILURE_INJECTION = False
    response = post_json(api_client, lab_values, HTTP_X_HCV_FAIL="diagnosis")
    assert response.status_code == 200


@pytest.mark.django_db
def test_enabled_injection_leaves_requests_without_the_header_alone(api_client, lab_values, settings):
    settings.HCV_ALLOW_FAILURE_INJECTION = True
    assert post_json(api_client, lab_values).status_code == 200
    assert post_json(api_client, lab_values, HTTP_X_HCV_FAIL="something-else").status_code == 200


def test_failure_injection_is_off_by_default():
    from django.conf import settings

    assert settings.HCV_ALLOW_FAILURE_INJECTION is False or pytest.skip("enabled in this environment")


@pytest.mark.django_db
def test_request_is_logged_without_lab_values(api_client, lab_values, caplog):
    lab_values.update({"alb": 41.37, "crea": 81.73})
    with caplog.at_level(logging.INFO, logger="diagnosis"):
        assert post_json(api_client, lab_values).status_code == 200
    received = [r for r in caplog.records if r.getMessage() == "Diagnosis request received"]
    assert len(received) == 1
    assert received[0].endpoint == "hcv_diagnosis"
    everything_logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "41.37" not in everything_logged
    assert "81.73" not in everything_logged
