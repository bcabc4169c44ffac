"""Readable route templates for span names, ``http.route`` and metric attributes.

Django reports the route of a request as the text of its URL patterns joined together:
``path()`` routes read well (``api/users/<int:pk>/``), but ``re_path()`` routes and the
routes of DRF's routers are regular expressions (``^api/budgets/(?P<pk>[^/.]+)/$``).
This module turns every route into one template style:

- parameters become ``{name}``: path converters (``<int:pk>``), named groups
  (``(?P<pk>...)``) and back-references; unnamed groups become ``{arg1}``, ``{arg2}``...
- optional parts are in brackets: ``(?:\\.(?P<format>json|api))?`` reads ``[.{format}]``,
  a trailing ``/?`` reads ``[/]``;
- anchors and lookarounds disappear; any other pattern (``.*``, ``[0-9]+``, ``\\d``) is ``*``;
- the root route is ``/``; a template is at most :data:`MAX_TEMPLATE_LENGTH` characters.

Templates are worked out from the URL patterns themselves (each part knows whether it is a
``path()`` or a ``re_path()``), once per URLconf, so a dot in ``path("v1.0/")`` stays a dot.
"""

from __future__ import annotations

import functools
import re
from typing import Any

MAX_TEMPLATE_LENGTH = 128
WILDCARD = "*"
_CONVERTER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>")
# Escapes that stand for a class of characters (a wildcard) or match no character at all.
_CLASS_ESCAPES = frozenset("dDwWsS")
_ZERO_WIDTH_ESCAPES = frozenset("bBAZ")
_END = "\0"  # what the reader sees past the end of a pattern


def bounded(template: str) -> str:
    if len(template) <= MAX_TEMPLATE_LENGTH:
        return template
    return template[: MAX_TEMPLATE_LENGTH - 1] + "…"


def path_template(route: str) -> str:
    """A ``path()`` route: converters become ``{name}``, everything else is literal.

    A converter whose pattern starts with fixed text keeps it: DRF's format suffix
    (``<drf_format_suffix:format>`` matches ``.json``) reads ``.{format}``.
    """
    return _CONVERTER.sub(lambda m: _converter_prefix(m["converter"]) + "{" + m["parameter"] + "}", route)


@functools.lru_cache(maxsize=64)
def _converter_prefix(name: str | None) -> str:
    if not name:
        return ""
    try:
        from django.urls.converters import get_converters

        converter = get_converters().get(name)
    except Exception:
        return ""
    pattern = str(getattr(converter, "regex", ""))
    template = regex_template(pattern)
    return re.split(r"[*({\[|]", template, maxsplit=1)[0]


