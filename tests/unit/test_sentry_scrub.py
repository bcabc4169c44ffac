"""The privacy rules applied to Sentry events and breadcrumbs (otel_hcv.sentry_events).

Events are shaped like those sentry-sdk hands to ``before_send``: already serialised, so
values are dicts, lists, strings, numbers, booleans and None.
"""

import copy
import json

from otel_hcv.conf import Settings
from otel_hcv.privacy import REDACTED, pseudonymize_user_id, safe_structure, screen_text
from otel_hcv.sentry import make_before_breadcrumb, make_before_send
from otel_hcv.sentry_events import scrub_breadcrumb, scrub_event

SETTINGS = Settings(pseudonym_key="scrub-test-key")
LABS = {"age": 47, "sex": "m", "alb": 41.37, "alp": 63.19, "alt": 27.83, "ast": 29.91, "bil": 8.17,
        "che": 8.43, "chol": 5.29, "crea": 81.73, "ggt": 31.67, "prot": 72.11}  # fmt: skip
TOKEN = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"


def frame(function: str, **local_variables: object) -> dict:
    return {
        "filename": "diagnosis/views.py",
        "function": function,
        "lineno": 53,
        "context_line": '    raise RuntimeError("injected diagnosis failure")',
        "vars": {name: repr(value) for name, value in local_variables.items()},
    }


def django_error_event() -> dict:
    """What the Django integration builds for an unhandled error, with everything filled in."""
    return {
        "event_id": "d5bbd79733244601805ffd1f8cd0cd89",
        "level": "error",
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": f"diagnosis failed for {{'alb': 41.37, 'alt': 27.83}} token {TOKEN}",
                    "mechanism": {"type": "django", "handled": False, "data": {"crea": 81.73}},
                    "stacktrace": {
                        "frames": [
                            frame("dispatch", request="<Request: POST '/api/diagnose/'>"),
                            frame("post", validated_data=LABS, alb=41.37),
                        ]
                    },
                }
            ]
        },
        "threads": {"values": [{"stacktrace": {"frames": [frame("run", chol=5.29)]}}]},
        "request": {
            "url": "http://127.0.0.1:8000/api/diagnose/?alb=41.37",
            "method": "POST",
            "query_string": "alb=41.37&ggt=31.67",
            "data": LABS,
            "cookies": {"sessionid": "s3ss10n", "csrftoken": "csrf-value"},
            "headers": {
                "Authorization": f"Token {TOKEN}",
                "Cookie": "sessionid=s3ss10n",
                "X-Forwarded-For": "203.0.113.9",
                "X-Real-Ip": "203.0.113.9",
                "Content-Type": "application/json",
                "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
            "env": {"SERVER_NAME": "localhost", "SERVER_PORT": "8000", "REMOTE_ADDR": "203.0.113.9"},
        },
        "user": {"id": 42, "email": "jane@example.org", "username": "jane", "ip_address": "203.0.113.9"},
        "contexts": {
            "trace": {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "7e607b8b4be67fbc"},
            "runtime": {"name": "CPython", "version": "3.11.7"},
            "patient": {"alb": 41.37, "nested": {"ggt": [31.67]}, "note": "bil=8.17"},
        },
        "extra": {"sys.argv": ["manage.py", "runserver"], "payload": {"labs": LABS}, "count": 3, "ok": True},
        "tags": {"endpoint": "hcv_diagnosis", "sex": "m"},
        "logentry": {"message": "lab values %s", "params": [{"alb": 41.37}], "formatted": "lab values alb=41.37"},
        "breadcrumbs": {
            "values": [
                {"type": "log", "category": "diagnosis", "message": "received 'che': 8.43", "data": {"prot": 72.11}},
                {
                    "type": "http",
                    "category": "httplib",
                    "data": {"url": "http://lab/api?alt=27.83", "http.query": "alt=27.83", "method": "GET"},
                },
                {"category": "query", "message": "SELECT 1", "data": {"db.params": [42, 41.37]}},
            ]
        },
        "transaction": "/api/diagnose/",
        "environment": "development",
        "release": "1.2.3",
    }


