"""The few JSON-RPC pieces the ASGI guards in front of the MCP endpoint share: read a bounded body, find
its ``tools/call`` requests (parsed once per request), replay the body downstream, answer an error.

Message shapes: JSON-RPC 2.0 (https://www.jsonrpc.org/specification §4, §5.1) as used by the MCP
Streamable HTTP transport: one message per POST (MCP 2025-06-18 dropped JSON-RPC batching; the guards answer
a batch with 400 before counting or invoicing anything).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope

INVALID_REQUEST = -32600
SERVER_ERROR = -32000  # JSON-RPC §5.1 "-32000 to -32099: reserved for implementation-defined server-errors"
_STATE_KEY = "sovereign_mcp.parsed_body"
#: Requests other than ``tools/call`` that cost the server work per call (a new session, a resource read,
#: a rendered prompt); the rate limiter counts them like free tool calls.
COUNTED_METHODS = frozenset({"initialize", "resources/read", "prompts/get"})


class BodyTooLarge(Exception):
    """The request body is larger than the limit (``limit`` bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One ``tools/call`` request in a POST body: its JSON-RPC ``id``, tool ``name``, ``arguments``
    (a dict or ``None``) and ``_meta`` (as sent, or ``None``)."""

    id: Any
    name: str
    arguments: dict[str, Any] | None
    meta: Any


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body, read up to ``max_bytes`` (a larger ``Content-Length`` is refused unread).

    Raises:
        BodyTooLarge: the declared or actual body exceeds ``max_bytes``.
    """
    for key, value in scope.get("headers", []):
        if key == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise BodyTooLarge(max_bytes)
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(max_bytes)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first yields ``body`` as one ``http.request`` message, then defers to ``receive``
    (so the app downstream still sees the client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """What the guards need from one POST body: whether it is a batch (a JSON array), its ``tools/call``
    requests, and its other requests in :data:`COUNTED_METHODS` as ``(id, method)``."""

    batch: bool
    calls: list[ToolCall]
    counted: list[tuple[Any, str]]


def parse_body(scope: Scope, body: bytes) -> ParsedBody:
    """Parse ``body`` once per request (remembered in ``scope["state"]``); a body that is not JSON gives
    an empty result (the MCP layer reports that)."""
    state = scope.setdefault("state", {})
    cached = state.get(_STATE_KEY)
    if cached is not None:
        return cached
    try:
        payload = json.loads(body or b"null")
    except (ValueError, RecursionError):
        payload = None
    calls: list[ToolCall] = []
    counted: list[tuple[Any, str]] = []
    for message in payload if isinstance(payload, list) else [payload]:
        if not isinstance(message, dict):
            continue
        method = message.get("method")
        if method in COUNTED_METHODS:
            counted.append((message.get("id"), method))
        if method != "tools/call":
            continue
        params = message.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            continue
        arguments = params.get("arguments")
        calls.append(ToolCall(message.get("id"), params["name"], arguments if isinstance(arguments, dict) else None,
                              params.get("_meta")))
    parsed = ParsedBody(isinstance(payload, list), calls, counted)
    state[_STATE_KEY] = parsed
    return parsed


def parsed_body(scope: Scope) -> ParsedBody | None:
    """The :class:`ParsedBody` a guard already made for this request, if any (for layers outside them)."""
    return scope.get("state", {}).get(_STATE_KEY)


def tool_calls(scope: Scope, body: bytes) -> list[ToolCall]:
    """The ``tools/call`` requests in ``body`` (see :func:`parse_body`)."""
    return parse_body(scope, body).calls


def error_response(request_id: Any, code: int, message: str, status: int, data: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON-RPC error object (§5.1) answered with HTTP ``status``; MCP clients surface its ``message``
    (the mcp SDK reads a JSON-RPC error from a non-2xx ``application/json`` body)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error}, status_code=status, headers=headers)
