"""What may leave the process, for every signal: the rules as data, and the functions that apply them.

Spans (attributes, events, names, status, trace state), metric attributes and exemplars, the JSON
log lines, OTLP log records and Sentry events all call this module; none keeps a rule of its own.

The posture:

- **Positive where the shape is known.** Attribute keys of the semantic conventions, this package's
  own keys and the keys an application declares safe (``SAFE_KEYS``) keep their values (strings
  still pass the credential patterns). Any other key is screened: its name is matched by tokens
  against lab fields and their clinical synonyms, person identifiers and credentials; numbers,
  containers and objects under it never leave as they are.
- **Screened where it is free text.** Messages, exception text, paths, header values: credentials,
  e-mail addresses and URL passwords are removed; so are numbers after a lab name or synonym,
  whatever the separator, decimal numbers and numbers inside bracketed structures. Query strings
  are removed after percent-decoding. Exception messages never leave; stack traces keep frames
  and exception type names only.
- **Fail closed.** A rule that raises drops the value (and counts it): nothing falls back to the raw
  value.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import linecache
import logging
import math
import os
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from otel_hcv import accounting, conf

logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"

# Attribute keys for the user on spans: the semantic conventions' pseudonymous id,
# and the raw id only when pseudonymisation is turned off explicitly.
PSEUDONYMOUS_USER_ID_KEY = "enduser.pseudo.id"
RAW_USER_ID_KEY = "enduser.id"

# ------------------------------------------------------------------------------------------
# The rules, as data
# ------------------------------------------------------------------------------------------

# The twelve fields of the HCV data set and the names clinicians and lab systems give them.
# Multi-word names match with any of " ", "_", "-", "." (or nothing) between the words.
LAB_TERMS: Mapping[str, tuple[str, ...]] = {
    "age": ("age", "years old"),
    "sex": ("sex", "gender"),
    "alb": ("alb", "albumin", "albumine"),
    "alp": ("alp", "alkaline phosphatase", "alk phos", "alkphos"),
    "alt": ("alt", "alat", "sgpt", "alanine aminotransferase", "alanine transaminase", "gpt"),
    "ast": ("ast", "asat", "sgot", "aspartate aminotransferase", "aspartate transaminase", "got"),
    "bil": ("bil", "bili", "tbil", "bilirubin", "total bilirubin"),
    "che": ("che", "pche", "cholinesterase", "pseudocholinesterase"),
    "chol": ("chol", "cholesterol", "total cholesterol"),
    "crea": ("crea", "creat", "creatinine", "kreatinin"),
    "ggt": ("ggt", "ggtp", "gamma gt", "gamma glutamyl transferase", "gamma glutamyltransferase"),
    "prot": ("prot", "protein", "total protein", "tp"),
}
# Who a person is: never exported, whatever the signal.
PERSON_TERMS: tuple[str, ...] = (
    "user", "enduser", "name", "username", "user name", "login", "first name", "firstname", "last name", "lastname",
    "given name", "family name", "surname", "full name", "fullname", "display name", "nickname",
    "patient", "birth", "birthdate", "birthday", "dob", "date of birth", "email", "e mail", "mail",
    "phone", "telephone", "mobile", "address", "street", "postcode", "postal code", "zip", "ssn",
    "social security", "mrn", "insurance number", "passport",
)  # fmt: skip
# Credentials and what leads to them.
CREDENTIAL_TERMS: tuple[str, ...] = (
    "password", "passwd", "pwd", "pass", "secret", "token", "authorization", "auth", "cookie",
    "session", "sessionid", "api key", "apikey", "csrf", "xsrf", "credential", "credentials",
    "private key", "signature", "dsn", "bearer", "jwt", "otp",
)  # fmt: skip
# A key token that merely contains one of these is a credential too ("csrftoken", "xauthtoken").
# ("authoriz" is not one: Django's "Unauthorized: /path" lines would lose their path.)
CREDENTIAL_STEMS: tuple[str, ...] = ("passw", "token", "secret", "csrf", "xsrf", "apikey", "cookie", "credential",
                                     "sessionid")  # fmt: skip

# Attribute keys whose values are facts about software and infrastructure, not about a person:
# the semantic conventions' keys the instrumentations this package uses set, and our own.
# Strings under them still pass the credential and e-mail patterns.
SAFE_ATTRIBUTE_KEYS: frozenset[str] = frozenset({
    # HTTP (stable and old conventions)
    "http.request.method", "http.request.method_original", "http.response.status_code", "http.route",
    "http.request.body.size", "http.response.body.size", "http.request.size", "http.response.size",
    "http.method", "http.status_code", "http.scheme", "http.flavor", "http.server_name", "http.host",
    "http.request_content_length", "http.response_content_length", "http.resend_count",
    "url.scheme", "url.template", "user_agent.original", "user_agent.synthetic.type",
    "server.address", "server.port", "network.protocol.name", "network.protocol.version",
    "network.transport", "network.type", "network.peer.port", "network.local.address", "network.local.port",
    "net.host.name", "net.host.port", "net.peer.port", "net.protocol.version", "net.transport",
    "error.type", "exception.type", "exception.escaped",
    # databases and caches
    "db.system", "db.system.name", "db.name", "db.namespace", "db.operation", "db.operation.name",
    "db.collection.name", "db.sql.table", "db.response.status_code", "db.redis.database_index",
    "db.client.connection.pool.name", "db.client.connection.state", "db.operation.batch.size",
    # code, threads, the SDK and the collector
    "code.function", "code.function.name", "code.namespace", "code.filepath", "code.file.path",
    "code.lineno", "code.line.number", "thread.id", "thread.name",
    "otel.status_code", "otel.status_description", "otel.scope.name", "otel.scope.version",
    "otel.component.type", "otel.component.name", "otel.signal", "otel.span.sampling_result",
    # this package
    "hcv.endpoint", "hcv.request.id", "hcv.diagnosis.outcome", "hcv.diagnosis.category",
    "hcv.diagnosis.probability", "hcv.model.version", "hcv.health.check", "hcv.health.critical",
    "hcv.health.status", "hcv.disk.path", "system.memory.state", PSEUDONYMOUS_USER_ID_KEY,
    # the resource (service and process facts)
    "service.name", "service.version", "service.namespace", "service.instance.id", "deployment.environment.name",
    "deployment.environment", "host.name", "host.arch", "os.type", "os.name", "os.version", "process.pid",
    "process.runtime.name", "process.runtime.version", "telemetry.sdk.name", "telemetry.sdk.language",
    "telemetry.sdk.version", "telemetry.distro.name", "telemetry.distro.version",
    # the monitoring plan's log fields and Django's own log extras
    "request_id", "endpoint", "status_code", "method", "duration", "duration_ms", "trace_id", "span_id",
    # servers' access lines (otel_hcv.servers)
    "http.server.request.duration", "url.path",
})  # fmt: skip

# Loggers whose message arguments are written as they are (strings still pass the credential
# patterns, paths lose their query strings): this package's and the SDK's own diagnostics, and
# servers' access logs (request line, status, size).
SAFE_LOGGERS: tuple[str, ...] = ("otel_hcv", "opentelemetry", "django.server", "gunicorn.access",
                                 "gunicorn.error", "uvicorn.access", "uvicorn.error")  # fmt: skip

# Attributes holding a client's address: the IP policy applies.
CLIENT_ADDRESS_KEYS = frozenset({"client.address", "http.client_ip", "net.peer.ip", "net.sock.peer.addr",
                                 "network.peer.address", "ip_address", "remote_addr"})  # fmt: skip
# Attributes holding a URL, a path or a target (path and query).
URL_KEYS = frozenset({"url.full", "http.url", "http.target", "url.path", "url.original", "path", "url"})
QUERY_KEYS = frozenset({"url.query", "url.fragment", "query_string", "http.query", "http.fragment"})
SQL_KEYS = frozenset({"db.statement", "db.query.text"})
HEADER_KEY_PREFIXES = ("http.request.header.", "http.response.header.")

# ------------------------------------------------------------------------------------------
# Key names
# ------------------------------------------------------------------------------------------

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=8192)
def key_tokens(key: str) -> tuple[str, ...]:
    """``"hcv.labAlb_value"`` -> ``("hcv", "lab", "alb", "value")``: split on dots, underscores,
    dashes, spaces and camelCase, lower-cased."""
    return tuple(token for token in _NOT_ALNUM.split(_CAMEL_BOUNDARY.sub(" ", key).lower()) if token)


def _term_tokens(term: str) -> tuple[str, ...]:
    return tuple(term.lower().split())


@dataclass(frozen=True)
class Rules:
    """The rules in force for one :class:`conf.Settings`: built once, then only read."""

    sensitive_terms: frozenset[tuple[str, ...]]
    declared_sensitive_keys: frozenset[str]
    safe_keys: frozenset[str]
    safe_loggers: tuple[str, ...]
    lab_pattern: re.Pattern[str]
    settings: conf.Settings
    # Free text already screened under these rules: log messages and extras repeat (one format
    # string, a few endpoint names), and screening one costs a dozen regular-expression passes.
    # Raw text stays in this process's memory, as it already was.
    screened: dict[tuple[str, bool], str] = field(default_factory=dict, compare=False, repr=False)

    safe_logger_names: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    # Span and event attributes already screened: most (method, route, status, endpoint, model
    # version, category) repeat on every request. Keyed by the value's type too: True, 1 and 1.0
    # are equal as dictionary keys but not as attributes.
    attributes: dict[tuple[str, type, Any], Any] = field(default_factory=dict, compare=False, repr=False)

    def is_safe_logger(self, name: str) -> bool:
        answer = self.safe_logger_names.get(name)
        if answer is None:
            answer = any(name == safe or name.startswith(safe + ".") for safe in self.safe_loggers)
            if len(self.safe_logger_names) < SCREENED_MEMO_ENTRIES:  # logger names are few; bounded anyway
                self.safe_logger_names[name] = answer
        return answer


def _build_rules(settings: conf.Settings) -> Rules:
    extra_sensitive = {key.lower() for key in settings.sensitive_keys}
    terms = {
        _term_tokens(term)
        for term in (*(t for ts in LAB_TERMS.values() for t in ts), *PERSON_TERMS, *CREDENTIAL_TERMS)
    }
    terms |= {key_tokens(key) for key in extra_sensitive if key_tokens(key)}
    lab_words = sorted((t for ts in LAB_TERMS.values() for t in ts), key=len, reverse=True)
    # A lab name between non-letters ("hcv.lab_alb", "ALB(g/L)"), words joined by any separator.
    alternatives = "|".join(r"[\s_.\-]*".join(map(re.escape, word.split())) for word in lab_words)
    lab_pattern = re.compile(rf"(?i)(?<![a-z])(?:{alternatives})(?![a-z])")
    return Rules(
        sensitive_terms=frozenset(terms),
        declared_sensitive_keys=frozenset(extra_sensitive),
        safe_keys=SAFE_ATTRIBUTE_KEYS | frozenset(settings.safe_keys),
        safe_loggers=(*SAFE_LOGGERS, *settings.safe_loggers),
        lab_pattern=lab_pattern,
        settings=settings,
    )


_rules_cache: dict[int, Rules] = {}


def rules_for(settings: conf.Settings) -> Rules:
    rules = _rules_cache.get(id(settings))
    if rules is None or rules.settings is not settings:
        rules = _build_rules(settings)
        if len(_rules_cache) > 64:
            _rules_cache.clear()
        _rules_cache[id(settings)] = rules
    return rules


@functools.lru_cache(maxsize=8192)
def _tokens_are_sensitive(tokens: tuple[str, ...], terms: frozenset[tuple[str, ...]]) -> bool:
    for size in {len(term) for term in terms}:
        for start in range(len(tokens) - size + 1):
            if tokens[start : start + size] in terms:
                return True
    return any(stem in token for token in tokens for stem in CREDENTIAL_STEMS)


def is_sensitive_key(key: str, settings: conf.Settings) -> bool:
    """True when a key names health data, a person or a credential, by any of its name tokens
    (``hcv.lab_alb``, ``patientAge``, ``crea_umol_l``, ``x-csrftoken``, ``enduser.username``).
    Keys declared safe (``SAFE_KEYS``) and the semantic conventions' keys are not."""
    rules = rules_for(settings)
    if key in rules.safe_keys:
        return False
    if key.lower() in rules.declared_sensitive_keys:
        return True
    return _tokens_are_sensitive(key_tokens(key), rules.sensitive_terms)


