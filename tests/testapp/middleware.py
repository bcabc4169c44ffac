"""A middleware that answers before any view is chosen, as rate limiters and firewalls do."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class RefusingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "HTTP_X_REFUSE" in request.META:
            return HttpResponse("refused", status=429)
        return self.get_response(request)
