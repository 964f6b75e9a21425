"""Observability on the HTTP app: ``GET /metrics``, the tool-call middleware, and the outermost ASGI layer
that gives each request an id, counts it and writes its access line.

* :class:`ToolMetricsMiddleware` (FastMCP middleware, outermost in the chain): one
  ``sovereign_mcp_tool_calls_total{tool,outcome}`` and one latency observation per ``tools/call``.
* :class:`ObservabilityMiddleware` (ASGI, outermost): request id (``X-Request-ID``, echoed in the response),
  ``sovereign_mcp_http_requests_total{route,method,status}``, tool calls refused before FastMCP saw them (402
  from the L402 guard, 429 from the rate limiter), and the access log line (logger ``sovereign_mcp.access``,
  INFO, extra fields ``method``, ``path``, ``status``, ``duration_ms``, ``client``; the query string is never
  logged).
* :func:`register_metrics`: ``GET /metrics`` (Prometheus text, or OpenMetrics when asked); 404 when
  ``observability.metrics`` is off; ``Authorization: Bearer <observability.metrics_token>`` required when that
  is set (compared in constant time), else open: keep it behind the reverse proxy.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import DisabledError, NotFoundError, ToolError
from fastmcp.exceptions import ValidationError as ToolValidationError
from fastmcp.server.dependencies import get_http_request
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sovereign_mcp.config import Settings
from sovereign_mcp.observability import metrics
from sovereign_mcp.observability.logs import REQUEST_ID, new_request_id
from sovereign_mcp.server.jsonrpc import parsed_body

access_log = logging.getLogger("sovereign_mcp.access")
STATE_REQUEST_ID = "request_id"
UNKNOWN_TOOL = "unknown"


def outcome_of_exception(exc: BaseException) -> str:
    """The ``outcome`` of a tool call that raised ``exc``: ``timeout``, ``rate_limited``, ``tool_error``
    (a :class:`ToolError` the tool raised on purpose, bad arguments, unknown tool) or ``internal_error``
    (anything else; FastMCP wraps it in ``ToolError("Error calling tool ...")`` with the cause attached).
    An exception may name its outcome in a ``metrics_outcome`` attribute."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5:
        chain.append(current)
        current = current.__cause__
    for item in chain:
        named = getattr(item, "metrics_outcome", None)
        if named in metrics.OUTCOMES:
            return named
        kind = type(item).__name__.lower()
        if isinstance(item, TimeoutError) or "timeout" in kind:
            return "timeout"
        if "ratelimit" in kind:
            return "rate_limited"
    if isinstance(exc, (NotFoundError, DisabledError, ToolValidationError)):
        return "tool_error"
    if isinstance(exc, ToolError):
        cause = exc.__cause__
        return "tool_error" if cause is None or isinstance(cause, ToolError) else "internal_error"
    return "internal_error"


def outcome_of_result(result: Any) -> str:
    """The ``outcome`` of a tool call that returned ``result`` (a FastMCP ``ToolResult``)."""
    if not getattr(result, "is_error", False):
        return "ok"
    structured = getattr(result, "structured_content", None)
    if isinstance(structured, dict):
        if "payment_required" in structured:
            return "payment_required"
        if "rate_limited" in structured or "retry_after" in structured:
            return "rate_limited"
    return "tool_error"


class ToolMetricsMiddleware(Middleware):
    """FastMCP middleware: counts and times every ``tools/call`` (install it first, so it sees the answers of
    the payment, rate-limit and timeout middleware too), and puts the HTTP request id on the call's logs."""

    def __init__(self) -> None:
        self._known: Callable[[], Awaitable[set[str]]] | None = None

    async def on_call_tool(self, context: MiddlewareContext, call_next: CallNext) -> Any:
        tool = context.message.name
        token = REQUEST_ID.set(_request_id_of_call())
        start = time.perf_counter()
        try:
            result = await call_next(context)
        except Exception as exc:
            unknown = isinstance(exc, (NotFoundError, DisabledError))
            metrics.record_tool_call(UNKNOWN_TOOL if unknown else await self._label(context, tool),
                                     outcome_of_exception(exc), time.perf_counter() - start)
            raise
        finally:
            REQUEST_ID.reset(token)
        metrics.record_tool_call(await self._label(context, tool), outcome_of_result(result),
                                 time.perf_counter() - start)
        return result

    async def _label(self, context: MiddlewareContext, tool: str) -> str:
        """``tool`` when the server has a tool of that name, else ``unknown`` (an inner middleware may answer a
        call before FastMCP looks the name up: the client's name must not become a label)."""
        if self._known is None:
            if context.fastmcp_context is None:
                return UNKNOWN_TOOL
            self._known = known_tools(context.fastmcp_context.fastmcp)
        return tool if tool in await self._known() else UNKNOWN_TOOL


def _request_id_of_call() -> str | None:
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



def known_tools(mcp: FastMCP) -> Callable[[], Awaitable[set[str]]]:
    """``async () -> names`` of every tool registered on ``mcp`` (read once, then remembered), to keep
    client-chosen tool names out of metric labels."""
    names: set[str] | None = None

    async def read() -> set[str]:
        nonlocal names
        if names is None:
            names = {tool.name for tool in await mcp.local_provider._list_tools()}
        return names

    return read


def register_metrics(mcp: FastMCP, settings: Settings, state: metrics.StateCollector | None) -> None:
    """``GET /metrics`` on ``mcp``'s HTTP app, unless ``settings.observability.metrics`` is off."""
    config = settings.observability
    if not config.metrics:
        return
    expected = config.metrics_token.get_secret_value().encode() if config.metrics_token else None

    @mcp.custom_route("/metrics", methods=["GET"])
    async def scrape(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected):
                return PlainTextResponse("metrics need 'Authorization: Bearer <observability.metrics_token>'\n",
                                         status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        body, content_type = await run_in_threadpool(metrics.render, state, request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def state_sources_for(settings: Settings, index: Callable[[], tuple[int, int]], payments: Any | None,
                      pipeline: Any | None) -> metrics.StateSources:
    """The scrape-time sources of one server: the served index, the L402 token store (``payments``, an
    :class:`~sovereign_mcp.payments.service.L402Service`), the pipeline's job store and, when the pipeline
    manages GPU services, the GPU manager's records (``pipeline``, a
    :class:`~sovereign_mcp.pipeline.service.PipelineService`)."""
    gpu = None
    if pipeline is not None and pipeline.config.manage_gpu and settings.gpu.services:
        def gpu() -> dict[str, str]:
            return {s.name: s.state for s in pipeline.gpu.status().services}

    return metrics.StateSources(
        index=index,
        l402_stats=payments.store.stats if payments is not None else None,
        jobs=pipeline.store.count_by_state if pipeline is not None else None,
        gpu=gpu,
    )
