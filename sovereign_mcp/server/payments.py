"""L402 on the wire: in-band ``payment_required`` results on MCP, HTTP 402 on the plain routes.

* MCP (``/mcp`` over HTTP, and stdio), by default: an unpaid paid-tool call returns a tool result with
  ``isError: true`` and the challenge as ``structuredContent`` and as JSON text, as the x402 MCP transport
  does (x402-foundation/x402 ``specs/transports-v2/mcp.md``); HTTP 402 on ``/mcp`` broke standard clients
  (nevermined-io/payments-py#203). The retry carries ``L402 <macaroon>:<preimage>`` in the tool's ``l402``
  argument (what an LLM can set), in the request ``_meta["l402"]`` or in ``Authorization``.
* ``payments.mcp_http_402 = true``: ``/mcp`` answers such calls with ``402 Payment Required`` and
  ``WWW-Authenticate: L402 macaroon=..., invoice=...`` instead (:class:`L402HTTPGuard`, for L402-aware proxies).
* Plain HTTP (``POST /api/validate``): always 402 + ``WWW-Authenticate`` (and ``LSAT``), ``Authorization`` on
  the retry.

A paid MCP call is charged once, in :class:`L402Middleware`, right before the tool runs; a tool that raises or
is cut off gets its call back, and a repeat with the same credential and arguments replays the stored result.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastmcp import FastMCP
from fastmcp.server.dependencies import get_http_headers, get_http_request
from fastmcp.server.middleware import Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from mcp.types import ContentBlock, TextContent
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sovereign_mcp.auth.verifier import has_operator_token, scope_is_operator
from sovereign_mcp.config import Price
from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.payments import offers
from sovereign_mcp.payments.backends.base import BackendUnavailable
from sovereign_mcp.payments.service import (
    CallInProgress,
    InvalidCredential,
    L402Service,
    PaymentChallenge,
    PaymentsUnavailable,
    Receipt,
    Replay,
    allowance_key,
)
from sovereign_mcp.server.annotations import READ_ONLY
from sovereign_mcp.server.jsonrpc import (
    INVALID_REQUEST,
    BodyTooLarge,
    error_response,
    read_body,
    replaying,
    tool_calls,
)
from sovereign_mcp.server.timeouts import ToolTimeout

FREE_FLAG = "l402_free_call"


def credential_from(arguments: dict[str, Any] | None, meta: Any, authorization: str | None) -> str | None:
    """The credential of a call: ``Authorization`` header, else ``_meta.l402``, else the ``l402`` argument."""
    if authorization and authorization.strip().upper().startswith(("L402 ", "LSAT ")):
        return authorization
    if meta is not None:
        extra = meta if isinstance(meta, dict) else (getattr(meta, "model_extra", None) or {})
        value = extra.get("l402") if isinstance(extra, dict) else None
        if isinstance(value, str):
            return value
    value = (arguments or {}).get("l402")
    return value if isinstance(value, str) else None


def payment_response(challenge: PaymentChallenge, reason: str = "") -> JSONResponse:
    """``402`` with the challenge headers and the ``payment_required`` JSON body."""
    response = JSONResponse(challenge.as_content(reason), status_code=402,
                            headers={"Link": '</.well-known/l402.json>; rel="l402-manifest"'})
    for value in challenge.www_authenticate():
        response.headers.append("WWW-Authenticate", value)
    return response


def unavailable_response(exc: PaymentsUnavailable | DatabaseUnavailable) -> JSONResponse:
    """``503`` with ``Retry-After`` (30 s for the Lightning backend, a few seconds for the database)."""
    retry_after = exc.retry_after if isinstance(exc, DatabaseUnavailable) else 30
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(retry_after)})


def _client(scope_or_request: Any) -> str:
    client = scope_or_request.client if isinstance(scope_or_request, Request) else scope_or_request.get("client")
    host = client[0] if client else None
    return allowance_key(host)


def authorize_http(service: L402Service, request: Request, tool: str) -> tuple[Response | None, Receipt | None]:
    """Gate a plain-HTTP call of ``tool`` (blocking: run it in a worker thread).

    Returns ``(None, receipt)`` when it may run on a spent credential (refund the receipt if the call then
    fails), ``(None, None)`` for an operator or a free call, or ``(response, None)`` with the 402/503 to send.
    """
    if scope_is_operator(request.scope):
        return None, None
    credential = request.headers.get("authorization")
    client = _client(request)
    try:
        if credential:
            try:
                return None, service.spend(credential, tool)
            except InvalidCredential as exc:
                return payment_response(service.challenge(tool, client), str(exc)), None
        if service.free_call(client):
            return None, None
        return payment_response(service.challenge(tool, client)), None
    except (PaymentsUnavailable, DatabaseUnavailable) as exc:
        return unavailable_response(exc), None


class L402HTTPGuard:
    """ASGI middleware: answers 402 for paid ``tools/call`` requests on the MCP endpoint that carry
    no credential, or one that does not verify (Aperture's behaviour: a fresh challenge)."""

    def __init__(self, app: ASGIApp, service: L402Service, path: str, max_body: int) -> None:
        self.app = app
        self.service = service
        self.path = path.rstrip("/")
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_body)
        except BodyTooLarge as exc:
            await error_response(None, INVALID_REQUEST, str(exc), 413)(scope, receive, send)
            return
        response = await run_in_threadpool(self._check, scope, body)  # database and backend calls block
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)

    def _check(self, scope: Scope, body: bytes) -> Response | None:
        if scope_is_operator(scope):  # a verified operator bearer token (server/auth.py) pays nothing
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        for call in tool_calls(scope, body):  # [] when not JSON: the MCP layer reports the parse error
            tool = call.name
            if self.service.price(tool) is None:
                continue
            credential = credential_from(call.arguments, call.meta, headers.get("authorization"))
            client = _client(scope)
            try:
                if credential is None:
                    if self.service.free_call(client):
                        scope.setdefault("state", {})[FREE_FLAG] = True
                        continue
                    return payment_response(self.service.challenge(tool, client))
                try:
                    self.service.verify(credential, tool)
                except InvalidCredential as exc:
                    return payment_response(self.service.challenge(tool, client), str(exc))
            except (PaymentsUnavailable, DatabaseUnavailable) as exc:
                return unavailable_response(exc)
        return None