def is_person(value: object) -> bool:
    """An object that stands for a user (Django's ``User``, ``AnonymousUser`` and look-alikes):
    its ``str()`` is a user name."""
    return callable(getattr(value, "get_username", None)) or hasattr(type(value), "USERNAME_FIELD")


# ------------------------------------------------------------------------------------------
# Free text
# ------------------------------------------------------------------------------------------

_CREDENTIAL_PATTERNS = (
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)*\.[A-Za-z]{2,}\b"),  # e-mail addresses (not "app@1.2.3")
    re.compile(r"(?i)\bbearer\s+[\w\-.~+/]+=*"),  # bearer tokens
    re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"),  # JWTs
    re.compile(r"(?i)\btoken\s+[0-9a-f]{20,}"),  # DRF "Token <key>" headers
    re.compile(r"(?i)\bbasic\s+[A-Za-z0-9+/]{8,}=*"),  # basic auth
)
# "scheme://user:password@host": the user info goes, the rest stays.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@")
# "name=value", "name: value", "'name': 'value'", "name => value": the value of a sensitive name.
_PAIR = re.compile(
    r"""(?P<quote>['"]?)(?P<name>[A-Za-z_][\w.\-]*)(?P=quote)(?P<sep>\s*(?:=>|[:=])\s*)"""
    r"""(?P<value>'[^']*'|"[^"]*"|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}|[^\s,;&})\]]+)"""
)
_NUMBER = r"[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
# Numbers that follow a lab name: up to 24 characters of anything but digits, line breaks and
# query-string or statement separators between the name and the first number and between one
# number and the next.
_AFTER_LAB = re.compile(rf"(?:[^\d\n&;|]{{0,24}}?{_NUMBER})+")
# A decimal number on its own ("41.37", "41,37"), not a version or an address ("1.2.3").
_DECIMAL = re.compile(r"(?<![\w.,])(?<!HTTP/)\d+[.,]\d+(?![.,]?\d)(?![\w.]*\.\d)")
# Numbers inside brackets or braces: a list, tuple, dict or set written out.
_BRACKETED = re.compile(r"[\[{(][^\[\]{}()\n]*\d[^\[\]{}()\n]*[\]})]")
# A number that is not part of a name ("arg1" in a route template "{arg1}" is a name).
_STANDALONE_NUMBER = re.compile(rf"(?<![A-Za-z_]){_NUMBER}(?![A-Za-z_])")
# A path ("/api/x/?q=1") or URL ("https://h/x?q=1") inside free text.
_PATH_IN_TEXT = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.\-]*://[^\s\"'<>]+|(?<![\w/:.])/[^\s\"'<>]*)")
_MAYBE_SENSITIVE = re.compile(r"[@:=/]|eyJ|(?i:bearer|token|basic)")


