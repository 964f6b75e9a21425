"""``GET /metrics`` and what the metric layers share.

* :func:`register_metrics`: ``GET /metrics`` (Prometheus text, or OpenMetrics when asked); 404 when
  ``observability.metrics`` is off; ``Authorization: Bearer <observability.metrics_token>`` required when that
  is set (compared in constant time), else open: keep it behind the reverse proxy.
* :func:`known_tools` and :data:`UNKNOWN_TOOL`: tool names as metric labels, client-chosen names folded into
  ``unknown``; used by the tool-call middleware (:mod:`sovereign_mcp.server.middleware.tool_metrics`) and the
  outermost ASGI layer (:mod:`sovereign_mcp.server.http.observability`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastmcp import FastMCP
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from sovereign_mcp.config import Settings
from sovereign_mcp.observability import metrics

UNKNOWN_TOOL = "unknown"













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
