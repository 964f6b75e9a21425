"""Per-tool time limits: ``server.tool_timeout_seconds`` for every tool, ``server.tool_timeouts[name]`` overrides.

Why a middleware and not FastMCP's ``Tool.timeout``: FastMCP runs a sync tool in a worker thread and
wraps it in ``anyio.fail_after``, but a worker thread shields cancellation until it finishes
(fastmcp/tools/function_tool.py ``_run_body``: "Worker threads shield cancellation until they finish"),
so a tool stuck in a blocking call answers only when the call returns. :class:`ToolTimeoutMiddleware`
runs the rest of the call in its own asyncio task and answers the client at the deadline: an async tool
is cancelled; a sync tool's thread cannot be killed (Python has no thread cancellation), it runs on
until its own I/O timeouts end it and its result is dropped. The server keeps serving meanwhile.

A tool that waits by design (``pipeline_status(wait_seconds=...)``) gets its ``wait_seconds`` argument added
to its limit.

Added after the L402 middleware (so inside it), a timed-out paid call raises through it and its call is
refunded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.types import CallToolRequestParams

from sovereign_mcp.config import ServerSettings

log = logging.getLogger(__name__)


class ToolTimeout(ToolError):
    """A tool call that ran past its limit (message names the tool, the limit and the setting)."""


class ToolTimeoutMiddleware(Middleware):
    """FastMCP middleware: a tool call longer than its limit (seconds) ends with :class:`ToolTimeout`."""

    def __init__(self, default: float, per_tool: dict[str, float] | None = None) -> None:
        self.default = default
        self.per_tool = dict(per_tool or {})

    @classmethod
    def from_settings(cls, server: ServerSettings) -> ToolTimeoutMiddleware:
        """The limits of ``server.tool_timeout_seconds`` and ``server.tool_timeouts``."""
        return cls(server.tool_timeout_seconds, server.tool_timeouts)

    def limit_for(self, tool: str, arguments: dict[str, Any] | None = None) -> float:
        """Seconds a call of ``tool`` with ``arguments`` may run (its limit plus any ``wait_seconds`` asked)."""
        wait = (arguments or {}).get("wait_seconds")
        extra = float(wait) if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0 else 0.0
        return self.per_tool.get(tool, self.default) + min(extra, 3600.0)

    async def on_call_tool(self, context: MiddlewareContext[CallToolRequestParams],
                           call_next: CallNext[CallToolRequestParams, Any]) -> Any:
        name = context.message.name
        limit = self.limit_for(name, context.message.arguments)
        task = asyncio.ensure_future(call_next(context))
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_drain)
        if task in done:
            return task.result()
        log.warning("tool %s timed out after %g s", name, limit)
        setting = f"server.tool_timeouts.{name}" if name in self.per_tool else "server.tool_timeout_seconds"
        raise ToolTimeout(f"tool {name!r} timed out after {limit:g} s (limit: {setting}); try again later, or "
                          "with a smaller input")


def _drain(task: asyncio.Future[Any]) -> None:
    """Retrieve a dropped call's outcome so asyncio does not log 'exception was never retrieved'."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("timed-out tool call ended with %r", task.exception())