def _redact_numbers(text: str) -> str:
    return _NUMBER_RE.sub(REDACTED, text)


def _screen_pairs(text: str, rules: Rules) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if not is_sensitive_key(name, rules.settings):
            return match.group(0)
        quote = match.group("quote")
        return f"{quote}{name}{quote}{match.group('sep')}{REDACTED}"

    return _PAIR.sub(replace, text)


def _screen_lab_numbers(text: str, rules: Rules) -> str:
    pieces: list[str] = []
    position = 0
    for match in rules.lab_pattern.finditer(text):
        if match.start() < position:
            continue
        following = _AFTER_LAB.match(text, match.end())
        if following is None:
            continue
        pieces.append(text[position : match.end()])
        pieces.append(_redact_numbers(following.group(0)))
        position = following.end()
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


def _screen_credentials(text: str) -> str:
    if _MAYBE_SENSITIVE.search(text) is None:
        return text
    for pattern in _CREDENTIAL_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _URL_USERINFO.sub(rf"\1{REDACTED}@", text)


def screen_text(text: str, settings: conf.Settings, *, strict: bool = True) -> str:
    """Free text as it may leave the process.

    Always: credentials, e-mail addresses and URL passwords are removed, paths and URLs lose
    their query strings (after percent-decoding), values of sensitive ``name=value`` pairs and
    numbers after a lab name or synonym are redacted. ``strict`` (text nobody declared safe)
    also redacts decimal numbers and numbers inside brackets or braces.
    """
    rules = rules_for(settings)
    if len(text) > SCREENED_MEMO_TEXT_LENGTH:
        return _screen_text(text, rules, strict)
    return _remembered(rules.screened, (text, strict), _screen_text, text, rules, strict)


