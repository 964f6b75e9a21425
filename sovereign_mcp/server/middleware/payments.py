"""The L402 FastMCP middleware: a paid MCP call is charged once, right before the tool runs, from the
credential in the ``l402`` argument, the request ``_meta["l402"]`` or ``Authorization``; an unpaid call gets
the in-band ``payment_required`` result (x402-foundation/x402 ``specs/transports-v2/mcp.md``); a tool that
raises or is cut off gets its call back, and a repeat with the same credential and arguments replays the
stored result with its receipt in ``_meta["l402/receipt"]``."""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastmcp.server.dependencies import get_http_headers, get_http_request
from fastmcp.server.middleware import Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from mcp.types import ContentBlock, TextContent
from pydantic import TypeAdapter

from sovereign_mcp.auth.verifier import has_operator_token
from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.payments import offers
from sovereign_mcp.payments.service import (
    CallInProgress,
    InvalidCredential,
    L402Service,
    PaymentChallenge,
    PaymentsUnavailable,
    Receipt,
    Replay,
)
from sovereign_mcp.server.middleware.timeouts import ToolTimeout
from sovereign_mcp.server.payments import FREE_FLAG, client_of, credential_from


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
            client = client_of(request)
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
