"""The leak search itself: a canary is found wherever it is written, and a clock reading that
happens to spell one (a record stamped 15:17:13.579 against the canary 13.579) is not a leak."""

from __future__ import annotations

import struct

from tests.privacy.canaries import LABS, find_leaks

BIL = LABS["bil"]  # 13.579


def canaries_in(text: str | bytes) -> list[str]:
    return [leak.canary for leak in find_leaks([("output", text)])]


def test_lab_values_are_found_as_text_and_as_packed_doubles():
    assert canaries_in(f"bil={BIL}") == ["13.579"]
    assert canaries_in("Bilirubin 13,579 umol/L") == ["13,579"]
    assert canaries_in(b"\x09" + struct.pack("<d", BIL)) == [f"{BIL} (packed)"]


def test_clock_readings_that_spell_a_canary_are_not_leaks():
    for stamp in (
        '"_time":"2026-12-03T15:17:13.579637048Z"',
        "2026-12-03 15:17:13,579 INFO diagnosis",
        '{"timestamp": 1764775013.579637}',
        '"timestamp":"2026-12-03T15:17:13.579Z"',
    ):
        assert canaries_in(stamp) == [], stamp


def test_a_lab_value_beside_a_clock_reading_is_still_found():
    assert canaries_in(f"at 15:17:13.579 the value {BIL} was logged") == ["13.579"]
    assert canaries_in(f"t=1764775033.12 alb={LABS['alb']}") == ["36.417"]