SCREENED_MEMO_ENTRIES = 4096
SCREENED_MEMO_TEXT_LENGTH = 256
_NOT_REMEMBERED = object()


def _remembered(memo: dict[Any, Any], key: Any, screen: Callable[..., Any], *arguments: Any) -> Any:
    """``screen(*arguments)``, remembered in ``memo`` under ``key``; at most
    :data:`SCREENED_MEMO_ENTRIES` entries: a flood of distinct values (ids) starts the memo
    over rather than growing it."""
    value = memo.get(key, _NOT_REMEMBERED)
    if value is _NOT_REMEMBERED:
        value = screen(*arguments)
        if len(memo) >= SCREENED_MEMO_ENTRIES:
            memo.clear()
        memo[key] = value
    return value


def _screen_text(text: str, rules: Rules, strict: bool) -> str:
    settings = rules.settings
    text = _screen_credentials(text)
    if "/" in text:
        text = _PATH_IN_TEXT.sub(lambda m: screen_url(m.group(0), settings), text)
    text = _screen_pairs(text, rules)
    text = _screen_lab_numbers(text, rules)
    if strict:
        text = _BRACKETED.sub(lambda m: _STANDALONE_NUMBER.sub(REDACTED, m.group(0)), text)
        text = _DECIMAL.sub(REDACTED, text)
    return text


def screen_url(value: str, settings: conf.Settings) -> str:
    """A URL or path as it may leave: percent-decoded (so ``%3F`` is a ``?``), without user info,
    query or fragment (a ``?[REDACTED]`` shows there was a query), and with the pair rules of
    free text applied to the path (``/api/alb=41.37/`` loses the number)."""
    decoded = value
    for _ in range(3):  # double-encoded input decodes twice
        if "%" not in decoded:
            break
        decoded = unquote(decoded)
    try:
        parts = urlsplit(decoded)
    except ValueError:
        return REDACTED
    query = "?" + REDACTED if parts.query or decoded.endswith("?") else ""
    netloc = parts.netloc.rsplit("@", 1)[-1]
    rules = rules_for(settings)
    path = _screen_lab_numbers(_screen_pairs(_screen_credentials(parts.path), rules), rules)
    return urlunsplit((parts.scheme, netloc, path, "", "")) + query


def screen_sql(statement: str, settings: conf.Settings) -> str:
    """A database statement with its literals (strings and numbers) replaced by ``?``: a query
    written with values instead of parameters carries those values."""
    statement = re.sub(r"'(?:[^']|'')*'", "?", statement)
    statement = re.sub(r"(?<![\w.$])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])", "?", statement)
    return _screen_credentials(statement)


# ------------------------------------------------------------------------------------------
# Exceptions and stack traces
# ------------------------------------------------------------------------------------------

TYPE_NAME = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*")


def exception_type_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


def stacktrace_of(exc: BaseException) -> str:
    """A stack trace built from the exception's structure: for every exception in the chain and
    in exception groups, its frames (file, line, function, source line) and its type name, never
    its message or notes."""
    lines: list[str] = []
    try:
        _append_exception(traceback.TracebackException.from_exception(exc, capture_locals=False), lines, 0, set())
    except Exception:  # fail closed: no stack trace rather than a raw one
        accounting.count_dropped("logs", "redaction_failed")
        return REDACTED
    return "\n".join(lines)


_DEFAULT_RULES_SETTINGS = conf.Settings()


def _screen_source(line: str) -> str:
    """A source line of a frame: code, not data, but a literal in it can be a credential, an
    e-mail address or a lab value typed into the code; those go as in any text."""
    rules = rules_for(_DEFAULT_RULES_SETTINGS)
    return _screen_lab_numbers(_screen_pairs(_screen_credentials(line), rules), rules)


