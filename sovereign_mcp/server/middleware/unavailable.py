"""How the server answers while its PostgreSQL database is down (:class:`~sovereign_mcp.db.DatabaseUnavailable`:
no pooled connection within ``Database.pool_timeout`` seconds, or the connection broke).

* Plain HTTP (``/api/*``, the L402 guard on the MCP endpoint): ``503 Service Unavailable`` with
  ``Retry-After: <seconds>`` (RFC 9110 §15.6.4 and §10.2.3) and ``{"error": "the database is unavailable ..."}``.
* MCP: the tool call ends with a :class:`~fastmcp.exceptions.ToolError` ("... retry in a few seconds"), a
  resource read with a :class:`~fastmcp.exceptions.ResourceError`, instead of FastMCP's masked internal error.

The message names the server with its password hidden (:func:`sovereign_mcp.db.redact_url`).
"""

from __future__ import annotations

from typing import Any

from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from starlette.responses import JSONResponse

from sovereign_mcp.db import DatabaseUnavailable


def database_unavailable_response(exc: DatabaseUnavailable) -> JSONResponse:
    """``503`` with ``Retry-After`` (seconds, :attr:`DatabaseUnavailable.retry_after`) and a JSON error."""
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})


def database_cause(exc: BaseException) -> DatabaseUnavailable | None:
    """The :class:`DatabaseUnavailable` behind ``exc``, if any (FastMCP wraps a tool's exception in
    ``ToolError("Error calling tool ...")`` with the original as ``__cause__``)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None or isinstance(seen, DatabaseUnavailable):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class DatabaseUnavailableMiddleware(Middleware):
    """FastMCP middleware: a tool call or resource read that hits :class:`DatabaseUnavailable` answers with a
    clear error the client can act on (retry later); add it outside the L402 middleware, whose refund of
    such a call needs the database too."""

    async def on_call_tool(self, context: MiddlewareContext, call_next: CallNext) -> Any:
        return await _translated(context, call_next, ToolError)

    async def on_read_resource(self, context: MiddlewareContext, call_next: CallNext) -> Any:
        return await _translated(context, call_next, ResourceError)


async def _translated(context: MiddlewareContext, call_next: CallNext, error: type[Exception]) -> Any:
    """``call_next(context)``, with a :class:`DatabaseUnavailable` anywhere in the cause chain re-raised as
    ``error`` carrying its message."""
    try:
        return await call_next(context)
    except Exception as exc:
        cause = database_cause(exc)
        if cause is None:
            raise
        raise error(str(cause)) from None