def _request_meta(context: MiddlewareContext) -> Any:
    """The request's ``_meta`` (on the params, or on FastMCP's request context)."""
    meta = getattr(context.message, "meta", None)
    if meta is None and context.fastmcp_context is not None:
        request_context = context.fastmcp_context.request_context
        meta = getattr(request_context, "meta", None) if request_context is not None else None
    return meta


class L402Middleware(Middleware):
    """FastMCP middleware for paid tools.

    * ``tools/list``: each paid tool's description gains its price, its ``_meta["l402/price"]`` the same
      figures, and its output schema also admits the ``payment_required`` challenge.
    * ``tools/call`` without a valid credential: the in-band challenge (``isError: true``, the
      ``payment_required`` object as ``structuredContent`` and as JSON text).
    * ``tools/call`` with one: the call is charged once per (token, tool, arguments) and the result carries
      ``_meta["l402/receipt"]``. Repeating it with the same credential and arguments replays the stored
      result free while the token is valid; a call that fails or is cut off is given back; one still running
      answers "retry in N s"; one whose attempt never finished (process killed, timed out) is run again free
      once ``stale_after`` seconds have passed.
    """

    def __init__(self, service: L402Service, stale_after: float = 60.0) -> None:
        self.service = service
        self.stale_after = int(stale_after) + 1

    async def on_list_tools(self, context: MiddlewareContext, call_next):  # type: ignore[override]
        tools = await call_next(context)
        out = []
        for tool in tools:
            price = self.service.price(tool.name)
            if price is None:
                out.append(tool)
                continue
            meta = {**(tool.meta or {}), "l402/price": offers.price_meta(price)}
            description = f"{(tool.description or '').rstrip()}\n\n{offers.describe(price)}"
            out.append(tool.model_copy(update={"description": description, "meta": meta,
                                               "output_schema": offers.admit_payment_required(tool.output_schema)}))
        return out

    async def on_call_tool(self, context: MiddlewareContext, call_next):  # type: ignore[override]
        params = context.message
        tool = params.name
        if self.service.price(tool) is None or has_operator_token():
            return await call_next(context)
        headers = get_http_headers(include={"authorization"})
        credential = credential_from(params.arguments, _request_meta(context), headers.get("authorization"))
        client, free_granted = "local", False
        try:
            request = get_http_request()
            client = _client(request)
            free_granted = bool(request.scope.get("state", {}).get(FREE_FLAG))
        except RuntimeError:
            pass  # stdio: the local operator's process
        outcome = await anyio.to_thread.run_sync(self._settle, tool, credential, params.arguments, client,
                                                 free_granted)
        if isinstance(outcome, ToolResult):
            return outcome
        if isinstance(outcome, Replay):
            return _with_receipt(_result_from_json(outcome.result), outcome.receipt, replayed=True)
        try:
            result = await call_next(context)
        except ToolTimeout:
            # kept open, not refunded: a timed-out sync tool keeps running in its thread and may still do
            # its work (queue a job, ...); a retry after stale_after runs it again on the same charge
            raise
        except BaseException:  # failed, or cancelled because the client went away: give the call back
            if outcome is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.service.refund, outcome)
            raise
        if outcome is None:
            return result
        with anyio.CancelScope(shield=True):  # the result exists now: keep it for a retry even if cut off
            await anyio.to_thread.run_sync(self.service.finish_call, outcome, _result_to_json(result))
        return _with_receipt(result, outcome)

    def _settle(self, tool: str, credential: str | None, arguments: dict[str, Any] | None, client: str,
                free_granted: bool) -> Receipt | Replay | ToolResult | None:
        """Blocking part of a paid call (database, Lightning backend): a receipt to run on, a replay, ``None``
        for a free call, or the ``payment_required`` / error result to answer with."""
        try:
            if credential is None:
                if free_granted or self.service.free_call(client):
                    return None
                return self._required(self.service.challenge(tool, client))
            try:
                return self.service.begin_call(credential, tool, arguments, self.stale_after)
            except InvalidCredential as exc:
                return self._required(self.service.challenge(tool, client), str(exc))
            except CallInProgress as exc:
                return ToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True,
                                  structured_content={"call_in_progress": {"tool": tool,
                                                                           "retry_after": exc.retry_after}})
        except (PaymentsUnavailable, DatabaseUnavailable) as exc:
            return ToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)

    @staticmethod
    def _required(challenge: PaymentChallenge, reason: str = "") -> ToolResult:
        """The in-band challenge: the same JSON as structured content and as the text (x402 MCP transport)."""
        content = challenge.as_content(reason)
        return ToolResult(content=[TextContent(type="text", text=json.dumps(content))], structured_content=content,
                          is_error=True)