def _append_exception(te: traceback.TracebackException, lines: list[str], depth: int, seen: set[int]) -> None:
    if id(te) in seen or depth > 20:
        return
    seen.add(id(te))
    indent = "  " * depth
    if te.__cause__ is not None:
        _append_exception(te.__cause__, lines, depth, seen)
        lines.extend(["", f"{indent}The above exception was the direct cause of the following exception:", ""])
    elif te.__context__ is not None and not te.__suppress_context__:
        _append_exception(te.__context__, lines, depth, seen)
        lines.extend(["", f"{indent}During handling of the above exception, another exception occurred:", ""])
    if te.stack:
        lines.append(f"{indent}Traceback (most recent call last):")
        for frame_text in te.stack.format():
            lines.extend(indent + _screen_source(line) for line in frame_text.rstrip("\n").split("\n"))
    # Python 3.13 names the type as text (and deprecates exc_type); before, the class.
    type_name = getattr(te, "exc_type_str", None)
    if type_name is None:
        exc_type = getattr(te, "exc_type", None)
        type_name = exception_type_name(exc_type) if exc_type is not None else "Exception"
    lines.append(f"{indent}{type_name}" + (f": {REDACTED}" if str(te) else ""))
    for index, member in enumerate(te.exceptions or (), 1):
        lines.append(f"{indent}  +---------------- {index} ----------------")
        _append_exception(member, lines, depth + 1, seen)


_FRAME_LINE = re.compile(r'^(?P<indent>\s*)File "(?P<path>[^"\n]*)", line (?P<line>\d+), in (?P<func>\S+)$')
_FUNCTION_NAME = re.compile(r"[A-Za-z_]\w*|<[\w .\-]+>")
_CARET_LINE = re.compile(r"^\s*[~^\s]+$")
_STRUCTURE_LINES = re.compile(
    r"^\s*(Traceback \(most recent call last\):|Exception Group Traceback \(most recent call last\):|"
    r"During handling of the above exception, another exception occurred:|"
    r"The above exception was the direct cause of the following exception:|"
    r"\[Previous line repeated \d+ more times?\]|\+[-+]+(?: \d+ -+| \.\.\.(?: \d+ more)? -+)?|"
    r"\.\.\. \d+ more|\.\.\.)$"
)
# The "| " and "+" margins exception groups draw around their members' lines.
_GROUP_MARGIN = re.compile(r"^(?P<margin>(?:\s*[|+](?= |-|$))*)\s?")


@functools.lru_cache(maxsize=2048)
def _source_file_lines(path: str) -> int:
    """How many lines the file a frame names has (0: not a file this process can read)."""
    if path.startswith("<") and path.endswith(">"):
        return -1  # "<string>", "<frozen importlib._bootstrap>": no source lines are shown
    if not os.path.isfile(path):
        return 0
    return len(linecache.getlines(path))


def _genuine_frame(match: re.Match[str]) -> bool:
    lines = _source_file_lines(match.group("path"))
    return (
        lines != 0
        and (lines < 0 or int(match.group("line")) <= lines)
        and _FUNCTION_NAME.fullmatch(match.group("func")) is not None
    )


def screen_stacktrace(text: str) -> str:
    """A formatted stack trace (``traceback.format_exception`` output, as the SDK records it on a
    span) reduced to what is known to be code: frames whose file exists with that many lines,
    their source lines as the file has them, carets, the traceback's own headers, and exception
    type names where a type line can stand (after frames). Messages, notes, continuation lines and
    anything that only looks like a frame become one ``[REDACTED]`` each run."""
    out: list[str] = []
    frame: re.Match[str] | None = None  # the frame whose source line may follow
    type_line_may_follow = False
    for raw in text.splitlines():
        margin_match = _GROUP_MARGIN.match(raw)
        margin = margin_match.group("margin") if margin_match else ""
        line = raw[margin_match.end() :] if margin_match else raw
        if not line.strip() or _STRUCTURE_LINES.match(line) or _STRUCTURE_LINES.match(raw):
            out.append(raw)
            frame = None
            # A group member without frames starts with its type line right after its separator.
            type_line_may_follow = line.strip().startswith(("+", "Traceback", "Exception Group Traceback"))
            continue
        match = _FRAME_LINE.match(line)
        if match is not None and _genuine_frame(match):
            out.append(raw)
            frame, type_line_may_follow = match, True
            continue
        if frame is not None and (_CARET_LINE.match(line) or _is_source_line(line, frame)):
            out.append(_screen_source(raw))
            continue
        frame = None
        header = line.split(":", 1)[0].strip()
        if type_line_may_follow and TYPE_NAME.fullmatch(header):
            out.append(margin + (" " if margin else "") + header + (f": {REDACTED}" if ":" in line else ""))
        else:
            redacted = margin + (" " if margin else "") + REDACTED
            if not out or out[-1] != redacted:
                out.append(redacted)
        type_line_may_follow = False
    return "\n".join(out)


def _is_source_line(line: str, frame: re.Match[str]) -> bool:
    path = frame.group("path")
    if _source_file_lines(path) <= 0:
        return False
    source = linecache.getline(path, int(frame.group("line"))).strip()
    return bool(source) and line.strip() == source


# ------------------------------------------------------------------------------------------
# Structures: the one walker
# ------------------------------------------------------------------------------------------

MAX_DEPTH = 8
MAX_ITEMS = 100


def safe_structure(value: Any, settings: conf.Settings, *, key: str | None = None, safe: bool = False) -> Any:
    """``value`` as it may leave, JSON-safe (dicts, lists, strings, numbers, booleans, None).

    Under a sensitive ``key``: the marker. Strings are screened. Numbers leave only under a key
    known or declared safe (``safe``). Mappings and sequences are walked with the same rules
    (their keys checked, their items screened); any other object leaves as ``<TypeName>``, or as
    its screened text under a safe key; an object that stands for a user never leaves. Never
    raises: whatever cannot be screened is dropped (and counted).
    """
    try:
        return _walk(value, rules_for(settings), key, safe, 0)
    except Exception:
        accounting.count_dropped("logs", "redaction_failed")
        return REDACTED


