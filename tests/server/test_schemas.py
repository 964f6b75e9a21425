"""Tool schemas are inlined once (CachedDereferenceMiddleware) and listed exactly as FastMCP's own
DereferenceRefsMiddleware would list them, listing after listing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.server.middleware.dereference import DereferenceRefsMiddleware

from sovereign_mcp.config import Settings
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.bootstrap import build_components, build_mcp
from sovereign_mcp.server.middleware.schemas import CachedDereferenceMiddleware


async def listing(mcp: Any) -> list[dict[str, Any]]:
    async with Client(mcp) as client:
        return [t.model_dump(mode="json") for t in await client.list_tools()]


async def test_cached_listing_equals_fastmcps_dereferencing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", corpus={"watch": False}, auth={"enabled": False})
    service = BlogService(settings)
    try:
        mcp = build_mcp(build_components(service.settings, service))
        (ours,) = [m for m in mcp.middleware if isinstance(m, CachedDereferenceMiddleware)]
        first, second = await listing(mcp), await listing(mcp)
        assert first == second and ours._inlined  # the second listing came from the cache
        assert "$ref" not in json.dumps(first) and "$defs" not in json.dumps(first)

        mcp.middleware.remove(ours)
        raw = await listing(mcp)
        assert "$ref" in json.dumps(raw)  # there was something to inline
        mcp.middleware.append(DereferenceRefsMiddleware())
        assert await listing(mcp) == first
    finally:
        service.close()
