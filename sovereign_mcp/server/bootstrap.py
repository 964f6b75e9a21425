"""The composition root: settings -> KB and blog index -> gate, diagnostics, payments, pipeline -> the app.

Every way of running the server goes through here: ``sovereign-mcp serve`` (HTTP with one worker, or
stdio), each worker process of ``serve --workers N`` (:func:`sovereign_mcp.server.asgi.create_app`) and the
tests. The KB is loaded once and handed to the gate and to diagnostics; the blog index is opened once
(from the cache when it is current) and read by the others through its live snapshot.

The two middleware stacks are each one ordered list, outermost first (the way Starlette's
``Starlette.build_middleware_stack`` lists its own): :func:`mcp_middleware` for FastMCP middleware (around
every MCP request, inside the transport) and :func:`http_guards` for the ASGI layers around the whole HTTP
app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastmcp import FastMCP
from fastmcp.server.middleware import Middleware
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sovereign_mcp import __version__
from sovereign_mcp.affiliate.service import AffiliateService
from sovereign_mcp.alttext.service import AltTextService, gpu_lease
from sovereign_mcp.auth.verifier import verifier_for
from sovereign_mcp.config import Settings
from sovereign_mcp.diagnostics.service import DiagnosticsService
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.kb.loader import KnowledgeBase, load_kb
from sovereign_mcp.observability.metrics import StateCollector
from sovereign_mcp.payments.service import L402Service, open_payments
from sovereign_mcp.pipeline.service import PipelineService
from sovereign_mcp.ratelimit import limiter_for
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.affiliate import register_affiliate
from sovereign_mcp.server.alttext import register_alttext
from sovereign_mcp.server.app import INSTRUCTIONS, register_blog
from sovereign_mcp.server.dashboard import register_dashboard
from sovereign_mcp.server.diagnostics import register_diagnostics
from sovereign_mcp.server.http.auth import BearerAuthMiddleware
from sovereign_mcp.server.http.limits import RequestLimitsGuard
from sovereign_mcp.server.http.observability import ObservabilityMiddleware
from sovereign_mcp.server.http.payments import L402HTTPGuard
from sovereign_mcp.server.metrics import known_tools, register_metrics, state_sources_for
from sovereign_mcp.server.middleware.payments import L402Middleware
from sovereign_mcp.server.middleware.schemas import CachedDereferenceMiddleware
from sovereign_mcp.server.middleware.timeouts import ToolTimeoutMiddleware
from sovereign_mcp.server.middleware.tool_metrics import ToolMetricsMiddleware
from sovereign_mcp.server.middleware.unavailable import DatabaseUnavailableMiddleware
from sovereign_mcp.server.payments import register_lnurl, register_prices
from sovereign_mcp.server.pipeline import register_pipeline
from sovereign_mcp.server.quality import register_quality
from sovereign_mcp.server.routes import PAID_ROUTES, register_routes

log = logging.getLogger("sovereign_mcp")

Guard = Callable[[ASGIApp], ASGIApp]  # wraps the app below it


@dataclass
class Components:
    """Everything the tools and routes serve, built once per process by :func:`build_components`.

    ``payments`` is ``None`` when ``payments.enabled`` is off (every tool is free then).
    """

    settings: Settings
    blog: BlogService
    kb: KnowledgeBase
    gates: GateService
    diagnostics: DiagnosticsService
    pipeline: PipelineService
    payments: L402Service | None
    affiliate: AffiliateService
    alt_text: AltTextService

    def close(self) -> None:
        """Stop the corpus watcher (the pipeline worker stops with the app's lifespan)."""
        self.blog.close()


def build_components(settings: Settings, blog: BlogService | None = None,
                     payments: L402Service | Literal["auto"] | None = "auto") -> Components:
    """Load the KB and the blog index once and build the engines over them.

    ``blog`` reuses an index service that is already open; ``payments="auto"`` opens the L402 service when
    ``payments.enabled`` (``None`` forces every tool free, an :class:`L402Service` is used as given).

    Raises:
        DatabaseUnavailable: ``database_url`` names a PostgreSQL server that cannot be reached.
        FileNotFoundError: a corpus folder does not exist.
    """
    blog = blog or BlogService(settings)
    kb = load_kb(settings.kb.paths)
    gates = GateService(settings, lambda: blog.index.articles, kb=kb)

    def article_url(slug: str) -> str | None:
        found = blog.index.by_slug.get(slug)
        return blog.index.articles[found].url if found is not None else None

    diagnostics = DiagnosticsService(settings, kb, article_url)
    pipeline = PipelineService(settings, gates=gates, articles=lambda: blog.index.articles)
    if payments == "auto":
        payments = open_payments(settings) if settings.payments.enabled else None
    affiliate = AffiliateService(settings.affiliate, kb, lambda: blog.index.articles)
    return Components(settings, blog, kb, gates, diagnostics, pipeline, payments, affiliate,
                      alt_text_service(settings, pipeline, blog))


def alt_text_service(settings: Settings, pipeline: PipelineService, blog: BlogService) -> AltTextService:
    """The captioner on the pipeline's inference chain, under the SGLang service's GPU lease when managed."""
    deps = pipeline.deps

    def article(slug: str) -> str | None:
        found = blog.index.by_slug.get(slug)
        if found is None:
            return None
        a = blog.index.articles[found]
        return f"The image belongs to the article '{a.title}': {a.description}"

    lease = gpu_lease(lambda: deps.gpu, deps.gpu_service_for("sglang"), settings.alt_text.gpu_wait_seconds)
    return AltTextService(settings.alt_text, lambda: deps.chat, lease, pipeline.artifact, article)


def serving_components(settings: Settings, watch: bool = True) -> Components:
    """:func:`build_components` for a serving process: logs how the index came up and, with ``watch`` and
    ``corpus.watch``, starts the corpus watcher."""
    c = build_components(settings)
    h = c.blog.health()
    log.info("index ready: %s articles, %s passages (%s, %.2f s)", h["articles"], h["passages"],
             "from cache" if c.blog.from_cache else "built", c.blog.load_seconds)
    if watch and settings.corpus.watch:
        c.blog.start_watching()
    return c


def mcp_middleware(c: Components) -> list[Middleware]:
    """FastMCP middleware, outermost first.

    Metrics see every other layer's answer; database outages are told apart before L402 (whose refunds need
    the database too); the time limit sits inside L402 so a timed-out paid call is refunded.
    """
    srv = c.settings.server
    stack: list[Middleware] = [ToolMetricsMiddleware(), CachedDereferenceMiddleware(), DatabaseUnavailableMiddleware()]
    if c.payments is not None:
        # a paid call whose attempt never finished may be taken over by a retry once every time limit has passed
        stale_after = max([srv.tool_timeout_seconds, *srv.tool_timeouts.values()]) + 30
        stack.append(L402Middleware(c.payments, stale_after=stale_after))
    stack.append(ToolTimeoutMiddleware.from_settings(srv))
    return stack


def build_mcp(c: Components) -> FastMCP:
    """The FastMCP server: blog tools and resources, the gate, diagnostics, the pipeline, prices, middleware."""
    mcp = FastMCP(name="sovereign-mcp", version=__version__, instructions=INSTRUCTIONS,
                  mask_error_details=True, dereference_schemas=False)  # CachedDereferenceMiddleware inlines $ref
    register_blog(mcp, c.blog)
    register_quality(mcp, c.gates)
    operator_auth = c.settings.auth.enabled
    register_diagnostics(mcp, c.diagnostics, operator_auth)
    register_pipeline(mcp, c.pipeline, operator_auth)
    register_affiliate(mcp, c.affiliate, operator_auth)
    register_alttext(mcp, c.alt_text)
    if c.payments is not None:
        register_prices(mcp, c.payments, c.settings.server.path,
                        {tool: path for path, tool in PAID_ROUTES.items()}, c.settings.payments.public_url)
    for middleware in mcp_middleware(c):
        mcp.add_middleware(middleware)
    return mcp


def http_guards(c: Components, mcp: FastMCP, app: ASGIApp) -> list[Guard]:
    """ASGI layers around the HTTP app, outermost first.

    Request id, HTTP metrics and the access line see everything; the client address comes from
    X-Forwarded-For only behind ``server.trusted_proxies`` (uvicorn's own ``proxy_headers`` is off); operator
    bearer tokens (``auth.enabled``) set ``scope["user"]``; body size and per-client rate limits answer 413 /
    429; the L402 HTTP challenge (only with ``payments.mcp_http_402``) answers 402 before FastMCP.
    """
    settings, srv, payments = c.settings, c.settings.server, c.payments
    routes = getattr(app, "routes", [])
    guards: list[Guard] = [lambda inner: ObservabilityMiddleware(inner, routes, srv.path, known_tools(mcp))]
    if srv.trusted_proxies:
        guards.append(lambda inner: ProxyHeadersMiddleware(inner, trusted_hosts=srv.trusted_proxies))
    if settings.auth.enabled:
        guards.append(lambda inner: BearerAuthMiddleware(inner, verifier_for(settings)))
    guards.append(lambda inner: RequestLimitsGuard(inner, srv.path, srv.max_mcp_body_bytes, limiter_for(settings),
                                                   payments))
    if payments is not None and settings.payments.mcp_http_402:
        guards.append(lambda inner: L402HTTPGuard(inner, payments, srv.path, max_body=srv.max_mcp_body_bytes))
    return guards


def build_http_app(c: Components) -> tuple[FastMCP, ASGIApp]:
    """The ASGI app of ``sovereign-mcp serve``: MCP at ``server.path`` plus ``/health``, ``/api/*``,
    ``/metrics``, the Lightning address and the operator dashboard (``/dashboard``), behind FastMCP's
    Host/Origin guard (DNS-rebinding protection) and the layers of :func:`http_guards`."""
    settings, srv = c.settings, c.settings.server
    mcp = build_mcp(c)
    register_routes(mcp, c.blog, c.gates, c.diagnostics, settings, c.payments)
    register_metrics(mcp, settings, StateCollector(state_sources_for(
        settings, lambda: (len(c.blog.index.articles), len(c.blog.index.passages)), c.payments, c.pipeline)))
    if c.payments is not None:
        register_lnurl(mcp, c.payments, settings.payments.public_url)
    if settings.dashboard.enabled:  # login with an operator token; no data without a session
        register_dashboard(mcp, settings, c.pipeline, c.blog, c.gates, c.payments)
    app = mcp.http_app(
        path=srv.path,
        stateless_http=srv.stateless_http,
        json_response=srv.json_response,
        host_origin_protection="auto",
        allowed_hosts=[*srv.allowed_hosts, srv.host, f"{srv.host}:{srv.port}"] if srv.allowed_hosts else None,
        allowed_origins=srv.allowed_origins or None,
    )
    outer: ASGIApp = app
    for guard in reversed(http_guards(c, mcp, app)):
        outer = guard(outer)
    return mcp, outer
