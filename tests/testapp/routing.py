"""Route shapes of real projects: DRF routers with format suffixes and custom actions,
regex routes with nested and optional groups, converters and include() prefixes."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from rest_framework import routers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response


class BudgetViewSet(viewsets.ViewSet):
    def list(self, request: Request, format: str | None = None) -> Response:
        return Response([])

    def retrieve(self, request: Request, pk: str, format: str | None = None) -> Response:
        return Response({"pk": pk})

    @action(detail=True, methods=["post"], url_path="set-limit")
    def set_limit(self, request: Request, pk: str) -> Response:
        return Response({"pk": pk})

    @action(detail=False, url_path=r"by-month/(?P<month>\d{4}-\d{2})")
    def by_month(self, request: Request, month: str) -> Response:
        return Response({"month": month})


def echo(request: HttpRequest, *args: str, **kwargs: str) -> JsonResponse:
    return JsonResponse({"args": list(args), "kwargs": kwargs})


simple = routers.SimpleRouter()
simple.register(r"budgets", BudgetViewSet, basename="simple-budget")
default = routers.DefaultRouter()
default.register(r"users/me/budgets", BudgetViewSet, basename="budget")

regex_routes = [
    re_path(r"^items/(?P<pk>[0-9]+)/$", echo),
    re_path(r"^items/(?P<pk>[0-9]+)(?:/(?P<part>[a-z]+))?/$", echo),
    re_path(r"^archive/(\d{4})/(\d{2})/$", echo),
    re_path(r"^files/(?P<name>.+)\.(?P<ext>json|csv)$", echo),
    re_path(r"^v(?P<version>(?:\d+)(?:\.\d+)?)/ping/?$", echo),
]

urlpatterns = [
    path("simple/", include(simple.urls)),
    path("api/", include(default.urls)),
    re_path(r"^re/", include(regex_routes)),
    path("orgs/<int:org>/", include([path("members/<slug:member>/", echo), re_path(r"^teams/(?P<team>\w+)/$", echo)])),
    path("v1.0/status/", echo),
]
