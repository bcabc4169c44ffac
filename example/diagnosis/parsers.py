"""Request parsers that honour ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

DRF's parsers read the request stream directly and so bypass Django's size check, which is only
applied to ``request.body``. These read at most one byte more than the limit, answer 413 when the
body is larger, and hand the bytes to DRF's parser unchanged.
"""

import io
from typing import IO, Any

from django.conf import settings
from rest_framework.parsers import FormParser, JSONParser

from diagnosis.exceptions import RequestBodyTooLarge


def read_body_within_limit(stream: IO[bytes]) -> bytes:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        return stream.read()
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise RequestBodyTooLarge(limit)
    return body


class SizeLimitedJSONParser(JSONParser):
    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        body = read_body_within_limit(stream)
        return super().parse(io.BytesIO(body), media_type, parser_context)


class SizeLimitedFormParser(FormParser):
    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        body = read_body_within_limit(stream)
        return super().parse(io.BytesIO(body), media_type, parser_context)
