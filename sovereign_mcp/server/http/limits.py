"""Request limits on the HTTP transport: bounded MCP request bodies (413) and per-client rate limits (429).

:class:`RequestLimitsGuard` is ASGI middleware in front of the MCP endpoint and the ``/api/*`` routes.
It sits inside the bearer-auth layer (so ``scope["user"]`` names an authenticated caller's token) and
outside the L402 guard (so a client over its limit creates no invoice). What is counted, per client
(:func:`sovereign_mcp.ratelimit.client_key`):

* ``free``: each ``tools/call`` of a tool without a price, each ``initialize`` (a new session),
  ``resources/read`` and ``prompts/get``, and each ``/api/*`` request except a paid ``/api/validate``;
* ``challenge``: each call of a paid tool (``tools/call`` or ``/api/validate``) that will be answered with
  a fresh L402 invoice (no credential, or one that does not verify), and each LNURL-pay callback (it
  creates an invoice too).

An exceeded limit answers ``429 Too Many Requests`` with ``Retry-After: <seconds>`` (RFC 6585 §4,
RFC 9110 §10.2.3); on the MCP endpoint the body is a JSON-RPC error for the request's id, which MCP
clients raise as an error carrying the message (``rate limit exceeded: 60 per 1 minute; retry after 12 s``).
stdio is the local operator and is not limited. Other JSON-RPC methods (``tools/list``, notifications, ...)
are not counted. A JSON-RPC batch (a JSON array) is answered with 400 before anything is counted: MCP's
Streamable HTTP transport takes one message per POST since 2025-06-18.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sovereign_mcp.auth.verifier import scope_is_operator
from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.payments.service import InvalidCredential, L402Service, PaymentsUnavailable
from sovereign_mcp.ratelimit import Kind, RateLimiter, Refusal, client_key
from sovereign_mcp.server.jsonrpc import (
    INVALID_REQUEST,
    SERVER_ERROR,
    BodyTooLarge,
    ToolCall,
    error_response,
    parse_body,
    read_body,
    replaying,
)
from sovereign_mcp.server.payments import credential_from

PAID_API = {"/api/validate": "validate_quality"}


def scope_client(scope: Scope) -> str:
    """The rate-limit key of the request: its bearer token's client id when ``scope["user"]`` is an
    authenticated MCP user (``mcp.server.auth.middleware.bearer_auth.AuthenticatedUser``), else the
    socket peer (already rewritten from ``X-Forwarded-For`` by uvicorn's ProxyHeadersMiddleware when
    the peer is a trusted proxy)."""
    user = scope.get("user")
    token = getattr(user, "access_token", None) if getattr(user, "is_authenticated", False) else None
    client = scope.get("client")
    return client_key(client[0] if client else None, getattr(token, "client_id", None))


class RequestLimitsGuard:
    """ASGI middleware: 413 for a POST to ``mcp_path`` over ``max_mcp_body`` bytes; 429 past the limits of
    ``limiter`` (``None`` = no rate limits). ``payments`` tells paid tools from free ones and checks
    credentials (``None`` = every tool is free)."""

    def __init__(self, app: ASGIApp, mcp_path: str, max_mcp_body: int, limiter: RateLimiter | None,
                 payments: L402Service | None = None) -> None:
        self.app = app
        self.mcp_path = mcp_path.rstrip("/")
        self.max_mcp_body = max_mcp_body
        self.limiter = limiter
        self.payments = payments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        if path == self.mcp_path and scope["method"] == "POST":
            try:
                body = await read_body(scope, receive, self.max_mcp_body)
            except BodyTooLarge as exc:
                await error_response(None, INVALID_REQUEST, f"{exc}; send less (server.max_mcp_body_bytes)",
                                     413)(scope, receive, send)
                return
            if parse_body(scope, body).batch:
                await error_response(None, INVALID_REQUEST, "JSON-RPC batches are not supported: send one "
                                     "request per POST (MCP Streamable HTTP, 2025-06-18 and later)", 400)(
                    scope, receive, send)
                return
            refused = await self._check_mcp(scope, body) if self.limiter is not None else None
            if refused is not None:
                await refused(scope, receive, send)
                return
            await self.app(scope, replaying(body, receive), send)
            return
        if self.limiter is not None and path.startswith(("/api/", "/lnurlp/")) and scope["method"] != "OPTIONS":
            refusal = await self._check_api(scope, path)
            if refusal is not None:
                await JSONResponse({"error": refusal.message, "details": []}, status_code=429,
                                   headers=_retry_after(refusal))(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _check_mcp(self, scope: Scope, body: bytes) -> Response | None:
        client = scope_client(scope)
        authorization = _header(scope, b"authorization")
        parsed = parse_body(scope, body)
        for request_id, _method in parsed.counted:
            refusal = await self._hit("free", client)
            if refusal is not None:
                return error_response(request_id, SERVER_ERROR, refusal.message, 429, headers=_retry_after(refusal),
                                      data={"retry_after": refusal.retry_after, "limit": refusal.limit})
        for call in parsed.calls:
            kind = await self._kind_of(scope, call, authorization)
            refusal = await self._hit(kind, client) if kind is not None else None
            if refusal is not None:
                return error_response(call.id, SERVER_ERROR, refusal.message, 429, headers=_retry_after(refusal),
                                      data={"retry_after": refusal.retry_after, "limit": refusal.limit})
        return None

    async def _kind_of(self, scope: Scope, call: ToolCall, authorization: str | None) -> Kind | None:
        """``free`` for a free tool, ``challenge`` for a paid call that will get an invoice, else ``None``
        (a valid credential, or an operator, who pays nothing)."""
        if self.payments is None or self.payments.price(call.name) is None:
            return "free"
        if scope_is_operator(scope):
            return None
        credential = credential_from(call.arguments, call.meta, authorization)
        if credential is None:
            return "challenge"
        try:
            await run_in_threadpool(self.payments.verify, credential, call.name)
        except InvalidCredential:
            return "challenge"
        except (PaymentsUnavailable, DatabaseUnavailable):  # the L402 guard answers 503
            return None
        return None

    async def _check_api(self, scope: Scope, path: str) -> Refusal | None:
        if path.startswith("/lnurlp/"):  # the LNURL-pay callback creates an invoice (LUD-06 step 2)
            return await self._hit("challenge", scope_client(scope)) if path.endswith("/callback") else None
        tool = PAID_API.get(path)
        if tool is not None:
            kind = await self._kind_of(scope, ToolCall(None, tool, None, None), _header(scope, b"authorization"))
            return await self._hit(kind, scope_client(scope)) if kind is not None else None
        return await self._hit("free", scope_client(scope))

    async def _hit(self, kind: Kind, client: str) -> Refusal | None:
        """Count the request; a shared store (redis://) is asked from a worker thread, memory:// inline."""
        assert self.limiter is not None
        if self.limiter.per_process:
            return self.limiter.hit(kind, client)
        return await run_in_threadpool(self.limiter.hit, kind, client)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _retry_after(refusal: Refusal) -> dict[str, Any]:
    return {"Retry-After": str(refusal.retry_after)}