def _walk(value: Any, rules: Rules, key: str | None, safe: bool, depth: int) -> Any:
    if key is not None:
        if key in rules.safe_keys:
            safe = True
        elif is_sensitive_key(key, rules.settings):
            return REDACTED
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return screen_text(value, rules.settings, strict=not safe)
    if isinstance(value, int | float | Decimal | Fraction):
        if not safe:
            return REDACTED
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value if isinstance(value, int | float) else str(value)
    if depth >= MAX_DEPTH:
        return REDACTED
    if is_person(value):
        return REDACTED
    if isinstance(value, Mapping):
        walked: dict[str, Any] = {}
        for index, (item_key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                walked["…"] = REDACTED
                break
            name = item_key if isinstance(item_key, str) else _opaque(item_key, rules, safe)
            walked[screen_text(name, rules.settings, strict=False)] = _walk(item, rules, name, safe, depth + 1)
        return walked
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)[:MAX_ITEMS]
        return [_walk(item, rules, None, safe, depth + 1) for item in items]
    return _opaque(value, rules, safe)


def _opaque(value: Any, rules: Rules, safe: bool) -> str:
    if isinstance(value, bytes):
        return f"<bytes: {len(value)}>"
    if safe and not is_person(value) and not isinstance(value, BaseException):
        return screen_text(str(value), rules.settings, strict=False)
    return f"<{type(value).__name__}>"


# ------------------------------------------------------------------------------------------
# Log messages
# ------------------------------------------------------------------------------------------

_CONVERSION = re.compile(r"%(?:\((?P<name>[^)]*)\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<kind>[a-zA-Z%])")


def format_log_message(msg: object, args: Any, logger_name: str, settings: conf.Settings) -> str:
    """A log record's message as it may leave the process.

    Arguments are screened before they are interpolated: strings pass the free-text rules,
    numbers, containers and other objects do not leave as they are (containers are walked,
    objects become ``<TypeName>``), unless the logger is declared safe (``SAFE_LOGGERS``). The
    formatted message then passes the free-text rules too, which catches values baked into an
    f-string. Never raises.
    """
    try:
        rules = rules_for(settings)
        safe = rules.is_safe_logger(logger_name)
        template = msg if isinstance(msg, str) else _opaque(msg, rules, safe)
        message = _interpolate(template, args, rules, safe) if args else template
        return screen_text(message, settings, strict=not safe)
    except Exception:
        accounting.count_dropped("logs", "redaction_failed")
        return REDACTED


def _interpolate(template: str, args: Any, rules: Rules, safe: bool) -> str:
    if safe:
        screened_args = args
    elif isinstance(args, Mapping):
        screened_args = {k: _walk(v, rules, str(k), False, 1) for k, v in args.items()}
    else:
        screened_args = tuple(_walk(v, rules, None, False, 1) for v in (args if isinstance(args, tuple) else (args,)))
    try:
        return template % screened_args
    except (TypeError, ValueError, KeyError):
        pass
    # "%d" and "%.2f" cannot take the marker: every conversion becomes "%s".
    as_strings = _CONVERSION.sub(
        lambda m: "%%" if m.group("kind") == "%" else (f"%({m.group('name')})s" if m.group("name") else "%s"),
        template,
    )
    try:
        return as_strings % screened_args
    except (TypeError, ValueError, KeyError):
        return template  # wrong arguments: the template alone, never the arguments


# ------------------------------------------------------------------------------------------
# Attributes (spans, span events, log records)
# ------------------------------------------------------------------------------------------

DROP = object()  # an attribute that must not be exported at all


_MEMO_TYPES = frozenset({str, bool, int, float})


def safe_attribute(key: str, value: Any, settings: conf.Settings) -> Any:
    """One attribute's value as it may leave, or :data:`DROP`. Never raises."""
    try:
        rules = rules_for(settings)
        kind = value.__class__
        if kind not in _MEMO_TYPES or (kind is str and len(value) > SCREENED_MEMO_TEXT_LENGTH):
            return _attribute(key, value, rules)
        return _remembered(rules.attributes, (key, kind, value), _attribute, key, value, rules)
    except Exception:
        accounting.count_dropped("traces", "redaction_failed")
        return REDACTED


def _attribute(key: str, value: Any, rules: Rules) -> Any:
    settings = rules.settings
    handler = _ATTRIBUTE_HANDLERS.get(key)
    if handler is not None:
        return handler(value, settings)
    if key.startswith(HEADER_KEY_PREFIXES):
        header = key.split(".header.", 1)[1]
        if is_sensitive_key(header, settings) or header.lower().replace("_", "-") in _ADDRESS_HEADERS:
            return REDACTED
        return _each(value, lambda v: screen_text(v, settings, strict=False) if isinstance(v, str) else v)
    if key in rules.safe_keys:
        return _each(value, lambda v: screen_text(v, settings, strict=False) if isinstance(v, str) else v)
    if is_sensitive_key(key, settings):
        return REDACTED
    return _each(value, lambda v: _unknown_scalar(v, settings))


