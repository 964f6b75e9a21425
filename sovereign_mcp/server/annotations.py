"""The tool annotations every tool module uses (MCP 2025-06-18, "Tool annotations": hints, not guarantees).

All tools here are closed-world: they touch only this server's corpus, KB, database and local services.
"""

from __future__ import annotations

from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
"""Reads or computes only: search, articles, the gate, diagnostics, prices, job status."""
STARTS_WORK = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
"""Queues new work (a pipeline job); calling twice queues twice."""
CANCELS = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)
"""Stops work already queued; a second call changes nothing more."""
