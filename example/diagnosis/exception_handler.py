"""Error responses of the API: every client mistake is a 4xx with a JSON body, never a 500.

Kept apart from ``diagnosis.exceptions`` because it imports ``rest_framework.views``, whose
``APIView`` loads the parsers, which need those exceptions: one module would import itself.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.response import Response
from rest_framework.views import exception_handler

from diagnosis.exceptions import RequestBodyTooLarge


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus Django's own "body too large" error as a 413.

    Django raises ``RequestDataTooBig`` when something reads ``request.body`` past
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``; unhandled it would become a 400 without a JSON body.
    Malformed JSON (``ParseError``) and an unsupported content type (``UnsupportedMediaType``)
    are already API exceptions and come back from DRF's handler as 400 and 415.
    Anything else returns ``None`` and propagates: a genuine server error stays a 500 that the
    telemetry sees as an exception, not as a quietly handled response.
    """
    if isinstance(exc, RequestDataTooBig):
        exc = RequestBodyTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return exception_handler(exc, context)