def _unknown_scalar(value: Any, settings: conf.Settings) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return screen_text(value, settings)
    return REDACTED


def _each(value: Any, screen: Callable[[Any], Any]) -> Any:
    if isinstance(value, tuple | list):
        return tuple(screen(item) for item in value)
    return screen(value)


def _screen_url_value(value: Any, settings: conf.Settings) -> Any:
    return _each(value, lambda v: screen_url(v, settings) if isinstance(v, str) else REDACTED)


def _pseudonymous_or_raw_user(value: Any, settings: conf.Settings) -> Any:
    if not settings.pseudonymize_user_ids:
        return value
    return pseudonymize_user_id(value, settings)


# Captured headers that never leave: client addresses, and the propagation headers a client
# fills with free-form entries (trace state, baggage), which the span carries in their own form.
_ADDRESS_HEADERS = frozenset({"x-forwarded-for", "x-real-ip", "forwarded", "x-client-ip", "true-client-ip",
                              "cf-connecting-ip", "x-cluster-client-ip", "remote-addr",
                              "tracestate", "baggage", "sentry-trace"})  # fmt: skip


def _client_address(value: Any, settings: conf.Settings) -> Any:
    address = client_ip(value if isinstance(value, str) else None, settings)
    return DROP if address is None else address


_ATTRIBUTE_HANDLERS: Mapping[str, Callable[[Any, conf.Settings], Any]] = {
    **{key: _screen_url_value for key in URL_KEYS},
    **{key: (lambda v, s: REDACTED if v else v) for key in QUERY_KEYS},
    **{key: _client_address for key in CLIENT_ADDRESS_KEYS},
    **{key: (lambda v, s: _each(v, lambda x: screen_sql(x, s) if isinstance(x, str) else x)) for key in SQL_KEYS},
    "exception.message": lambda v, s: REDACTED,
    "exception.stacktrace": lambda v, s: screen_stacktrace(v) if isinstance(v, str) else REDACTED,
    "exception.type": lambda v, s: v if isinstance(v, str) and TYPE_NAME.fullmatch(v) else REDACTED,
    RAW_USER_ID_KEY: _pseudonymous_or_raw_user,
    PSEUDONYMOUS_USER_ID_KEY: lambda v, s: v if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{32}", v) else REDACTED,
}


def screen_attributes(attributes: Mapping[str, Any] | None, settings: conf.Settings) -> dict[str, Any] | None:
    """The attributes as they may leave, or None when every one may leave as it is (the common
    case, so that callers can skip a copy)."""
    if not attributes:
        return None
    screened: dict[str, Any] | None = None
    for index, (key, value) in enumerate(attributes.items()):
        safe = safe_attribute(key, value, settings)
        if safe is not value and safe != value and screened is None:
            screened = dict(list(attributes.items())[:index])
        if screened is not None and safe is not DROP:
            screened[key] = safe
    return screened


def screen_name(name: str, settings: conf.Settings) -> str:
    """A span name, event name or status description set by code: free text."""
    try:
        return screen_text(name, settings)
    except Exception:
        accounting.count_dropped("traces", "redaction_failed")
        return REDACTED


# Trace-state entries that leave: OpenTelemetry's own (sampling threshold and randomness).
# A client can put anything in the others; an application adds its vendors' keys to SAFE_KEYS.
SAFE_TRACE_STATE_KEYS = frozenset({"ot"})


def screen_trace_state(entries: Iterable[tuple[str, str]], settings: conf.Settings) -> list[tuple[str, str]]:
    """The trace-state entries that may leave: keys known or declared safe whose value passes the
    free-text rules unchanged (a vendor's entry is opaque: a changed one would be corrupt)."""
    safe_keys = SAFE_TRACE_STATE_KEYS | rules_for(settings).safe_keys
    kept = []
    for key, value in entries:
        text = f"{key}={value}"
        if key in safe_keys and screen_text(text, settings) == text and "@" not in value:
            kept.append((key, value))
    return kept


# ------------------------------------------------------------------------------------------
# Users and client addresses
# ------------------------------------------------------------------------------------------

# Secrets that are public: Django's project template marks its generated development keys
# with this prefix, and a key this short can be guessed.
INSECURE_SECRET_PREFIXES = ("django-insecure-",)
MIN_SECRET_LENGTH = 32


def _pseudonym_key(settings: conf.Settings) -> bytes:
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    secret = _django_secret_key()
    if not secret:
        raise conf.ConfigurationError(
            "OTEL_HCV['PSEUDONYM_KEY'] (or HCV_PSEUDONYM_KEY) is required when Django's "
            "SECRET_KEY is not available: user ids are pseudonymised with it"
        )
    # Derive a separate key so the pseudonyms reveal nothing usable about SECRET_KEY.
    return hmac.new(secret.encode(), b"otel-hcv user pseudonym", hashlib.sha256).digest()


def _django_secret_key() -> str:
    try:
        from django.conf import settings as django_settings

        return str(django_settings.SECRET_KEY or "")
    except Exception:  # Django absent or not configured
        return ""


def _django_debug() -> bool:
    try:
        from django.conf import settings as django_settings

        return bool(django_settings.DEBUG)
    except Exception:
        return False


