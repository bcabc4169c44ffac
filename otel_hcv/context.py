"""Per-request context that log records and nested spans read: request id, user, endpoint."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry.trace import SpanContext

request_id: ContextVar[str | None] = ContextVar("otel_hcv_request_id", default=None)
# The user's span attributes ({"enduser.pseudo.id": ...}), set once the view knows the user.
user_attributes: ContextVar[dict[str, str] | None] = ContextVar("otel_hcv_user_attributes", default=None)
endpoint: ContextVar[str | None] = ContextVar("otel_hcv_endpoint", default=None)

# Loggers of servers' access-log lines, written after the request's span has ended.
ACCESS_LOGGERS = frozenset({"django.server", "gunicorn.access", "uvicorn.access"})
# The attribute of a Django request that holds its RequestIds (set by RequestContextMiddleware).
REQUEST_ATTRIBUTE = "otel_hcv_ids"


@dataclass(frozen=True)
class RequestIds:
    """The ids a request's log records carry: its server span and its request id."""

    span_context: SpanContext
    request_id: str


# The request this context served last. Access-log lines (runserver's django.server,
# gunicorn.access, uvicorn.access) are written by the server after the response, when the
# request's span is closed: sync servers on the thread that served the request, uvicorn in
# the request's task. A context variable reaches both (a thread has its own context).
_finished: ContextVar[RequestIds | None] = ContextVar("otel_hcv_finished_request", default=None)


def set_finished_request(finished: RequestIds | None) -> None:
    _finished.set(finished)


def finished_request() -> RequestIds | None:
    return _finished.get()


def ids_of_record(record: logging.LogRecord) -> RequestIds | None:
    """The ids of the request a log record was written about after its span had ended.

    Django's ``django.request`` lines ("Not Found", "Unauthorized", "Bad Request" of a
    DRF response) are written once the whole middleware chain has returned; they carry
    the request as ``extra``, and the request carries its ids. A server's access line
    belongs to the request this thread or task served last.
    """
    ids = getattr(getattr(record, "request", None), REQUEST_ATTRIBUTE, None)
    if isinstance(ids, RequestIds):
        return ids
    if record.name in ACCESS_LOGGERS:
        return _finished.get()
    return None
