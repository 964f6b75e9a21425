"""``payments.mcp_http_402 = true``: the ASGI guard that answers an unpaid paid-tool call on ``/mcp`` with
``402 Payment Required`` and ``WWW-Authenticate: L402 macaroon=..., invoice=...`` before FastMCP sees it (for
L402-aware proxies; off by default, when the challenge is an in-band tool result)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sovereign_mcp.auth.verifier import scope_is_operator
from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.payments.service import (
    InvalidCredential,
    L402Service,
    PaymentsUnavailable,
)
from sovereign_mcp.server.jsonrpc import (
    INVALID_REQUEST,
    BodyTooLarge,
    error_response,
    read_body,
    replaying,
    tool_calls,
)
from sovereign_mcp.server.payments import FREE_FLAG, client_of, credential_from, payment_response, unavailable_response


class L402HTTPGuard:
    """ASGI middleware: answers 402 for paid ``tools/call`` requests on the MCP endpoint that carry
    no credential, or one that does not verify (Aperture's behaviour: a fresh challenge)."""

    def __init__(self, app: ASGIApp, service: L402Service, path: str, max_body: int) -> None:
        self.app = app
        self.service = service
        self.path = path.rstrip("/")
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_body)
        except BodyTooLarge as exc:
            await error_response(None, INVALID_REQUEST, str(exc), 413)(scope, receive, send)
            return
        response = await run_in_threadpool(self._check, scope, body)  # database and backend calls block
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)

    def _check(self, scope: Scope, body: bytes) -> Response | None:
        if scope_is_operator(scope):  # a verified operator bearer token (server/auth.py) pays nothing
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        for call in tool_calls(scope, body):  # [] when not JSON: the MCP layer reports the parse error
            tool = call.name
            if self.service.price(tool) is None:
                continue
            credential = credential_from(call.arguments, call.meta, headers.get("authorization"))
            client = client_of(scope)
            try:
                if credential is None:
                    if self.service.free_call(client):
                        scope.setdefault("state", {})[FREE_FLAG] = True
                        continue
                    return payment_response(self.service.challenge(tool, client))
                try:
                    self.service.verify(credential, tool)
                except InvalidCredential as exc:
                    return payment_response(self.service.challenge(tool, client), str(exc))
            except (PaymentsUnavailable, DatabaseUnavailable) as exc:
                return unavailable_response(exc)
        return None
