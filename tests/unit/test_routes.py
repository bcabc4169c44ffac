"""Route templates: one readable form for path() routes, regex routes and DRF routers, the
same on the server span's name, its http.route and http.server.request.duration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_hcv import routes
from otel_hcv.routes import MAX_TEMPLATE_LENGTH, regex_template, route_template


@pytest.mark.parametrize(
    ("regex", "template"),
    [
        (r"^api/users/me/budgets/(?P<pk>[^/.]+)/$", "api/users/me/budgets/{pk}/"),
        (r"^budgets/(?P<pk>[^/.]+)\.(?P<format>[a-z0-9]+)/?$", "budgets/{pk}.{format}[/]"),
        (r"^$", ""),
        (r"^\.(?P<format>[a-z0-9]+)/?$", ".{format}[/]"),
        (r"^archive/(\d{4})/(\d{2})/$", "archive/{arg1}/{arg2}/"),
        (r"^items/(?P<pk>[0-9]+)(?:/(?P<part>[a-z]+))?/$", "items/{pk}[/{part}]/"),
        (r"^v(?P<version>(?:\d+)(?:\.\d+)?)/ping/?$", "v{version}/ping[/]"),
        (r"^files/(?P<name>.+)\.(?P<ext>json|csv)$", "files/{name}.{ext}"),
        (r"^(?i)Report/(?P<id>\d+)/?\Z", "Report/{id}[/]"),
        (r"^static/.*$", "static/*"),
        (r"^a/[0-9]+/b/\d+/$", "a/*/b/*/"),
        (r"^x/(?P<a>\d+)/(?P=a)/$", "x/{a}/{a}/"),
        (r"^(?:en|de)/home/$", "(en|de)/home/"),
        (r"^look(?=ahead)ahead/$", "lookahead/"),
        (r"^comment(?#why)/$", "comment/"),
        (r"^opt(?P<tail>/[a-z]+)*$", "opt[{tail}]"),
        (r"^brace{literal$", "brace{literal"),
        (r"^[]x]/$", "*/"),
        (r"^unclosed/(?P<pk>\d+", "unclosed/{pk}"),
    ],
)
def test_regex_routes_read_as_templates(regex, template):
    assert regex_template(regex) == template


@given(st.text(max_size=300))
def test_any_text_gives_a_bounded_template_without_raising(text):
    template = route_template(text, urlconf="tests.testapp.urls")
    assert 0 < len(template) <= MAX_TEMPLATE_LENGTH


def test_long_templates_are_cut_with_a_mark():
    template = route_template("^" + "segment/" * 40 + "$", urlconf="tests.testapp.urls")
    assert len(template) == MAX_TEMPLATE_LENGTH and template.endswith("…")


ROUTES = {
    # DRF SimpleRouter under a path() include, with and without format suffixes
    "/routes/simple/budgets/": "routes/simple/budgets/",
    "/routes/simple/budgets/7/": "routes/simple/budgets/{pk}/",
    "/routes/simple/budgets/7/set-limit/": "routes/simple/budgets/{pk}/set-limit/",
    "/routes/simple/budgets/by-month/2026-11/": "routes/simple/budgets/by-month/{month}/",
    # DefaultRouter: root view, format suffixes
    "/routes/api/": "routes/api/",
    "/routes/api/.json": "routes/api/.{format}",  # a path() route with DRF's converter
    "/routes/api/users/me/budgets/": "routes/api/users/me/budgets/",
    "/routes/api/users/me/budgets/7/": "routes/api/users/me/budgets/{pk}/",
    "/routes/api/users/me/budgets/7.json": "routes/api/users/me/budgets/{pk}.{format}[/]",
    # re_path include prefix, nested and optional groups, unnamed groups
    "/routes/re/items/5/": "routes/re/items/{pk}/",
    "/routes/re/items/5/notes/": "routes/re/items/{pk}[/{part}]/",
    "/routes/re/archive/2026/11/": "routes/re/archive/{arg1}/{arg2}/",
    "/routes/re/files/report.final.csv": "routes/re/files/{name}.{ext}",
    "/routes/re/v2.1/ping": "routes/re/v{version}/ping[/]",
    # converters, a regex inside a converter include, a literal dot in path()
    "/routes/orgs/3/members/ada/": "routes/orgs/{org}/members/{member}/",
    "/routes/orgs/3/teams/core/": "routes/orgs/{org}/teams/{team}/",
    "/routes/v1.0/status/": "routes/v1.0/status/",
}


def method_of(path: str) -> str:
    return "POST" if path.endswith("set-limit/") else "GET"


@pytest.mark.parametrize(("path", "template"), ROUTES.items())
def test_span_name_route_and_duration_metric_agree(client, otel_capture, path, template):
    method = method_of(path)
    response = client.generic(method, path, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.content
    (span,) = [s for s in otel_capture.spans() if s.kind.name == "SERVER"]
    assert span.name == f"{method} {template}"
    assert span.attributes["http.route"] == template
    (point,) = otel_capture.metric_points("http.server.request.duration")
    assert point.attributes["http.route"] == template


def test_every_view_of_the_urlconf_has_a_template():
    templates = routes.templates_of("tests.testapp.urls")
    for route, template in templates.items():
        assert "(?P<" not in template and "^" not in template and "$" not in template, (route, template)
        assert "<" not in template or "(" in route, (route, template)


def test_the_middleware_sits_right_after_djangos_instrumentation(upstream_server):
    from django.conf import settings
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    from otel_hcv.bootstrap import ROUTE_TEMPLATES

    middleware = list(settings.MIDDLEWARE)
    assert middleware.index(ROUTE_TEMPLATES) == middleware.index(DjangoInstrumentor._opentelemetry_middleware) + 1
