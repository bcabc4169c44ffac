"""A loopback stand-in for Sentry's ingest endpoint, for tests with the real sentry-sdk transport.

Point a DSN at it (``ingest.dsn`` is ``http://<key>@127.0.0.1:<port>/<project>``) and the
SDK posts envelopes to ``/api/<project>/envelope/``, and, when spans go to Sentry, OTLP/HTTP
protobuf to ``/api/<project>/integration/otlp/v1/traces/``. Every request is authenticated
like Sentry does (the public key in ``X-Sentry-Auth`` or ``?sentry_key=``), decompressed
(gzip, deflate, br) and parsed; anything malformed is answered 400 and kept in ``rejected``
so that a test can assert there was nothing of the kind.

The envelope format (https://develop.sentry.dev/sdk/data-model/envelopes/): one line of JSON
headers, then items, each a line of JSON item headers followed by the payload, which is
exactly ``length`` bytes when the item headers say so, else runs to the next newline.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
PROJECT_ID = 4242


class EnvelopeError(ValueError):
    """The body is not a well-formed envelope."""


@dataclass
class Item:
    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Envelope:
    headers: dict[str, Any]
    items: list[Item] = field(default_factory=list)
    body: bytes = b""  # the decompressed envelope, exactly as sent

    def of_type(self, item_type: str) -> list[Item]:
        return [item for item in self.items if item.type == item_type]


def parse_envelope(body: bytes) -> Envelope:
    """Parse an envelope; raise :class:`EnvelopeError` on anything Sentry would refuse."""
    position = 0

    def read_line() -> bytes:
        nonlocal position
        end = body.find(b"\n", position)
        end = len(body) if end == -1 else end
        line = body[position:end]
        position = end + 1
        return line

    try:
        headers = json.loads(read_line() or b"{}")
    except ValueError as exc:
        raise EnvelopeError(f"envelope headers are not JSON: {exc}") from None
    if not isinstance(headers, dict):
        raise EnvelopeError("envelope headers are not an object")
    envelope = Envelope(headers=headers, body=body)
    while position < len(body):
        line = read_line()
        if not line.strip():
            continue  # a trailing newline
        try:
            item_headers = json.loads(line)
        except ValueError as exc:
            raise EnvelopeError(f"item headers are not JSON: {exc}") from None
        if not isinstance(item_headers, dict) or "type" not in item_headers:
            raise EnvelopeError(f"item headers without a type: {line[:200]!r}")
        length = item_headers.get("length")
        if length is None:
            payload = read_line()
        else:
            if not isinstance(length, int) or length < 0 or position + length > len(body):
                raise EnvelopeError(f"item length {length!r} runs past the end of the envelope")
            payload = body[position : position + length]
            position += length
            if position < len(body) and body[position : position + 1] != b"\n":
                raise EnvelopeError("an item payload is not followed by a newline")
            position += 1
        item = Item(headers=item_headers, payload=payload)
        if item.type in ("event", "transaction", "client_report", "sessions", "session"):
            try:
                item.json()
            except ValueError as exc:
                raise EnvelopeError(f"{item.type} payload is not JSON: {exc}") from None
        envelope.items.append(item)
    return envelope


def _decompress(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # only installed where sentry-sdk would use it

        return brotli.decompress(body)
    raise EnvelopeError(f"unsupported Content-Encoding {encoding!r}")


_SENTRY_KEY = re.compile(r"sentry_key=([^,\s]+)")


class SentryIngest:
    """Accepts envelopes and OTLP traces for one project; a context manager."""

    def __init__(self, public_key: str = PUBLIC_KEY, project_id: int = PROJECT_ID) -> None:
        self.public_key = public_key
        self.project_id = project_id
        self.lock = threading.Lock()
        self.envelopes: list[Envelope] = []
        self.otlp_traces: list[ExportTraceServiceRequest] = []
        self.otlp_headers: list[dict[str, str]] = []  # header names in lower case
        # Every request body as it arrived on the wire, and after decompression.
        self.raw: list[bytes] = []
        self.decoded: list[bytes] = []
        self.rejected: list[tuple[str, str]] = []
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    status, payload = ingest._handle(self)
                except Exception as exc:  # a bug here must show up as a rejection, not a hang
                    status, payload = 500, {"detail": repr(exc)}
                    with ingest.lock:
                        ingest.rejected.append((self.path, repr(exc)))
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                content_type = "application/x-protobuf" if isinstance(payload, bytes) else "application/json"
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://{self.public_key}@127.0.0.1:{self.port}/{self.project_id}"

    @property
    def envelope_path(self) -> str:
        return f"/api/{self.project_id}/envelope/"

    @property
    def otlp_traces_path(self) -> str:
        return f"/api/{self.project_id}/integration/otlp/v1/traces/"

    def __enter__(self) -> SentryIngest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _read_body(self, request: BaseHTTPRequestHandler) -> bytes:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    request.rfile.readline()
                    return b"".join(chunks)
                chunks.append(request.rfile.read(size))
                request.rfile.readline()
        return request.rfile.read(int(request.headers.get("Content-Length", 0)))

    def _handle(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any] | bytes]:
        url = urlsplit(request.path)
        raw = self._read_body(request)
        with self.lock:
            self.raw.append(raw)
        auth = request.headers.get("X-Sentry-Auth", "")
        key_match = _SENTRY_KEY.search(auth)
        key = key_match.group(1) if key_match else parse_qs(url.query).get("sentry_key", [""])[0]
        if key != self.public_key:
            return self._reject(request.path, f"wrong or missing sentry_key {key!r}", 401)
        try:
            body = _decompress(raw, request.headers.get("Content-Encoding"))
        except Exception as exc:
            return self._reject(request.path, f"cannot decompress: {exc!r}", 400)
        with self.lock:
            self.decoded.append(body)
        if url.path == self.envelope_path:
            try:
                envelope = parse_envelope(body)
            except EnvelopeError as exc:
                return self._reject(request.path, str(exc), 400)
            with self.lock:
                self.envelopes.append(envelope)
            return 200, {"id": envelope.headers.get("event_id")}
        if url.path == self.otlp_traces_path:
            try:
                message = ExportTraceServiceRequest.FromString(body)
            except Exception as exc:
                return self._reject(request.path, f"not an OTLP trace export: {exc!r}", 400)
            with self.lock:
                self.otlp_traces.append(message)
                self.otlp_headers.append({name.lower(): value for name, value in request.headers.items()})
            return 200, ExportTraceServiceResponse().SerializeToString()
        return self._reject(request.path, "unknown endpoint", 404)

    def _reject(self, path: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.rejected.append((path, reason))
        return status, {"detail": reason}

    # Views ----------------------------------------------------------------------------

    def items(self, item_type: str) -> list[Item]:
        with self.lock:
            envelopes = list(self.envelopes)
        return [item for envelope in envelopes for item in envelope.of_type(item_type)]

    def events(self) -> list[dict[str, Any]]:
        """Error (and message) events, decoded."""
        return [item.json() for item in self.items("event")]

    def transactions(self) -> list[dict[str, Any]]:
        return [item.json() for item in self.items("transaction")]

    def otlp_spans(self) -> list[Any]:
        with self.lock:
            requests = list(self.otlp_traces)
        return [
            span
            for request in requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return condition()