def pseudonym_key_problem(settings: conf.Settings, secret_key: str | None = None) -> str | None:
    """Why the pseudonym key would not protect user ids, or None.

    A pseudonym is only as secret as its key: with a public key, hashing 1..N recovers every
    sequential user id. The key is public when it comes from a development ``SECRET_KEY``
    (Django's ``django-insecure-`` keys, short keys) and no ``PSEUDONYM_KEY`` is set.
    """
    if not settings.pseudonymize_user_ids or settings.pseudonym_key:
        return None
    secret = _django_secret_key() if secret_key is None else secret_key
    if not secret:
        return "no PSEUDONYM_KEY is set and Django's SECRET_KEY is empty"
    if secret.startswith(INSECURE_SECRET_PREFIXES) or len(secret) < MIN_SECRET_LENGTH:
        return (
            "no PSEUDONYM_KEY is set and Django's SECRET_KEY is a development or short key, so anyone "
            "could recompute the pseudonyms of sequential user ids"
        )
    return None


def check_pseudonym_key(settings: conf.Settings) -> None:
    """Refuse to export (outside DEBUG) when user pseudonyms would be reversible."""
    problem = pseudonym_key_problem(settings)
    if problem is None:
        return
    message = (
        f"OTEL_HCV['PSEUDONYM_KEY'] (or HCV_PSEUDONYM_KEY) must be set to a random secret: {problem}. "
        "Generate one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""
    )
    if _django_debug():
        logger.warning("otel-hcv: %s (accepted because DEBUG is on)", message)
        return
    raise conf.ConfigurationError(message)


@functools.lru_cache(maxsize=4096)
def _keyed_hash(key: bytes, user_id: str) -> str:
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonymize_user_id(user_id: object, settings: conf.Settings) -> str:
    """A stable keyed hash of ``user_id``: the same user gets the same pseudonym in every
    process and after restarts (same key), and nobody without the key can reverse it."""
    return _keyed_hash(_pseudonym_key(settings), str(user_id))


def user_attributes(user_id: object, settings: conf.Settings) -> dict[str, str]:
    """Span attributes for an authenticated user, following the privacy settings."""
    if user_id is None or user_id == "":
        return {}
    if settings.pseudonymize_user_ids:
        return {PSEUDONYMOUS_USER_ID_KEY: pseudonymize_user_id(user_id, settings)}
    return {RAW_USER_ID_KEY: str(user_id)}


def user_id_of(request: Any, *, resolve: bool = True) -> object | None:
    """The authenticated user's primary key on a Django or DRF request, else None.

    With ``resolve=False`` a user that nothing has looked at yet (Django's lazy
    ``request.user``) stays unresolved: telemetry alone must not cost a session lookup.
    """
    from django.utils.functional import SimpleLazyObject, empty

    user = getattr(request, "user", None)
    if not resolve and isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "pk", None)


def client_ip(address: str | None, settings: conf.Settings) -> str | None:
    """The client address as the settings allow: dropped, truncated to its network, or kept."""
    if not address or settings.ip_addresses == "drop":
        return None
    if settings.ip_addresses == "keep":
        return address
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


# ------------------------------------------------------------------------------------------
# Metric attribute values
# ------------------------------------------------------------------------------------------

OVERFLOW_VALUE = "_OTHER"
MAX_LABEL_LENGTH = 64
_LABEL = re.compile(r"[A-Za-z0-9_.:{}\-/ ]+")


def endpoint_label(value: object, settings: conf.Settings) -> str:
    """An endpoint as a metric label: a name or a route template, never a raw path or query.

    A path (``/api/users/7/?q=1``) becomes the route template Django resolves it to
    (``api/users/<int:pk>/``), or the overflow value when nothing resolves it.
    Names are screened and bounded.
    """
    try:
        text = str(value)
        if "/" in text or "?" in text or "%" in text:
            text = _route_of_path(screen_url(text, settings))
        screened = screen_text(text, settings)
        if screened != text or len(text) > MAX_LABEL_LENGTH or not _LABEL.fullmatch(text):
            return OVERFLOW_VALUE
        return text
    except Exception:
        accounting.count_dropped("metrics", "redaction_failed")
        return OVERFLOW_VALUE


def _route_of_path(path: str) -> str:
    path = path.split("?", 1)[0]
    if not path.startswith("/"):
        path = "/" + path.split("://", 1)[-1].split("/", 1)[-1] if "://" in path else "/" + path
    try:
        from django.urls import Resolver404, resolve

        match = resolve(path)
    except (Resolver404, Exception):
        return OVERFLOW_VALUE
    return match.route or OVERFLOW_VALUE


# ------------------------------------------------------------------------------------------
# Log extras (JSON lines, OTLP records, Sentry's copy of them)
# ------------------------------------------------------------------------------------------

USER_ID_FIELD = "user_id"


def safe_log_extra(key: str, value: Any, settings: conf.Settings) -> Any:
    """One ``extra=`` field of a log record as it may leave, wherever it goes: the user id
    pseudonymised (the monitoring plan's ``user_id``), client addresses under the IP policy,
    everything else through :func:`safe_structure`."""
    if key == USER_ID_FIELD:
        if not isinstance(value, str | int) or isinstance(value, bool):
            return None
        return next(iter(user_attributes(value, settings).values()), None)
    if key in CLIENT_ADDRESS_KEYS:
        return client_ip(value if isinstance(value, str) else None, settings)
    return safe_structure(value, settings, key=key)