_CONTENT = TypeAdapter(list[ContentBlock])


def _result_to_json(result: ToolResult) -> str:
    return json.dumps({"content": _CONTENT.dump_python(result.content, mode="json", by_alias=True, exclude_none=True),
                       "structured_content": result.structured_content, "is_error": result.is_error})


def _result_from_json(text: str) -> ToolResult:
    data = json.loads(text)
    return ToolResult(content=_CONTENT.validate_python(data.get("content") or []),
                      structured_content=data.get("structured_content"), is_error=bool(data.get("is_error")))


def _with_receipt(result: ToolResult, receipt: Receipt, replayed: bool = False) -> ToolResult:
    meta = {**(result.meta or {}), "l402/receipt": receipt.as_meta(replayed)}
    return ToolResult(content=result.content, structured_content=result.structured_content, meta=meta,
                      is_error=result.is_error)


def register_prices(mcp: FastMCP, service: L402Service, mcp_path: str, http_routes: dict[str, str],
                    public_url: str | None) -> None:
    """The free ``get_prices`` tool and ``GET /.well-known/l402.json`` (the discovery manifest, CORS open)."""

    @mcp.tool(annotations=READ_ONLY)
    def get_prices() -> offers.PriceList:
        """The price of every paid tool before paying: sats per token, calls per token, how long a token
        stays valid, and how to pay (L402: pay the BOLT11 invoice of the first call, repeat it with the
        credential). Free."""
        return offers.price_list(_prices(service), http_routes)

    @mcp.custom_route("/.well-known/l402.json", methods=["GET"])
    async def l402_manifest(request: Request) -> Response:
        base = (public_url or str(request.base_url)).rstrip("/")
        body = offers.manifest(_prices(service), mcp_path, http_routes, name=request.url.hostname or "sovereign-mcp",
                               uri=base)
        return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "max-age=300"})


