import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token


def run(command: str, *args: str) -> str:
    stdout = StringIO()
    call_command(command, *args, stdout=stdout, stderr=StringIO())
    return stdout.getvalue().strip()


@pytest.mark.django_db
def test_create_demo_user_prints_only_the_token_and_is_idempotent():
    first = run("create_demo_user")
    second = run("create_demo_user")
    assert first == second
    user = get_user_model().objects.get(username="demo")
    assert Token.objects.get(user=user).key == first
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_create_demo_user_json_output():
    created = json.loads(run("create_demo_user", "--username", "alice", "--json"))
    again = json.loads(run("create_demo_user", "--username", "alice", "--json"))
    user = get_user_model().objects.get(username="alice")
    assert created == {"username": "alice", "user_id": user.pk, "token": created["token"], "created": True}
    assert again == {**created, "created": False}


@pytest.mark.django_db
def test_create_demo_user_can_set_a_password():
    run("create_demo_user", "--password", "s3cret-demo")
    assert get_user_model().objects.get(username="demo").check_password("s3cret-demo")


def test_train_model_reports_cross_validated_metrics():
    output = run("train_model", "--folds", "3", "--repeats", "1")
    assert "3-fold stratified, repeated 1 times" in output
    assert "balanced accuracy" in output
    assert "always 'Blood Donor' would score 0.867" in output
    assert "health probe         0=Blood Donor" in output