def serialised(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def test_no_lab_value_credential_or_raw_user_survives():
    scrubbed = scrub_event(django_error_event(), SETTINGS)
    text = serialised(scrubbed)
    for name, value in LABS.items():
        if isinstance(value, float):
            assert str(value) not in text, name
    for secret in (TOKEN, "s3ss10n", "csrf-value", "203.0.113.9", "jane", "example.org"):
        assert secret not in text, secret


def test_frame_variables_are_dropped_everywhere_frames_are_kept():
    scrubbed = scrub_event(django_error_event(), SETTINGS)
    frames = scrubbed["exception"]["values"][0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["dispatch", "post"]
    assert all("vars" not in f for f in frames)
    assert frames[1]["context_line"] and frames[1]["lineno"] == 53
    assert "vars" not in scrubbed["threads"]["values"][0]["stacktrace"]["frames"][0]


def test_request_keeps_route_method_and_harmless_headers_only():
    request = scrub_event(django_error_event(), SETTINGS)["request"]
    assert request["url"] == f"http://127.0.0.1:8000/api/diagnose/?{REDACTED}"  # there was a query
    assert request["method"] == "POST"
    for dropped in ("data", "cookies", "query_string"):
        assert dropped not in request
    assert set(request["headers"]) == {"Content-Type", "Traceparent"}
    assert request["env"] == {"SERVER_NAME": "localhost", "SERVER_PORT": "8000"}


def test_user_becomes_its_pseudonym():
    scrubbed = scrub_event(django_error_event(), SETTINGS)
    assert scrubbed["user"] == {"id": pseudonymize_user_id(42, SETTINGS)}
    assert scrub_event({"user": {"id": "42"}}, SETTINGS)["user"] == scrubbed["user"]  # same as on spans
    assert "user" not in scrub_event({"user": {"ip_address": "203.0.113.9", "email": "a@b.org"}}, SETTINGS)


def test_user_id_is_dropped_when_no_pseudonym_key_exists(settings):
    settings.SECRET_KEY = ""
    assert "user" not in scrub_event({"user": {"id": 42}}, Settings())


def test_nested_structures_and_non_string_values():
    scrubbed = scrub_event(django_error_event(), SETTINGS)
    assert scrubbed["extra"] == {
        # sys.argv is gone: a secret passed on the command line would ride along with every event.
        "payload": {"labs": {name: REDACTED for name in LABS}},
        "count": REDACTED,  # a number under a key nobody declared safe
        "ok": True,
    }
    assert scrubbed["contexts"]["patient"] == REDACTED  # a person's record, whatever it holds
    # Runtime facts are not personal data, although "name" is a person term.
    assert scrubbed["contexts"]["runtime"] == {"name": "CPython", "version": "3.11.7"}
    assert scrubbed["contexts"]["trace"] == django_error_event()["contexts"]["trace"]
    assert scrubbed["tags"] == {"endpoint": "hcv_diagnosis", "sex": REDACTED}
    assert scrubbed["logentry"] == {
        "message": "lab values %s",
        "params": [{"alb": REDACTED}],
        "formatted": f"lab values alb={REDACTED}",
    }
    assert scrubbed["exception"]["values"][0]["mechanism"] == {"type": "django", "handled": False}


def test_exception_message_never_leaves():
    value = scrub_event(django_error_event(), SETTINGS)["exception"]["values"][0]["value"]
    assert value == REDACTED  # the type and the frames make the error actionable


def test_breadcrumbs_lose_values_queries_and_sql_parameters():
    crumbs = scrub_event(django_error_event(), SETTINGS)["breadcrumbs"]["values"]
    assert crumbs[0]["message"] == f"received 'che': {REDACTED}"
    assert crumbs[0]["data"] == {"prot": REDACTED}
    assert crumbs[1]["data"] == {"url": f"http://lab/api?{REDACTED}", "method": "GET"}
    assert crumbs[2]["data"] == {}


def test_the_event_passed_in_is_not_modified():
    event = django_error_event()
    before = copy.deepcopy(event)
    scrub_event(event, SETTINGS)
    assert event == before


def test_useful_fields_survive_untouched():
    event = django_error_event()
    scrubbed = scrub_event(event, SETTINGS)
    for field in ("event_id", "level", "transaction", "environment", "release"):
        assert scrubbed[field] == event[field]
    assert scrubbed["exception"]["values"][0]["type"] == "RuntimeError"


def test_sensitive_pairs_in_free_text():
    assert screen_text('{"alb": 41.37, "note": "x"}', SETTINGS) == f'{{"alb": {REDACTED}, "note": "x"}}'
    assert screen_text("age=47&page=2", SETTINGS) == f"age={REDACTED}&page=2"
    assert screen_text("diagnosis.ALT: 27.83;", SETTINGS) == f"diagnosis.ALT: {REDACTED};"
    assert screen_text("sex='f'", SETTINGS) == f"sex={REDACTED}"
    assert screen_text("ages: 4, alb measured", SETTINGS) == "ages: 4, alb measured"
    extra = Settings(pseudonym_key="k", sensitive_keys=("mrn",))
    assert screen_text("mrn=12345", extra) == f"mrn={REDACTED}"


def test_scrubbing_twice_changes_nothing():
    # Breadcrumbs are scrubbed when recorded and again with the event that carries them.
    # (Not the user: before_send runs once per event, and a pseudonym is taken for a raw id.)
    once = scrub_event({**django_error_event(), "user": None}, SETTINGS)
    assert scrub_event(once, SETTINGS) == once
    twice = f"alb={REDACTED}, 'alt': {REDACTED}"
    assert screen_text(twice, SETTINGS) == twice


def test_objects_never_leave_as_their_text():
    class Measurement:
        def __str__(self) -> str:
            return "Measurement(alb=41.37)"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert safe_structure({"m": Measurement(), "b": Broken(), "n": None, "f": 1.5}, SETTINGS) == {
        "m": "<Measurement>",
        "b": "<Broken>",
        "n": None,
        "f": REDACTED,
    }
    assert safe_structure({1: {"ALB": 2}}, SETTINGS) == {"<int>": {"ALB": REDACTED}}
    deep: dict = {}
    cursor = deep
    for _ in range(30):
        cursor["next"] = {}
        cursor = cursor["next"]
    assert REDACTED in serialised(safe_structure(deep, SETTINGS))


def test_breadcrumb_with_raw_objects_before_serialisation():
    crumb = {"type": "log", "message": "alb=41.37", "data": {"request": object(), "ggt": 31.67}, "timestamp": 1}
    scrubbed = scrub_breadcrumb(crumb, SETTINGS)
    assert scrubbed["message"] == f"alb={REDACTED}"
    assert scrubbed["data"]["ggt"] == REDACTED
    assert scrubbed["data"]["request"] == "<object>"
    assert scrubbed["timestamp"] == 1


def test_hooks_wrap_the_privacy_rules():
    before_send = make_before_send(SETTINGS)
    before_breadcrumb = make_before_breadcrumb(SETTINGS)
    assert before_send(django_error_event(), {}) == scrub_event(django_error_event(), SETTINGS)
    assert before_breadcrumb({"message": "alt=27.83"}, {}) == {"message": f"alt={REDACTED}"}


def test_djangos_refusal_of_asgi_lifespan_is_not_an_error_report():
    before_send = make_before_send(SETTINGS)
    refusal = ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")
    assert before_send({"level": "error"}, {"exc_info": (ValueError, refusal, None)}) is None
    other = ValueError("something else")
    assert before_send({"level": "error"}, {"exc_info": (ValueError, other, None)}) == {"level": "error"}
    assert before_send({"level": "error"}, {}) == {"level": "error"}


def test_malformed_events_do_not_break_scrubbing():
    odd = {"request": "not a dict", "user": "jane", "exception": {"values": "nope"}, "breadcrumbs": [], "tags": None}
    scrubbed = scrub_event(odd, SETTINGS)
    assert "request" not in scrubbed and "user" not in scrubbed
    assert "exception" not in scrubbed  # a shape the rules do not know does not leave
