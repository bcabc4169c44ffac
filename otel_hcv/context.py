"""The request id of the request being served, for log records and spans."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("otel_hcv_request_id", default=None)
