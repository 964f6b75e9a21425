"""Wiring: registers the blog tools, resources and HTTP routes on a FastMCP server.

Nothing here computes anything; every handler delegates to :mod:`sovereign_mcp.search.api` on the
current index snapshot of a :class:`~sovereign_mcp.search.service.BlogService`.
"""

from __future__ import annotations

import json
from typing import Literal

from fastmcp import FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.tools import ToolResult
from mcp.types import ResourceLink, TextContent, ToolAnnotations
from pydantic import TypeAdapter
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sovereign_mcp import __version__
from sovereign_mcp.auth.verifier import verifier_for
from sovereign_mcp.config import Settings
from sovereign_mcp.diagnostics.service import DiagnosticsService
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.observability.metrics import StateCollector
from sovereign_mcp.payments.service import L402Service, open_payments
from sovereign_mcp.pipeline.service import PipelineService
from sovereign_mcp.ratelimit import limiter_for
from sovereign_mcp.search import api
from sovereign_mcp.search.api import (
    ArticleOut,
    Budget,
    Count,
    DetailArg,
    Explain,
    MaxChars,
    Offset,
    Query,
    SearchResults,
    SectionRef,
    Slug,
    Sort,
    Tag,
    TagList,
    TagSort,
)
from sovereign_mcp.search.index import ArticleNotFound
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.auth import BearerAuthMiddleware
from sovereign_mcp.server.diagnostics import register_diagnostics
from sovereign_mcp.server.limits import RequestLimitsGuard
from sovereign_mcp.server.metrics import (
    ObservabilityMiddleware,
    ToolMetricsMiddleware,
    known_tools,
    register_metrics,
    state_sources_for,
)
from sovereign_mcp.server.payments import L402HTTPGuard, L402Middleware, register_lnurl, register_prices
from sovereign_mcp.server.pipeline import pipeline_service_for, register_pipeline
from sovereign_mcp.server.quality import register_quality
from sovereign_mcp.server.routes import PAID_ROUTES, register_routes
from sovereign_mcp.server.schemas import CachedDereferenceMiddleware
from sovereign_mcp.server.timeouts import ToolTimeoutMiddleware
from sovereign_mcp.server.unavailable import DatabaseUnavailableMiddleware

INSTRUCTIONS = """\
Tools over the operator's published blog about running a sovereign AI stack (DGX Spark, SGLang,
Voxtral, ComfyUI, knowledge base, Lightning). Search before you claim: search_blog returns ranked,
cited passages (url with #anchor); get_article returns the full Markdown, paged. validate_quality
checks a generated article or podcast script against the knowledge base (list_kb_rules)."""

SEARCH_SCHEMA = TypeAdapter(SearchResults).json_schema(mode="serialization")


def search_result(results: SearchResults) -> ToolResult:
    """``search_blog``'s MCP result: the JSON as text and as structured content, then one ``resource_link`` per
    hit to its article (MCP 2025-06-18 and later, "Resource Links" in tool results)."""
    data = results.model_dump(mode="json")
    links = [ResourceLink(type="resource_link", uri=hit.resource, name=hit.slug, title=hit.title,
                          mime_type="text/markdown", description=f"The whole article, cited at {hit.anchor}")
             for hit in results.results]
    return ToolResult(content=[TextContent(type="text", text=json.dumps(data)), *links], structured_content=data)


READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)


def gate_service_for(service: BlogService) -> GateService:
    """The quality gate over the KB in ``service.settings``, backed by the live corpus."""
    return GateService(service.settings, lambda: service.index.articles)


def diagnostics_service_for(service: BlogService, gates: GateService) -> DiagnosticsService:
    """SGLang diagnostics over the shared KB, citing articles by their public URL."""

    def article_url(slug: str) -> str | None:
        found = service.index.by_slug.get(slug)
        return service.index.articles[found].url if found is not None else None

    return DiagnosticsService(service.settings, gates.kb, article_url)


def payments_for(settings: Settings) -> L402Service | None:
    """The L402 service when ``payments.enabled`` (else every tool is free)."""
    return open_payments(settings) if settings.payments.enabled else None


