"""Per-request context that log records and nested spans read: request id, user, endpoint."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry.trace import SpanContext

request_id: ContextVar[str | None] = ContextVar("otel_hcv_request_id", default=None)
# The user's span attributes ({"enduser.pseudo.id": ...}), set once the view knows the user.
user_attributes: ContextVar[dict[str, str] | None] = ContextVar("otel_hcv_user_attributes", default=None)
endpoint: ContextVar[str | None] = ContextVar("otel_hcv_endpoint", default=None)


@dataclass(frozen=True)
class FinishedRequest:
    span_context: SpanContext
    request_id: str


# Access-log lines (runserver's django.server, gunicorn.access) are written by the server
# after the response, when the request's span is closed. Sync servers write them on the
# thread that served the request, so a thread-local lets those lines carry its ids.
_finished = threading.local()


def set_finished_request(finished: FinishedRequest | None) -> None:
    _finished.request = finished


def finished_request() -> FinishedRequest | None:
    return getattr(_finished, "request", None)