def _prices(service: L402Service) -> dict[str, Price]:
    return {tool: price for tool in service.config.prices if (price := service.price(tool)) is not None}


LNURL_COMMENT_CHARS = 280


def lnurl_metadata(name: str, host: str) -> str:
    """The LUD-06 metadata string; identical in both LNURL-pay steps, since the invoice's
    description hash is its SHA-256."""
    return json.dumps([["text/plain", f"Value for value to {host}"], ["text/identifier", f"{name}@{host}"]])


def register_lnurl(mcp: FastMCP, service: L402Service, public_url: str | None) -> None:
    """A Lightning Address for value-for-value tips (LUD-06 payRequest, LUD-12 comments, LUD-16):
    ``GET /.well-known/lnurlp/{name}`` and its callback ``GET /lnurlp/{name}/callback?amount=<msat>``."""
    from lnurl import LnurlErrorResponse, LnurlPayActionResponse, LnurlPayMetadata, LnurlPayResponse

    config = service.config

    def base(request: Request) -> str:
        return (public_url or str(request.base_url)).rstrip("/")

    def error(reason: str, status: int = 400) -> JSONResponse:
        return JSONResponse(LnurlErrorResponse(reason=reason).model_dump(mode="json"), status_code=status)

    @mcp.custom_route("/.well-known/lnurlp/{name}", methods=["GET"])
    async def pay_request(request: Request) -> Response:
        name = request.path_params["name"]
        if name != config.lightning_address_name:
            return error(f"unknown Lightning address {name!r}", 404)
        host = request.url.hostname if public_url is None else public_url.split("://", 1)[-1].split("/")[0]
        response = LnurlPayResponse(
            callback=f"{base(request)}/lnurlp/{name}/callback",
            minSendable=config.lnurl_min_sat * 1000,
            maxSendable=config.lnurl_max_sat * 1000,
            metadata=LnurlPayMetadata(lnurl_metadata(name, host or "localhost")),
            commentAllowed=LNURL_COMMENT_CHARS,
        )
        return JSONResponse(response.model_dump(mode="json", exclude_none=True))

    @mcp.custom_route("/lnurlp/{name}/callback", methods=["GET"])
    async def pay_callback(request: Request) -> Response:
        name = request.path_params["name"]
        if name != config.lightning_address_name:
            return error(f"unknown Lightning address {name!r}", 404)
        amount = request.query_params.get("amount", "")
        if not (amount.isascii() and amount.isdigit()):
            return error("amount (millisatoshis) is required")
        msat = int(amount)
        if msat % 1000 or not config.lnurl_min_sat * 1000 <= msat <= config.lnurl_max_sat * 1000:
            return error(f"amount must be whole sats between {config.lnurl_min_sat} and {config.lnurl_max_sat}")
        comment = request.query_params.get("comment", "")
        if len(comment) > LNURL_COMMENT_CHARS:
            return error(f"comment longer than {LNURL_COMMENT_CHARS} characters")
        host = request.url.hostname if public_url is None else public_url.split("://", 1)[-1].split("/")[0]
        metadata = lnurl_metadata(name, host or "localhost")
        try:
            invoice = await run_in_threadpool(
                service.backend.create_invoice, msat // 1000, comment or f"tip to {name}",
                config.invoice_expiry, metadata)
        except BackendUnavailable as exc:
            return error(f"payments unavailable: {exc}", 503)
        return JSONResponse(LnurlPayActionResponse(pr=invoice.bolt11, routes=[]).model_dump(mode="json",
                                                                                             exclude_none=True))