def build_mcp(service: BlogService, gates: GateService | None = None,
              diagnostics: DiagnosticsService | None = None, payments: L402Service | None = None,
              pipeline: PipelineService | None = None) -> FastMCP:
    """A FastMCP server with the blog tools and resources of ``service`` and the quality gate."""
    mcp = FastMCP(name="sovereign-mcp", version=__version__, instructions=INSTRUCTIONS,
                  mask_error_details=True, dereference_schemas=False)
    mcp.add_middleware(CachedDereferenceMiddleware())  # where FastMCP's own would sit; inlines $ref once per tool
    mcp.add_middleware(DatabaseUnavailableMiddleware())  # outside L402 (its refund needs the database too)

    @mcp.tool(annotations=READ_ONLY, output_schema=SEARCH_SCHEMA)
    def search_blog(query: Query = "", tag: Tag = None, sort: Sort = "relevance", n: Count = None,
                    detail: DetailArg = "passages", max_chars: Budget = None, explain: Explain = False) -> ToolResult:
        """Search the published articles; returns ranked, cited passages.

        Each result has the article slug, title, date, tags, score, the heading path and text of the
        best-matching passage, a url ending in that section's #anchor, and a resource link to the whole
        article (blog://articles/{slug}). An empty query lists the newest articles; `tag` filters;
        `sort="date_desc"` orders matches newest first; `n` is capped at the server's maximum (20 by
        default). `detail="titles"` leaves the passage text out; `max_chars` bounds the whole answer (the
        answer's `note` says what was cut); `explain=true` shows each ranking stage's score and rank.
        """
        results = api.search_blog(service.index, query, tag, sort, n, detail, max_chars, explain)
        return search_result(results)

    @mcp.tool(annotations=READ_ONLY)
    def get_article(slug: Slug, section: SectionRef = None, offset: Offset = 0,
                    max_chars: MaxChars = None) -> ArticleOut:
        """Fetch an article's front matter and Markdown body, or one section of it, paged.

        Long bodies come in pages: when `next_offset` is not null, call again with that offset.
        `section` takes a heading anchor (as in a search result's url) or the heading text.
        """
        try:
            return api.get_article(service.index, slug, section, offset, max_chars)
        except (ArticleNotFound, ValueError) as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(annotations=READ_ONLY)
    def list_tags(sort: TagSort = "count_desc") -> TagList:
        """List every tag with the number of published articles carrying it."""
        return api.list_tags(service.index, sort)

    @mcp.resource("blog://articles", name="articles", mime_type="application/json",
                  description="Every published article: slug, title, url, date, tags, description.")
    def list_articles() -> str:
        return json.dumps([api.summary(a).model_dump() for a in service.index.articles])

    @mcp.resource("blog://articles/{slug}", name="article", mime_type="text/markdown",
                  description="One published article as Markdown with a front-matter header.")
    def article_resource(slug: str) -> str:
        try:
            return api.article_markdown(service.index, slug)
        except ArticleNotFound as exc:
            raise ResourceError(str(exc)) from None

    gates = gates or gate_service_for(service)
    register_quality(mcp, gates)
    operator_auth = service.settings.auth.enabled
    register_diagnostics(mcp, diagnostics or diagnostics_service_for(service, gates), operator_auth)
    register_pipeline(mcp, pipeline or pipeline_service_for(service, gates), operator_auth)
    if payments is not None:
        srv = service.settings.server
        # a paid call whose attempt never finished may be taken over by a retry once every time limit has passed
        stale_after = max([srv.tool_timeout_seconds, *srv.tool_timeouts.values()]) + 30
        mcp.add_middleware(L402Middleware(payments, stale_after=stale_after))
        register_prices(mcp, payments, srv.path, {tool: path for path, tool in PAID_ROUTES.items()},
                        service.settings.payments.public_url)
    mcp.add_middleware(ToolTimeoutMiddleware.from_settings(service.settings.server))  # inside L402: refunds
    mcp.middleware.insert(0, ToolMetricsMiddleware())  # outermost: sees every other middleware's answer
    return mcp


def build_http_app(service: BlogService, settings: Settings, gates: GateService | None = None,
                   payments: L402Service | Literal["auto"] | None = "auto") -> tuple[FastMCP, ASGIApp]:
    """The ASGI app served by ``sovereign-mcp serve``: MCP at ``settings.server.path`` plus
    ``/health``, ``/api/*`` and the Lightning address, behind FastMCP's Host/Origin guard
    (DNS-rebinding protection) and, with payments on, the L402 402-challenge guard."""
    gates = gates or gate_service_for(service)
    diagnostics = diagnostics_service_for(service, gates)
    payments = payments_for(settings) if payments == "auto" else payments
    pipeline = pipeline_service_for(service, gates)
    mcp = build_mcp(service, gates, diagnostics, payments, pipeline)
    register_routes(mcp, service, gates, diagnostics, settings, payments)
    register_metrics(mcp, settings, StateCollector(state_sources_for(
        settings, lambda: (len(service.index.articles), len(service.index.passages)), payments, pipeline)))
    if payments is not None:
        register_lnurl(mcp, payments, settings.payments.public_url)
    srv = settings.server
    app = mcp.http_app(
        path=srv.path,
        stateless_http=srv.stateless_http,
        json_response=srv.json_response,
        host_origin_protection="auto",
        allowed_hosts=[*srv.allowed_hosts, srv.host, f"{srv.host}:{srv.port}"] if srv.allowed_hosts else None,
        allowed_origins=srv.allowed_origins or None,
    )
    # Layers, outermost first: ProxyHeaders (client IP from X-Forwarded-For, trusted proxies only) ->
    # BearerAuth (scope["user"]) -> RequestLimits (413 body, 429 per client) -> L402 guard (402) -> FastMCP.
    outer: ASGIApp = app
    if payments is not None and settings.payments.mcp_http_402:
        outer = L402HTTPGuard(outer, payments, srv.path, max_body=srv.max_mcp_body_bytes)
    outer = RequestLimitsGuard(outer, srv.path, srv.max_mcp_body_bytes, limiter_for(settings), payments)
    if settings.auth.enabled:  # outermost: operator bearer tokens (off = a loopback-only deployment)
        outer = BearerAuthMiddleware(outer, verifier_for(settings))
    if srv.trusted_proxies:  # uvicorn's own proxy_headers is off in cmd_serve, so only these are believed
        outer = ProxyHeadersMiddleware(outer, trusted_hosts=srv.trusted_proxies)
    # outermost of all: request id (X-Request-ID), HTTP metrics and the access log line
    outer = ObservabilityMiddleware(outer, app.routes, srv.path, known_tools(mcp))
    return mcp, outer
