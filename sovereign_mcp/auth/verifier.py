"""Bearer-token verification on FastMCP's verifier interface, and the operator checks tools use.

:class:`OperatorTokenVerifier` is a :class:`fastmcp.server.auth.TokenVerifier`: it answers a
:class:`fastmcp.server.auth.AccessToken` (``client_id`` = token id, ``scopes`` = ``[scope]``) for a stored
``smcp_...`` token and, when ``[auth] jwt_jwks_uri`` or ``jwt_public_key`` is set, for a JWT that FastMCP's
:class:`~fastmcp.server.auth.providers.jwt.JWTVerifier` accepts; a JWT carrying ``jwt_operator_scope`` is
granted :data:`~sovereign_mcp.auth.tokens.OPERATOR`.

Who is the operator (mirrors FastMCP's ``_get_auth_context`` in ``fastmcp/server/server.py``): stdio is the
local operator and skips component auth; over HTTP, the request's access token
(``fastmcp.server.dependencies.get_access_token``, read from ``scope["user"]``) must carry the scope.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastmcp.server.auth import AccessToken, AuthCheck, TokenVerifier, require_scopes
from fastmcp.server.dependencies import get_access_token, get_context
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from sovereign_mcp.auth.tokens import OPERATOR, PREFIX, OperatorTokenStore
from sovereign_mcp.config import AuthSettings, Settings


class OperatorTokenVerifier(TokenVerifier):
    """Verifies stored operator tokens and, optionally, JWTs.

    Args:
        store: the operator token store.
        jwt: a configured FastMCP ``JWTVerifier`` (``None`` = stored tokens only).
        jwt_operator_scope: the JWT scope that grants the operator scope.
    """

    def __init__(self, store: OperatorTokenStore, jwt: TokenVerifier | None = None,
                 jwt_operator_scope: str = OPERATOR) -> None:
        super().__init__()
        self.store = store
        self.jwt = jwt
        self.jwt_operator_scope = jwt_operator_scope

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token for ``token``, or ``None`` when it is unknown, wrong, expired or revoked."""
        if token.startswith(PREFIX):
            record = await anyio.to_thread.run_sync(self.store.verify, token)
            if record is None:
                return None
            return AccessToken(token=token, client_id=record.token_id, scopes=[record.scope],
                               expires_at=record.expires_at, claims={"label": record.label})
        if self.jwt is None:
            return None
        found = await self.jwt.verify_token(token)
        if found is None:
            return None
        scopes = list(found.scopes)
        if self.jwt_operator_scope in scopes and OPERATOR not in scopes:
            scopes.append(OPERATOR)
        return found.model_copy(update={"scopes": scopes})


def jwt_verifier(config: AuthSettings) -> TokenVerifier | None:
    """FastMCP's ``JWTVerifier`` for ``[auth] jwt_*`` (JWKS URL or PEM public key), or ``None`` if neither is set.

    Raises:
        ValueError: both a JWKS URL and a public key are set (FastMCP accepts one of them).
    """
    if not (config.jwt_jwks_uri or config.jwt_public_key):
        return None
    from fastmcp.server.auth.providers.jwt import JWTVerifier

    key = config.jwt_public_key.get_secret_value() if config.jwt_public_key else None
    return JWTVerifier(public_key=key, jwks_uri=config.jwt_jwks_uri, issuer=config.jwt_issuer,
                       audience=config.jwt_audience)


def verifier_for(settings: Settings) -> OperatorTokenVerifier:
    """The verifier a server with ``settings`` uses (token store under ``data_dir`` or ``database_url``)."""
    store = OperatorTokenStore.for_settings(settings.data_dir, settings.database_url)
    return OperatorTokenVerifier(store, jwt_verifier(settings.auth), settings.auth.jwt_operator_scope)


def operator_only(enabled: bool) -> AuthCheck | None:
    """The component ``auth=`` of an operator-only tool or resource: ``require_scopes("operator")`` when
    operator auth is on, else ``None`` (everyone; for a loopback-only deployment)."""
    return require_scopes(OPERATOR) if enabled else None


def scope_is_operator(scope: Any) -> bool:
    """Whether an ASGI ``scope`` carries an authenticated operator (set by the bearer middleware)."""
    user = scope.get("user") if isinstance(scope, dict) else None
    return isinstance(user, AuthenticatedUser) and OPERATOR in user.scopes


def caller_is_operator() -> bool:
    """Inside a tool: is the caller the operator? stdio: yes; otherwise its access token must carry the scope."""
    try:
        if get_context().transport == "stdio":
            return True
    except RuntimeError:
        pass
    return has_operator_token()


def has_operator_token() -> bool:
    """Inside an MCP request: does it carry a verified operator token (HTTP bearer)? stdio does not count
    (it pays like anyone else; only component auth treats it as the operator)."""
    token = get_access_token()
    return token is not None and OPERATOR in token.scopes
