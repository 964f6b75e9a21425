"""The tool-call metrics middleware (FastMCP, outermost in the chain): one
``sovereign_mcp_tool_calls_total{tool,outcome}`` and one latency observation per ``tools/call``, with the
outcome told from the result or the exception."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastmcp.exceptions import DisabledError, NotFoundError, ToolError
from fastmcp.exceptions import ValidationError as ToolValidationError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

from sovereign_mcp.observability import metrics
from sovereign_mcp.observability.logs import REQUEST_ID
from sovereign_mcp.server.http.observability import request_id_of_call
from sovereign_mcp.server.metrics import UNKNOWN_TOOL, known_tools


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
        token = REQUEST_ID.set(request_id_of_call())
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
