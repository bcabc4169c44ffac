"""Canary values for the privacy suite, and the search for them in whatever left the process.

Lab values have three decimals, so that no other number of a run looks like one; a leak is found
as text (with a decimal point or a decimal comma) and as the packed IEEE doubles that protobuf
and other binary encodings write. Clock readings are the exception: a record stamped
15:17:13.579637 holds the text of the canary 13.579, so times of day and Unix times with a
fraction are left out of the search for lab values as text.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

LABS = {"age": 61, "sex": "f", "alb": 36.417, "alp": 88.193, "alt": 47.281, "ast": 52.839, "bil": 13.579,
        "che": 6.247, "chol": 4.863, "crea": 91.357, "ggt": 64.923, "prot": 68.741}  # fmt: skip
LAB_FLOATS = [value for value in LABS.values() if isinstance(value, float)]
USER_ID = 1938472615
USERNAME = "canaryuser-qz7w"
EMAIL = "canary.person.q7z3@clinic-canary.example"
FIRST, LAST = "Zebulonia", "Quixotevska"
SECRET = "canarysecret-8f7e6d5c4b3a"
TOKEN = "9c4b3a29188f7e6d5c4b3a29188f7e6d5c4b3a21"
CLIENT_IP = "198.51.100.237"
TEXT_CANARIES = (str(USER_ID), USERNAME, EMAIL, FIRST, LAST, SECRET, TOKEN, CLIENT_IP)


def number_spellings(value: float) -> list[str]:
    text = f"{value:.3f}"
    return [text, text.replace(".", ",")]


def packed(value: float) -> list[bytes]:
    return [struct.pack("<d", value), struct.pack(">d", value)]


# "15:17:13.579637", "15:17:13,579" (logging's asctime), "1764774433.579637" (an epoch in seconds).
CLOCK_READINGS = re.compile(rb"\d\d:\d\d:\d\d[.,]\d+|(?<!\d)1\d{9}[.,]\d+")


@dataclass
class Leak:
    canary: str
    where: str


def find_leaks(outputs: Iterable[tuple[str, bytes | str]], extra: Iterable[str] = ()) -> list[Leak]:
    """Every canary found in ``outputs`` (name, content): lab values as text and packed doubles,
    the person, secret and address canaries as text."""
    leaks = []
    for where, content in outputs:
        data = content.encode() if isinstance(content, str) else content
        text = CLOCK_READINGS.sub(b"<clock>", data)
        for value in LAB_FLOATS:
            for spelling in number_spellings(value):
                if spelling.encode() in text:
                    leaks.append(Leak(spelling, where))
            for binary in packed(value):
                if binary in data:
                    leaks.append(Leak(f"{value} (packed)", where))
        for canary in (*TEXT_CANARIES, *extra):
            if canary.encode() in data:
                leaks.append(Leak(canary, where))
    return leaks
