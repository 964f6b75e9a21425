"""Operator bearer tokens on HTTP: an ASGI middleware in front of the whole app (outside the L402 guard).

``Authorization: Bearer <token>`` (RFC 6750 §2.1; the scheme name is case-insensitive, RFC 9110 §11.1) is
verified by an :class:`~sovereign_mcp.auth.verifier.OperatorTokenVerifier`; on success the request's
``scope["user"]`` becomes an ``mcp.server.auth.middleware.bearer_auth.AuthenticatedUser``, which is where
FastMCP's ``get_access_token()`` and component auth (``require_scopes``) look for it. A request without a
bearer passes unchanged (free tools stay free; paid tools stay behind L402; the ``L402``/``LSAT`` schemes
are payments and are not touched). A bearer that does not verify gets ``401`` with
``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750 §3.1), except on ``pass_paths`` (e.g.
``/metrics``, whose own bearer check decides), where it passes as anonymous. While the token database is
down the request gets ``503`` with ``Retry-After`` (:mod:`sovereign_mcp.server.middleware.unavailable`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from fastmcp.server.auth import TokenVerifier
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Receive, Scope, Send

from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.server.middleware.unavailable import database_unavailable_response

INVALID_HINT = ("The bearer token is unknown, expired or revoked. Ask the operator for a new one "
                "('sovereign-mcp token create --scope operator') and send it as 'Authorization: Bearer <token>', "
                "or send no Authorization header to use the public tools.")


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, ``""`` for an empty one, ``None`` if absent
    (or another scheme such as ``L402``)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


class BearerAuthMiddleware:
    """ASGI middleware: verifies bearer tokens and marks the request as an authenticated user.

    Args:
        app: the wrapped ASGI app.
        verifier: any FastMCP ``TokenVerifier``.
        pass_paths: paths where an unverified bearer is passed on as anonymous instead of refused.
    """

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, pass_paths: Iterable[str] = ("/metrics",)) -> None:
        self.app = app
        self.verifier = verifier
        self.pass_paths = frozenset(pass_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            scope.pop("user", None)  # never trust a user set by anything outside this layer
            await self.app(scope, receive, send)
            return
        try:
            access = await self.verifier.verify_token(token) if token else None
        except DatabaseUnavailable as exc:
            await database_unavailable_response(exc)(scope, receive, send)
            return
        if access is not None:
            scope["user"] = AuthenticatedUser(access)
        elif scope.get("path") in self.pass_paths:
            scope.pop("user", None)
        else:
            await self._refuse(send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = json.dumps({"error": "invalid_token", "error_description": INVALID_HINT}).encode()
        challenge = 'Bearer error="invalid_token", error_description="the bearer token is unknown, expired or revoked"'
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
