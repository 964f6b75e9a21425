"""L402 on the wire: in-band ``payment_required`` results on MCP, HTTP 402 on the plain routes.

* MCP (``/mcp`` over HTTP, and stdio), by default: an unpaid paid-tool call returns a tool result with
  ``isError: true`` and the challenge as ``structuredContent`` and as JSON text, as the x402 MCP transport
  does (x402-foundation/x402 ``specs/transports-v2/mcp.md``); HTTP 402 on ``/mcp`` broke standard clients
  (nevermined-io/payments-py#203). The retry carries ``L402 <macaroon>:<preimage>`` in the tool's ``l402``
  argument (what an LLM can set), in the request ``_meta["l402"]`` or in ``Authorization``.
* ``payments.mcp_http_402 = true``: ``/mcp`` answers such calls with ``402 Payment Required`` and
  ``WWW-Authenticate: L402 macaroon=..., invoice=...`` instead (:mod:`sovereign_mcp.server.http.payments`, for
  L402-aware proxies).
* Plain HTTP (``POST /api/validate``): always 402 + ``WWW-Authenticate`` (and ``LSAT``), ``Authorization`` on
  the retry.

A paid MCP call is charged once, in :mod:`sovereign_mcp.server.middleware.payments`, right before the tool
runs; a tool that raises or is cut off gets its call back, and a repeat with the same credential and arguments
replays the stored result. This module holds what both layers and the plain routes share: reading the
credential, the client key, the 402 and 503 answers, and the price and LNURL routes.
"""

from __future__ import annotations

import json
from typing import Any

from fastmcp import FastMCP
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sovereign_mcp.auth.verifier import scope_is_operator
from sovereign_mcp.config import Price
from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.payments import offers
from sovereign_mcp.payments.backends.base import BackendUnavailable
from sovereign_mcp.payments.service import (
    InvalidCredential,
    L402Service,
    PaymentChallenge,
    PaymentsUnavailable,
    Receipt,
    allowance_key,
)
from sovereign_mcp.server.annotations import READ_ONLY

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


def client_of(scope_or_request: Any) -> str:
    """The allowance key of the caller of an ASGI scope or request (IPv4 /24, IPv6 /48: see ``allowance_key``)."""
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
    client = client_of(request)
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