class _RegexRenderer:
    """A small recursive-descent reader of Python regular expressions that writes the
    template of what they match. It never fails: what it does not understand is ``*``."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.pos = 0
        self.unnamed = 0

    def render(self) -> str:
        return _collapse(self._alternatives(top_level=True))

    def _peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else _END

    def _alternatives(self, top_level: bool = False) -> str:
        branches = [self._sequence()]
        while self._peek() == "|":
            self.pos += 1
            branches.append(self._sequence())
        if len(branches) == 1:
            return branches[0]
        return "(" + "|".join(branches) + ")" if not top_level else "|".join(branches)

    def _sequence(self) -> str:
        parts: list[str] = []
        while self.pos < len(self.text) and self._peek() not in "|)":
            atom = self._atom()
            parts.append(self._quantified(atom))
        return _collapse("".join(parts))

    def _atom(self) -> str:
        char = self._peek()
        self.pos += 1
        if char == "\\":
            escaped = self._peek()
            self.pos += 1
            if escaped in _CLASS_ESCAPES or (escaped.isdigit() and escaped != "0"):
                return WILDCARD
            if escaped in _ZERO_WIDTH_ESCAPES or escaped == _END:
                return ""
            if escaped in "xuUN" or escaped.isalpha():
                return WILDCARD  # a character given by code: rare in URLs
            return escaped
        if char in "^$":
            return ""
        if char == ".":
            return WILDCARD
        if char == "[":
            self._skip_class()
            return WILDCARD
        if char == "(":
            return self._group()
        return char

    def _skip_class(self) -> None:
        if self._peek() == "^":
            self.pos += 1
        if self._peek() == "]":  # a leading ] is a literal inside a class
            self.pos += 1
        while self.pos < len(self.text) and self._peek() != "]":
            self.pos += 2 if self._peek() == "\\" else 1
        self.pos += 1

    def _group(self) -> str:
        if self._peek() != "?":
            self.unnamed += 1
            number = self.unnamed
            self._alternatives()
            self._close()
            return f"{{arg{number}}}"
        self.pos += 1
        kind = self._peek()
        if kind == "P" and self._peek(1) == "<":
            end = self.text.find(">", self.pos)
            name = self.text[self.pos + 2 : end] if end > 0 else ""
            self.pos = end + 1 if end > 0 else len(self.text)
            self._alternatives()
            self._close()
            return "{" + name + "}" if name else WILDCARD
        if kind == "P" and self._peek(1) == "=":
            end = self.text.find(")", self.pos)
            name = self.text[self.pos + 2 : end] if end > 0 else ""
            self.pos = end + 1 if end > 0 else len(self.text)
            return "{" + name + "}" if name else WILDCARD
        if kind == "#":
            end = self.text.find(")", self.pos)
            self.pos = end + 1 if end > 0 else len(self.text)
            return ""
        if kind in "=!" or (kind == "<" and self._peek(1) in "=!"):
            self.pos += 1 if kind in "=!" else 2
            self._alternatives()
            self._close()
            return ""  # a lookaround matches no characters
        # (?:...), (?i:...) and inline flags (?i)
        while self.pos < len(self.text) and self._peek() not in ":)":
            self.pos += 1
        if self._peek() == ")":
            self.pos += 1
            return ""
        self.pos += 1
        inner = self._alternatives()
        self._close()
        return inner

    def _close(self) -> None:
        if self._peek() == ")":
            self.pos += 1

    def _quantified(self, atom: str) -> str:
        char = self._peek()
        if char not in "?*+{":
            return atom
        if char == "{":
            end = self.text.find("}", self.pos)
            bounds = self.text[self.pos + 1 : end] if end > 0 else ""
            if not re.fullmatch(r"\d*(,\d*)?", bounds) or end < 0:
                return atom  # a literal brace
            self.pos = end + 1
            minimum = int(bounds.split(",")[0] or 0)
        else:
            self.pos += 1
            minimum = 0 if char in "?*" else 1
        if self._peek() in "?+":  # lazy or possessive
            self.pos += 1
        if atom in ("", WILDCARD):
            return atom
        repeated = char != "?" and not (char == "{" and bounds in ("0,1", "1", ",1"))
        if (atom.startswith("{") and atom.endswith("}")) or not repeated:
            return f"[{atom}]" if minimum == 0 else atom
        return WILDCARD  # a literal repeated: "a+", "/{2}"


def _collapse(template: str) -> str:
    while WILDCARD * 2 in template:
        template = template.replace(WILDCARD * 2, WILDCARD)
    return template


def regex_template(regex: str) -> str:
    """A ``re_path()`` route as a template (see the module docstring)."""
    return _RegexRenderer(regex).render()


def _pattern_template(pattern: Any) -> str:
    from django.urls.resolvers import RegexPattern, RoutePattern

    if isinstance(pattern, RoutePattern):
        return path_template(str(pattern))
    if isinstance(pattern, RegexPattern):
        return regex_template(str(pattern))
    return str(pattern)  # LocalePrefixPattern and custom patterns: their text


def _join_route(first: str, second: str) -> str:
    # As django.urls.resolvers.URLResolver._join_route joins ResolverMatch.route.
    return second if not first else first + second.removeprefix("^")


@functools.lru_cache(maxsize=16)
def templates_of(urlconf: Any) -> dict[str, str]:
    """{``ResolverMatch.route``: template} for every view of ``urlconf``."""
    from django.urls import URLResolver, get_resolver

    found: dict[str, str] = {}

    def walk(patterns: Any, route: str, template: str) -> None:
        for entry in patterns:
            joined_route = _join_route(route, str(entry.pattern))
            joined_template = template + _pattern_template(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, joined_route, joined_template)
            else:
                found.setdefault(joined_route, joined_template)

    walk(get_resolver(urlconf).url_patterns, "", "")
    return found


def route_template(route: str, urlconf: Any = None) -> str:
    """The template of a resolved route (``request.resolver_match.route``)."""
    try:
        if urlconf is None:
            from django.conf import settings

            urlconf = settings.ROOT_URLCONF
        template = templates_of(urlconf).get(route)
    except Exception:  # a URLconf that cannot be walked: read the route as a regex
        template = None
    if template is None:
        template = path_template(regex_template(route)) if "<" in route else regex_template(route)
    return bounded(template) or "/"
