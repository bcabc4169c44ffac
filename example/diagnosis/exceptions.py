from rest_framework import status
from rest_framework.exceptions import APIException


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"

    def __init__(self, limit_bytes: int | None = None) -> None:
        detail = (
            f"Request body too large; at most {limit_bytes} bytes are accepted."
            if limit_bytes is not None
            else None
        )
        super().__init__(detail=detail)
