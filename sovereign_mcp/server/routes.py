"""Plain-HTTP routes: ``GET /health`` and the JSON ``/api/*`` endpoints for web widgets.

``/api/search``, ``/api/article``, ``/api/tags``, ``/api/validate`` (the quality gate) and
``/api/diagnose`` (SGLang diagnostics; ``probe: true`` is operator-only) accept
``POST`` with a JSON object body or ``GET`` with query parameters, validated by the same argument
types as the MCP tools. Errors are JSON ``{"error": "...", "details": [...]}``: 400 bad arguments,
404 unknown article, 413 body too large, 415 not JSON; 401 for an operator-only option without an
operator bearer token (``WWW-Authenticate: Bearer scope="operator"``, RFC 6750 §3); 503 with ``Retry-After``
while the database (PostgreSQL) is down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastmcp import FastMCP
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sovereign_mcp import __version__
from sovereign_mcp.auth.verifier import scope_is_operator
from sovereign_mcp.config import Settings
from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.diagnostics.engine import MAX_LOG_BYTES
from sovereign_mcp.diagnostics.service import DiagnosticsService
from sovereign_mcp.gate.engine import MAX_INPUT_BYTES
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.payments.service import L402Service
from sovereign_mcp.search import api
from sovereign_mcp.search.api import (
    Budget,
    Count,
    DetailArg,
    Explain,
    MaxChars,
    Offset,
    Query,
    SectionRef,
    Slug,
    Sort,
    Tag,
    TagSort,
)
from sovereign_mcp.search.index import ArticleNotFound
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.diagnostics import (
    PROBE_REFUSED,
    Backend,
    Command,
    Env,
    GraphBs,
    Hardware,
    ImageTag,
    Log,
    MemFraction,
    Probe,
)
from sovereign_mcp.server.middleware.unavailable import database_unavailable_response
from sovereign_mcp.server.payments import authorize_http
from sovereign_mcp.server.quality import KindArg, RuleIds, Text


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Request):
    query: Query = ""
    tag: Tag = None
    sort: Sort = "relevance"
    n: Count = None
    detail: DetailArg = "passages"
    max_chars: Budget = None
    explain: Explain = False


class ArticleRequest(_Request):
    slug: Slug
    section: SectionRef = None
    offset: Offset = 0
    max_chars: MaxChars = None


class TagsRequest(_Request):
    sort: TagSort = "count_desc"


class DiagnoseRequest(_Request):
    """The MCP tool's arguments (``probe`` needs an operator bearer token)."""

    error_log: Log = None
    launch_command: Command = None
    env: Env = None
    hardware: Hardware = None
    attention_backend: Backend = None
    mem_fraction: MemFraction = None
    cuda_graph_max_bs: GraphBs = None
    image_tag: ImageTag = None
    error_message: Log = None
    probe: Probe = False


class ValidateRequest(_Request):
    text: Text
    kind: KindArg = "article"
    rules: RuleIds = None


class HTTPProblem(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(self, status: int, error: str, details: list[Any] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.details = status, error, details or []

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "details": self.details}, status_code=self.status)


async def read_arguments(request: Request, model: type[BaseModel], max_bytes: int) -> Any:
    """Validate the request's arguments (JSON body for POST, query string for GET) into ``model``.

    Raises:
        HTTPProblem: 413 body too large, 415 not JSON, 400 not an object or failed validation.
    """
    if request.method == "GET":
        raw: Any = dict(request.query_params)
    else:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise HTTPProblem(413, f"request body larger than {max_bytes} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise HTTPProblem(413, f"request body larger than {max_bytes} bytes")
        try:
            raw = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPProblem(415, f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise HTTPProblem(400, "body is nested too deeply") from None
        if not isinstance(raw, dict):
            raise HTTPProblem(400, "body must be a JSON object of arguments")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise HTTPProblem(400, f"invalid arguments: {summary}", details) from None


PAID_ROUTES = {"/api/validate": "validate_quality"}  # plain HTTP route -> the paid tool it sells (HTTP 402)

def register_routes(mcp: FastMCP, service: BlogService, gates: GateService, diagnostics: DiagnosticsService,
                    settings: Settings, payments: L402Service | None = None) -> None:
    """Attach ``/health`` and ``/api/{search,article,tags,validate,diagnose}`` to ``mcp``'s HTTP app."""
    def json_route(path: str, model: type[BaseModel], handler: Callable[[Any], BaseModel],
                   limit: int = settings.server.max_body_bytes, paid_tool: str | None = None,
                   operator_field: str | None = None, blocking: bool = False) -> None:
        """``blocking``: the handler may take long (a 1 MB gate run, a live probe), so it runs in a worker
        thread; sub-millisecond handlers (index lookups) run inline, where a thread hop would cost more."""
        async def run(args: Any) -> Response:
            result = await run_in_threadpool(handler, args) if blocking else handler(args)
            return JSONResponse(result.model_dump(mode="json"))

        async def endpoint(request: Request) -> Response:
            try:
                args = await read_arguments(request, model, limit)
                if operator_field and getattr(args, operator_field):  # an operator-only option, e.g. probe
                    if settings.auth.enabled and not scope_is_operator(request.scope):
                        return JSONResponse({"error": PROBE_REFUSED}, status_code=401,
                                            headers={"WWW-Authenticate": 'Bearer scope="operator"'})
                    return await run(args)
                receipt = None
                if paid_tool and payments is not None and payments.price(paid_tool) is not None:
                    refused, receipt = await run_in_threadpool(authorize_http, payments, request, paid_tool)
                    if refused is not None:
                        return refused
                try:
                    return await run(args)
                except Exception:
                    if receipt is not None and payments is not None:  # a call that failed is not charged
                        await run_in_threadpool(payments.refund, receipt)
                    raise
            except HTTPProblem as problem:
                return problem.response()
            except DatabaseUnavailable as exc:  # 503 + Retry-After, not a 500
                return database_unavailable_response(exc)
            except ArticleNotFound as exc:
                return HTTPProblem(404, str(exc), exc.suggestions).response()
            except ValueError as exc:  # includes GateInputError
                return HTTPProblem(400, str(exc)).response()

        route: Callable[[Request], Awaitable[Response]] = endpoint
        mcp.custom_route(path, methods=["GET", "POST"])(route)

    json_route("/api/search", SearchRequest,
               lambda a: api.search_blog(service.index, a.query, a.tag, a.sort, a.n, a.detail, a.max_chars, a.explain))
    json_route("/api/article", ArticleRequest,
               lambda a: api.get_article(service.index, a.slug, a.section, a.offset, a.max_chars))
    json_route("/api/tags", TagsRequest, lambda a: api.list_tags(service.index, a.sort))
    json_route("/api/validate", ValidateRequest, lambda a: gates.gate().check(a.text, a.kind, a.rules),
               limit=max(settings.server.max_body_bytes, 2 * MAX_INPUT_BYTES),  # 2 MB of text, JSON-escaped
               paid_tool=PAID_ROUTES["/api/validate"], blocking=True)
    def diagnose(a: DiagnoseRequest) -> BaseModel:
        url = settings.diagnostics.sglang_url if a.probe else None
        if a.probe and not url:
            raise ValueError("no SGLang server to probe: set diagnostics.sglang_url in the server config")
        return diagnostics.run(**a.model_dump(exclude={"probe"}), probe_url=url)

    json_route("/api/diagnose", DiagnoseRequest, diagnose,
               limit=max(settings.server.max_body_bytes, 2 * MAX_LOG_BYTES), operator_field="probe", blocking=True)

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "pid": os.getpid(),  # which worker answered
                             **service.health(), **gates.health()})
