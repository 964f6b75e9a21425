"""Logging: text or JSON lines on stderr, a request id on every record, secrets redacted.

* :func:`setup_logging` configures the root logger once per process (``log_format = "json"``: one JSON object
  per line with ``ts``, ``level``, ``logger``, ``message``, ``request_id`` and any ``extra`` fields, through
  python-json-logger).
* :data:`REQUEST_ID` holds the id of the HTTP request being served (set by
  :class:`sovereign_mcp.server.http.observability.ObservabilityMiddleware`); :class:`RequestIdFilter` copies it onto
  each record.
* :class:`RedactFilter` rewrites every record before it is formatted: ``Authorization`` values, L402/LSAT
  credentials, macaroons, 64-hex strings (preimages, payment hashes, keys), JWTs and the secret part of
  ``smcp_<id>_<secret>`` operator tokens become ``[REDACTED]``, and so do hex runs of 64+ characters
  (0x-prefixed too: LND macaroons in hex), ``key: value`` / ``key=value`` / ``?key=value`` pairs naming a secret
  (``X-Api-Key``, ``admin_key``, ``r_preimage``, ``password``, ...) and the password of ``scheme://user:pass@``
  URLs. BOLT11 invoices (``lnbc...``) are public and kept.
* Text lines escape control characters (:func:`escape_controls`): a client-sent ``%0A`` cannot forge a line.
  JSON lines are escaped by the JSON encoder.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("sovereign_mcp_request_id", default=None)
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MASK = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
_HANDLER_MARK = "_sovereign_mcp_handler"
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")

_B64 = r"[A-Za-z0-9+/_-]"
_SECRET_KEYS = (r"(?:macaroon|preimage|root_key|api[-_]?key|invoice_key|admin_key|password|passwd|secret|rune|"
                r"private_key)")
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: <scheme> <value>, in headers, reprs and JSON ("authorization": "Bearer ...")
    (re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|l402|lsat|basic|token)\s+)?[^\s\"',}\]]+"),
     rf"\1\2 {MASK}"),
    # L402 / LSAT credentials: "L402 <macaroon>[,<macaroon>]:<preimage>"
    (re.compile(rf"(?i)\b(l402|lsat)\s+{_B64}+=*(?:,{_B64}+=*)*:[0-9a-f]+"), rf"\1 {MASK}"),
    # credentials in URLs: scheme://user:password@host (PostgreSQL, Redis, AMQP URLs) keep the user
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@\"']*:)[^@\s/\"']+@"), rf"\1{MASK}@"),
    # query parameters naming a secret: ?password=...&page=2 (the value ends at & ; or #)
    (re.compile(rf"(?i)([?&;](?:[A-Za-z0-9]+[_-])*{_SECRET_KEYS}(?:[_-]?hex)?=)[^&;#\s\"']+"), rf"\1{MASK}"),
    # key: value / key=value pairs naming a secret, in headers, challenges, JSON and reprs
    # (macaroon="...", r_preimage=..., X-Api-Key: ..., "admin_key": "...")
    (re.compile(rf"(?i)((?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-])*{_SECRET_KEYS}(?:[_-]?hex)?[\"']?\s*[:=]\s*b?[\"']?)"
                rf"(?!{re.escape(MASK)})[^\s\"',}}\]]+"), rf"\1{MASK}"),
    # header tuples: (b'x-api-key', b'...'), ('Grpc-Metadata-macaroon', '...')
    (re.compile(r"(?i)([\"'](?:x-api-key|authorization|grpc-metadata-macaroon)[\"']\s*,\s*b?[\"'])[^\"']+"),
     rf"\1{MASK}"),
    # operator tokens smcp_<id>_<secret>: keep the id, drop the secret
    (re.compile(r"\b(smcp_[0-9A-Za-z]+_)[A-Za-z0-9_-]+"), rf"\1{MASK}"),
    # JWTs
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    # 32-byte secrets in hex (preimages, root keys; 0x-prefixed too) and longer hex: LND macaroons
    (re.compile(r"(?<![0-9A-Za-z])(?:0[xX])?[0-9a-fA-F]{64,}(?![0-9A-Za-z])"), MASK),
    # bare macaroons: mixed-case base64 runs of 40+ characters (BOLT11 invoices are lower-case bech32, kept)
    (re.compile(rf"(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/_-]*[A-Z])(?=[A-Za-z0-9+/_-]*[a-z]){_B64}{{40,}}=*"), MASK),
]
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


def redact(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``[REDACTED]`` (see the module docstring)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def new_request_id(incoming: str | None = None) -> str:
    """``incoming`` (an ``X-Request-ID`` from the client or proxy) when it is 1-64 of ``[A-Za-z0-9._-]``,
    else a fresh random id (uuid4-style, 32 hex)."""
    if incoming and REQUEST_ID_RE.match(incoming):
        return incoming
    return secrets.token_hex(16)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the current :data:`REQUEST_ID`, or ``None`` outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class RedactFilter(logging.Filter):
    """Redacts the message, its arguments, string ``extra`` fields and the exception text of every record
    (attach it to handlers, so records of every logger pass through it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: keep the raw parts
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text, record.exc_info = redact(record.exc_text), None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _utc(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(_JsonFormatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``message``,
    ``request_id``, then the record's ``extra`` fields and ``exc_info`` when present."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                         rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
                         reserved_attrs=[*RESERVED_ATTRS, "color_message"])  # uvicorn's ANSI copy of message

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


def escape_controls(text: str) -> str:
    """``text`` with control characters (C0 but tab, DEL, C1, U+2028/U+2029 line and paragraph separators)
    written as ``\\xNN`` / ``\\uNNNN``, so a client-sent value (a percent-decoded ``%0A`` in a path) cannot
    start a forged line in a text log."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> [<request id or ->]: <message>``, one line per record: control characters in
    that line are escaped (:func:`escape_controls`); an exception's traceback follows on its own lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
            try:
                return super().format(record)
            finally:
                record.request_id = None
        return super().format(record)


def setup_logging(level: str = "info", log_format: Literal["text", "json"] = "text", *,
                  server_loggers: bool = True) -> None:
    """Log to stderr at ``level`` in ``log_format``, with request ids and redaction; replaces the handler a
    previous call installed (other handlers are kept). uvicorn's loggers propagate to it when uvicorn is run
    with :data:`UVICORN_LOG_OPTIONS`; so do FastMCP's, whose own handler (installed when ``fastmcp`` is first
    imported) is removed. ``server_loggers=False`` (CLI commands that serve nothing) leaves FastMCP unimported:
    its import alone takes ~0.1 s."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    if not server_loggers:
        return
    import fastmcp  # noqa: F401  (configures its own rich handler on import: replace that with ours)

    for name in ("fastmcp", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level decides


UVICORN_LOG_OPTIONS: dict[str, Any] = {"log_config": None, "access_log": False}
"""Keyword arguments for ``uvicorn.Config``/``uvicorn.run``: leave logging to :func:`setup_logging` (uvicorn's
records propagate to the root handler) and drop uvicorn's access line, which
:class:`~sovereign_mcp.server.http.observability.ObservabilityMiddleware` replaces with one carrying the request id."""
