"""The envelope parser of the loopback Sentry ingest stand-in (tests/support/sentry_ingest.py),
checked against envelopes serialised by sentry-sdk itself."""

import gzip
import json
import urllib.error
import urllib.request

import pytest
from sentry_sdk.envelope import Envelope as SdkEnvelope
from sentry_sdk.envelope import Item as SdkItem
from sentry_sdk.envelope import PayloadRef

from tests.support.sentry_ingest import EnvelopeError, SentryIngest, parse_envelope


def test_parses_what_sentry_sdk_serialises():
    envelope = SdkEnvelope(headers={"event_id": "abc", "sent_at": "2026-01-01T00:00:00Z"})
    envelope.add_event({"event_id": "abc", "message": "line one\nline two", "level": "error"})
    envelope.add_item(SdkItem(payload=PayloadRef(bytes=b"\x00binary\npayload"), type="attachment"))
    parsed = parse_envelope(envelope.serialize())
    assert parsed.headers == {"event_id": "abc", "sent_at": "2026-01-01T00:00:00Z"}
    assert [item.type for item in parsed.items] == ["event", "attachment"]
    assert parsed.items[0].json()["message"] == "line one\nline two"
    assert parsed.items[1].payload == b"\x00binary\npayload"


def test_items_without_length_run_to_the_end_of_the_line():
    body = b'{}\n{"type":"event"}\n{"level":"error"}\n{"type":"client_report"}\n{"discarded_events":[]}'
    parsed = parse_envelope(body)
    assert [item.json() for item in parsed.items] == [{"level": "error"}, {"discarded_events": []}]


@pytest.mark.parametrize(
    "body",
    [
        b"not json\n",
        b'{}\n{"no":"type"}\n{}\n',
        b'{}\n{"type":"event","length":50}\n{}\n',
        b'{}\n{"type":"event","length":2}\n{}x\n',
        b'{}\n{"type":"event"}\nnot json\n',
    ],
)
def test_malformed_envelopes_are_refused(body):
    with pytest.raises(EnvelopeError):
        parse_envelope(body)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_server_authenticates_decompresses_and_records():
    event = json.dumps({"event_id": "e1", "level": "error"}).encode()
    body = b'{"event_id":"e1"}\n{"type":"event","length":%d}\n%s\n' % (len(event), event)
    with SentryIngest() as ingest:
        url = f"http://127.0.0.1:{ingest.port}{ingest.envelope_path}"
        auth = {"X-Sentry-Auth": f"Sentry sentry_key={ingest.public_key}, sentry_version=7"}
        assert post(url, gzip.compress(body), {**auth, "Content-Encoding": "gzip"}) == 200
        assert post(url + f"?sentry_key={ingest.public_key}", body, {}) == 200
        assert post(url, body, {"X-Sentry-Auth": "Sentry sentry_key=wrong"}) == 401
        assert post(url, b"\x1f\x8b broken", {**auth, "Content-Encoding": "gzip"}) == 400
        assert post(f"http://127.0.0.1:{ingest.port}/api/1/store/", body, auth) == 404
    assert [e["event_id"] for e in ingest.events()] == ["e1", "e1"]
    assert ingest.decoded[0] == body
    reasons = [reason for _, reason in ingest.rejected]
    assert len(reasons) == 3
    assert reasons[0].startswith("wrong or missing sentry_key") and reasons[1].startswith("cannot decompress")
