"""Properties of the privacy rules over generated inputs: nested structures, key spellings and
message shapes holding canary lab values; none survives, and no rule ever raises."""

from __future__ import annotations

import json
import re
from collections import namedtuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_hcv import privacy
from otel_hcv.conf import Settings
from otel_hcv.sentry_events import scrub_event

SETTINGS = Settings(pseudonym_key="property-key")
# The lab fields' names and synonyms, the person and credential terms: what a key may be made of.
TERMS = sorted({t for ts in privacy.LAB_TERMS.values() for t in ts} | {"patient", "username", "email", "password"})
LAB_NAMES = sorted({t for ts in privacy.LAB_TERMS.values() for t in ts if t not in ("age", "sex", "gender")})

# Canary values: three decimals, distinctive; the check looks for their text.
canaries = st.integers(min_value=10_000, max_value=999_999).map(lambda n: n / 1000)


def spell(words: list[str], style: str) -> str:
    if style == "camel":
        return words[0].lower() + "".join(w.capitalize() for w in words[1:])
    if style == "pascal":
        return "".join(w.capitalize() for w in words)
    separator = {"snake": "_", "kebab": "-", "dotted": ".", "upper": "_"}[style]
    text = separator.join(words)
    return text.upper() if style == "upper" else text


@st.composite
def sensitive_keys(draw: st.DrawFn) -> str:
    term = draw(st.sampled_from(TERMS)).split()
    prefix = draw(st.sampled_from([[], ["hcv"], ["lab"], ["patient"], ["hcv", "lab"], ["x"]]))
    suffix = draw(st.sampled_from([[], ["value"], ["umol", "l"], ["raw"], ["g", "l"], ["v2"]]))
    style = draw(st.sampled_from(["snake", "kebab", "dotted", "camel", "pascal", "upper"]))
    return spell([*prefix, *term, *suffix], style)


Pair = namedtuple("Pair", "first second")

neutral_keys = st.sampled_from(["data", "items", "panel", "observations", "body", "payload", "result", "v"])
leaves = canaries | canaries.map(str) | canaries.map(lambda v: [v]) | canaries.map(lambda v: Pair(v, v))


def structures(depth: int = 3) -> st.SearchStrategy:
    keyed = st.dictionaries(sensitive_keys() | neutral_keys, st.deferred(lambda: nested), min_size=1, max_size=4)
    nested = st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(sensitive_keys() | neutral_keys, children, max_size=3),
        max_leaves=8,
    )
    return keyed


def numbers_in(value: object) -> list[float]:
    found: list[float] = []
    if isinstance(value, float):
        found.append(value)
    elif isinstance(value, str):
        found.extend(float(m) for m in re.findall(r"\d+\.\d{3}", value))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(numbers_in(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(numbers_in(item))
    return found


def assert_absent(values: list[float], output: str) -> None:
    for value in values:
        for spelling in (f"{value:.3f}", f"{value:.3f}".replace(".", ","), repr(value)):
            assert spelling not in output, (spelling, output)


COMMON = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(structures())
def test_no_canary_survives_the_walker(data):
    output = json.dumps(privacy.safe_structure(data, SETTINGS))
    assert_absent(numbers_in(data), output)


@COMMON
@given(structures())
def test_no_canary_survives_log_arguments_or_sentry(data):
    message = privacy.format_log_message("data %s and %r", (data, list(data.values())), "app", SETTINGS)
    assert_absent(numbers_in(data), message)
    event = scrub_event({"extra": data, "logentry": {"message": "%s", "params": [data], "formatted": str(data)},
                         "contexts": {"custom": data}, "tags": {"k": str(data)}}, SETTINGS)  # fmt: skip
    assert_absent(numbers_in(data), json.dumps(event))


@COMMON
@given(sensitive_keys(), canaries)
def test_sensitive_key_spellings_are_redacted_as_attributes(key, value):
    assert privacy.is_sensitive_key(key, SETTINGS), key
    assert privacy.safe_attribute(key, value, SETTINGS) == privacy.REDACTED
    assert privacy.safe_attribute(key, str(value), SETTINGS) == privacy.REDACTED


attribute_keys = sensitive_keys() | neutral_keys | st.sampled_from(
    ["http.route", "url.path", "client.address", "enduser.id", "hcv.endpoint", "exception.type", "db.statement"]
)
scalars = st.one_of(
    st.booleans(), st.integers(-2, 2), st.sampled_from([0.0, 1.0, -1.0]), canaries, canaries.map(str),
    st.text(max_size=40), st.sampled_from(["1", "True", "/api/x/?alb=40.1"]),
)  # fmt: skip


@COMMON
@given(attribute_keys, st.lists(scalars, min_size=1, max_size=6))
def test_remembered_attribute_screening_is_the_same_as_screening_afresh(key, values):
    # Screened attributes are remembered by key, type and value; True, 1 and 1.0 are one
    # dictionary key, so the type must keep them apart, in whatever order they come.
    rules = privacy.rules_for(SETTINGS)
    for value in values * 2:
        remembered = privacy.safe_attribute(key, value, SETTINGS)
        afresh = privacy._attribute(key, value, rules)
        assert (type(remembered), remembered) == (type(afresh), afresh), (key, value)


def test_remembered_attribute_screening_stays_bounded():
    rules = privacy.rules_for(SETTINGS)
    for number in range(privacy.SCREENED_MEMO_ENTRIES * 2 + 10):
        privacy.safe_attribute("hcv.request.id", f"{number:032x}", SETTINGS)
    assert 0 < len(rules.attributes) <= privacy.SCREENED_MEMO_ENTRIES


separators = st.sampled_from(["=", ": ", " => ", " of ", " (g/L): ", ":", " = ", "\t", " is ", "=[", ": ["])


@COMMON
@given(st.sampled_from(LAB_NAMES), separators, st.lists(canaries, min_size=1, max_size=3),
       st.booleans(), st.sampled_from(["", "measured ", "patient ", "FYI "]), st.sampled_from(["", " g/L", ";", "]"]))
def test_lab_name_followed_by_numbers_in_free_text(name, separator, values, comma, before, after):
    spelled = [f"{v:.3f}".replace(".", ",") if comma else f"{v:.3f}" for v in values]
    text = f"{before}{name.upper() if comma else name}{separator}{', '.join(spelled)}{after}"
    assert_absent(values, privacy.screen_text(text, SETTINGS))
    assert_absent(values, privacy.screen_text(text, SETTINGS, strict=False))  # also in paths and safe text
    assert_absent(values, privacy.screen_url(f"/api/{text.replace(' ', '-')}/?q=1", SETTINGS))


@COMMON
@given(st.text(max_size=200), st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=50),
                                         st.binary(max_size=20), st.lists(st.integers(), max_size=3)))  # fmt: skip
def test_the_rules_never_raise(text, argument):
    privacy.screen_text(text, SETTINGS)
    privacy.screen_url(text, SETTINGS)
    privacy.screen_stacktrace(text)
    privacy.format_log_message(text, (argument,), "app", SETTINGS)
    privacy.format_log_message(text, {"a": argument}, "app", SETTINGS)
    privacy.safe_structure({text: argument}, SETTINGS)
    privacy.safe_attribute(text, argument, SETTINGS)
    privacy.endpoint_label(text, SETTINGS)
    privacy.screen_trace_state([(text[:20] or "k", text[:40])], SETTINGS)
