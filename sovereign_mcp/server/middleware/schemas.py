"""Tool schemas with ``$ref`` inlined once, not on every listing.

FastMCP's ``DereferenceRefsMiddleware`` inlines ``$ref``/``$defs`` (some clients cannot resolve them) on
every ``tools/list``; the MCP SDK's Streamable HTTP transport lists the tools again for every
``tools/call`` of the 2026-07-28 protocol (``_tool_input_schema`` in ``mcp/server/_streamable_http_modern.py``
validates ``Mcp-Param-*`` headers against the called tool's schema). Dereferencing every schema on every
call was ~55% of the server's CPU under load (py-spy, ``benchmarks/load.py``). Schemas do not change after
registration, so this middleware keeps the same output and computes it once per tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mcp_types as mt
from fastmcp.server.middleware.dereference import DereferenceRefsMiddleware, _has_ref
from fastmcp.server.middleware.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import Tool
from fastmcp.utilities.json_schema import dereference_refs


class CachedDereferenceMiddleware(DereferenceRefsMiddleware):
    """:class:`DereferenceRefsMiddleware` with the inlined schemas remembered per schema dict.

    The cache is keyed by the identity of a schema dict and keeps that dict alive, so an id cannot be
    reused by another object; a tool registered again with new schemas gets new entries. Every other
    field of the listed tool is taken from the tool as listed now (a shallow ``model_copy``). Use with
    ``FastMCP(dereference_schemas=False)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._inlined: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}

    def _inline(self, schema: dict[str, Any]) -> dict[str, Any]:
        hit = self._inlined.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        inlined = dereference_refs(schema) if "$defs" in schema or _has_ref(schema) else schema
        self._inlined[id(schema)] = (schema, inlined)
        return inlined

    def _dereferenced(self, tool: Tool) -> Tool:
        updates: dict[str, object] = {}
        if (parameters := self._inline(tool.parameters)) is not tool.parameters:
            updates["parameters"] = parameters
        if tool.output_schema is not None and (output := self._inline(tool.output_schema)) is not tool.output_schema:
            updates["output_schema"] = output
        return tool.model_copy(update=updates) if updates else tool

    async def on_list_tools(self, context: MiddlewareContext[mt.ListToolsRequest],
                            call_next: CallNext[mt.ListToolsRequest, Sequence[Tool]]) -> Sequence[Tool]:
        return [self._dereferenced(tool) for tool in await call_next(context)]
