"""The servers' own access logs (gunicorn, uvicorn) as JSON lines with the request's ids.

gunicorn (``--access-logfile -``) and uvicorn write one access line per request through
their own loggers, ``gunicorn.access`` and ``uvicorn.access``, with their own handlers and
formats: plain text with the full client address, outside the OTLP export. Once otel-hcv
is set up in a server process, :func:`adopt_access_logs` gives those handlers the JSON
formatter, turns each line into the same fields for both servers (method, path without its
query string, status, the client address under the ``IP_ADDRESSES`` policy, and the
duration where the server measures it) and exports the lines over OTLP too. The server
still decides *whether* to write access lines (gunicorn only with ``--access-logfile``;
uvicorn unless ``--no-access-log``). ``OTEL_HCV["JSON_ACCESS_LOGS"] = False`` leaves them
as the server formats them.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Mapping
from typing import Any

from otel_hcv.logging import StructuredFormatter

GUNICORN_ACCESS = "gunicorn.access"
UVICORN_ACCESS = "uvicorn.access"
MESSAGE = "%s %s %s"

METHOD = "http.request.method"
PATH = "url.path"
STATUS = "http.response.status_code"
PROTOCOL_VERSION = "network.protocol.version"
DURATION = "http.server.request.duration"  # seconds
BODY_SIZE = "http.response.body.size"
IP_ADDRESS = "ip_address"  # the monitoring plan's field: the privacy policy applies to it


def _without_query(path: str) -> str:
    return str(path).split("?", 1)[0]


def _status(value: Any) -> int | str:
    try:
        return int(str(value).split(None, 1)[0])
    except ValueError:
        return str(value)


def _host_of(address: str) -> str:
    """``127.0.0.1:51234``, ``[::1]:51234`` or a bare address -> the address alone."""
    address = str(address)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    host = address.rsplit(":", 1)[0].strip("[]")
    return host


def _gunicorn_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        METHOD: atoms.get("m"),
        PATH: _without_query(atoms.get("U") or ""),
        STATUS: _status(atoms.get("s")),
        IP_ADDRESS: atoms.get("h"),
    }
    protocol = str(atoms.get("H") or "")
    if "/" in protocol:
        fields[PROTOCOL_VERSION] = protocol.split("/", 1)[1]
    microseconds = atoms.get("D")
    if isinstance(microseconds, int):
        fields[DURATION] = microseconds / 1e6
    if isinstance(atoms.get("B"), int):
        fields[BODY_SIZE] = atoms["B"]
    return fields


def _uvicorn_fields(args: tuple[Any, ...]) -> dict[str, Any]:
    client, method, path, http_version, status = args
    return {
        METHOD: method,
        PATH: _without_query(path),
        STATUS: _status(status),
        IP_ADDRESS: _host_of(client) if client else None,
        PROTOCOL_VERSION: http_version,
    }


class AccessLineFilter(logging.Filter):
    """Rewrites a server's access record in place into the shared fields: the message
    becomes ``"GET /api/items/ 200"`` and the rest are record attributes (the JSON
    formatter and the OTLP handler export a record's extras, with the IP policy applied
    to ``ip_address``). Anything it does not recognise passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if record.name == GUNICORN_ACCESS and isinstance(record.args, Mapping):
                fields = _gunicorn_fields(record.args)
            elif record.name == UVICORN_ACCESS and isinstance(record.args, tuple) and len(record.args) == 5:
                fields = _uvicorn_fields(record.args)
            else:
                return True
        except Exception:  # never lose an access line over its shape
            return True
        for key, value in fields.items():
            if value is not None:
                setattr(record, key, value)
        record.msg = MESSAGE
        record.args = (fields[METHOD], fields[PATH], fields[STATUS])
        return True


def _running_servers() -> list[str]:
    loggers = []
    if "gunicorn" in sys.modules:
        loggers.append(GUNICORN_ACCESS)
    if "uvicorn" in sys.modules:
        loggers.append(UVICORN_ACCESS)
    return loggers


def adopt_access_logs(otlp_handler: logging.Handler | None) -> list[str]:
    """Make the running server's access lines JSON with ids, and export them over OTLP.

    Idempotent; returns the names of the loggers adopted. Only the loggers of a server
    imported in this process are touched.
    """
    adopted = []
    for name in _running_servers():
        access_logger = logging.getLogger(name)
        if not any(isinstance(f, AccessLineFilter) for f in access_logger.filters):
            access_logger.addFilter(AccessLineFilter())
        for handler in access_logger.handlers:
            if handler is not otlp_handler and not isinstance(handler.formatter, StructuredFormatter):
                handler.setFormatter(StructuredFormatter())
        # The servers' loggers do not propagate to the root logger, which holds the OTLP handler.
        if otlp_handler is not None and not access_logger.propagate and otlp_handler not in access_logger.handlers:
            access_logger.addHandler(otlp_handler)
        adopted.append(name)
    return adopted
