"""The outermost ASGI layer: a request id (``X-Request-ID``, echoed in the response), HTTP metrics
(``sovereign_mcp_http_requests_total{route,method,status}``, tool calls refused before FastMCP saw them: 402
from the L402 guard, 429 from the rate limiter) and the access log line (logger ``sovereign_mcp.access``, INFO,
extra fields ``method``, ``path``, ``status``, ``duration_ms``, ``client``; the query string is never
logged)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from fastmcp.server.dependencies import get_http_request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sovereign_mcp.observability import metrics
from sovereign_mcp.observability.logs import REQUEST_ID, new_request_id
from sovereign_mcp.server.jsonrpc import parsed_body
from sovereign_mcp.server.metrics import UNKNOWN_TOOL

access_log = logging.getLogger("sovereign_mcp.access")


STATE_REQUEST_ID = "request_id"


def request_id_of_call() -> str | None:
    """The id :class:`ObservabilityMiddleware` gave the HTTP request carrying this call (``None`` on stdio)."""
    try:
        return get_http_request().scope.get("state", {}).get(STATE_REQUEST_ID) or REQUEST_ID.get()
    except RuntimeError:
        return REQUEST_ID.get()


class ObservabilityMiddleware:
    """Outermost ASGI layer: request id, HTTP metrics, access log (see the module docstring).

    Args:
        app: the app to wrap (auth, limits and payment guards included).
        routes: the Starlette app's routes, to label requests by route template (``/api/search``,
            ``/.well-known/lnurlp/{name}``); a path no route matches is labelled ``unmatched``.
        mcp_path: the MCP endpoint (refused ``tools/call`` requests there are counted per tool).
        known_tools: ``async () -> names`` of the registered tools; other names are counted as ``unknown``.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], mcp_path: str,
                 known_tools: Callable[[], Awaitable[set[str]]] | None = None) -> None:
        self.app = app
        self.routes = list(routes)
        self.mcp_path = mcp_path.rstrip("/")
        self.known_tools = known_tools

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"x-request-id"),
                        None)
        request_id = new_request_id(incoming)
        scope.setdefault("state", {})[STATE_REQUEST_ID] = request_id
        token = REQUEST_ID.set(request_id)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            try:
                await self._finish(scope, status, time.perf_counter() - start)
            finally:
                REQUEST_ID.reset(token)

    async def _finish(self, scope: Scope, status: int, seconds: float) -> None:
        route = self._route(scope)
        metrics.record_http_request(route, scope["method"], status, seconds)
        if status in (402, 429) and scope["method"] == "POST" and scope["path"].rstrip("/") == self.mcp_path:
            outcome = "payment_required" if status == 402 else "rate_limited"
            parsed = parsed_body(scope)
            calls = parsed.calls if parsed is not None else []
            known = await self.known_tools() if calls and self.known_tools is not None else set()
            for call in calls:  # the 429 is already an error (record_http_request): count it once
                metrics.record_tool_call(call.name if call.name in known else UNKNOWN_TOOL, outcome,
                                         count_error=False)
        client = scope.get("client")
        access_log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, seconds * 1000,
                        extra={"method": scope["method"], "path": scope["path"], "status": status,
                               "duration_ms": round(seconds * 1000, 1), "client": client[0] if client else None})

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return getattr(route, "path", None) or type(route).__name__
        return "unmatched"
