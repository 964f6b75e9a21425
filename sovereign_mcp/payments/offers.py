"""What the paid tools cost, said before anyone pays: the price list, the ``payment_required`` shape and the
L402 discovery manifest.

* The price of a tool is a :class:`~sovereign_mcp.config.Price`: ``sats`` buys a token good for ``calls``
  calls within ``valid_seconds`` of its purchase.
* :data:`PAYMENT_REQUIRED_SCHEMA` is the JSON schema of the in-band challenge a paid tool returns
  (``isError: true``, this object in ``structuredContent`` and as JSON text), in the shape of the x402 MCP
  transport (x402-foundation/x402 ``specs/transports-v2/mcp.md``: the requirement travels in the tool result,
  not as an HTTP status or a JSON-RPC error).
* :func:`manifest` is the discovery manifest served at ``/.well-known/l402.json``, version ``"1.0"`` of
  lightninglabs/L402 ``discovery-spec.md`` section 5 (``provider``, ``currencies``, ``services`` with
  ``resources`` priced ``{"model": "fixed", "price_msat"}``, ``caveats``); each resource also carries the
  extension members ``calls_per_token`` and ``valid_seconds``, which the spec does not define.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sovereign_mcp.config import Price
from sovereign_mcp.payments import macaroons

RETRY_HINT = ("pay the invoice, then repeat the call with the credential 'L402 <macaroon>:<hex preimage>' in the "
              "tool's 'l402' argument, in the request _meta under \"l402\", or in an Authorization header")


class PaymentRequired(BaseModel):
    """An L402 challenge for one purchase of a tool (amount in sats, ``expires_at`` in unix seconds)."""

    scheme: str = Field("L402", description="Always 'L402'.")
    tool: str
    amount_sat: int = Field(description="Price of the token, sats.")
    calls: int = Field(description="Calls the token is good for once paid.")
    invoice: str = Field(description="BOLT11 invoice to pay.")
    macaroon: str = Field(description="Base64 macaroon; valid once the invoice is paid.")
    payment_hash: str = Field(description="Hex payment hash of the invoice.")
    expires_at: int = Field(description="When the invoice expires, unix seconds.")
    reason: str = Field(description="Why this call was not served (no credential, or what was wrong with it).")
    retry: str = Field(description="How to repeat the call after paying.")


PAYMENT_REQUIRED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"payment_required": PaymentRequired.model_json_schema()},
    "required": ["payment_required"],
}


def admit_payment_required(output_schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """``output_schema`` widened to also accept the in-band challenge, so a client that validates every
    ``structuredContent`` (apify/apify-mcp-server#608) accepts the ``payment_required`` result. The root
    stays ``type: object`` (MCP requires it); ``$defs`` stay at the root for their ``$ref`` s."""
    if output_schema is None:
        return None
    inner = {k: v for k, v in output_schema.items() if k != "$defs"}
    widened: dict[str, Any] = {"type": "object", "anyOf": [inner, PAYMENT_REQUIRED_SCHEMA]}
    if "$defs" in output_schema:
        widened["$defs"] = output_schema["$defs"]
    return widened


class ToolPrice(BaseModel):
    """The price of one paid tool."""

    tool: str
    amount_sat: int = Field(description="Price of one token, sats.")
    amount_msat: int = Field(description="The same, millisatoshis.")
    calls: int = Field(description="Calls one token buys.")
    valid_seconds: int = Field(description="How long a token stays valid after purchase, seconds.")
    routes: list[str] = Field(description="Where the tool is sold: 'mcp' (tools/call) and any plain HTTP route.")


class PriceList(BaseModel):
    """Every paid tool's price, and how paying works."""

    scheme: str = "L402"
    currency: str = "sat"
    tools: list[ToolPrice]
    manifest: str = Field("/.well-known/l402.json", description="The L402 discovery manifest (same prices).")
    how_to_pay: str = RETRY_HINT


def describe(price: Price) -> str:
    """One sentence for a paid tool's description, e.g. "Paid (L402): 21 sats for 1 call, valid 24 h."."""
    hours = price.valid_seconds / 3600
    validity = f"{hours:g} h" if hours >= 1 else f"{price.valid_seconds // 60} min"
    calls = f"{price.calls} call{'s' if price.calls > 1 else ''}"
    return (f"Paid (L402): {price.sats} sats for {calls}, valid {validity}. An unpaid call returns the invoice; "
            f"pay it and repeat the call with the credential in the 'l402' argument. A repeated call with the "
            f"same credential and arguments is never charged twice.")


def price_meta(price: Price) -> dict[str, Any]:
    """The ``_meta["l402/price"]`` of a paid tool's listing."""
    return {"scheme": "L402", "amount_sat": price.sats, "calls": price.calls, "valid_seconds": price.valid_seconds}


def price_list(prices: dict[str, Price], http_routes: dict[str, str]) -> PriceList:
    """``prices`` (tool -> price) as a :class:`PriceList`; ``http_routes`` maps a tool to its plain HTTP route."""
    return PriceList(tools=[
        ToolPrice(tool=tool, amount_sat=p.sats, amount_msat=p.sats * 1000, calls=p.calls, valid_seconds=p.valid_seconds,
                  routes=["mcp", *([http_routes[tool]] if tool in http_routes else [])])
        for tool, p in sorted(prices.items())
    ])


def manifest(prices: dict[str, Price], mcp_path: str, http_routes: dict[str, str], name: str,
             uri: str | None = None) -> dict[str, Any]:
    """The discovery manifest (see the module docstring): one service, ``sovereign-mcp``, whose capabilities
    are the paid tools; each tool is a resource on ``POST {mcp_path}`` (a ``tools/call``) and, where it has
    one, on its plain HTTP route."""
    resources = []
    for tool, p in sorted(prices.items()):
        pricing = {"model": "fixed", "price_msat": p.sats * 1000}
        extra = {"calls_per_token": p.calls, "valid_seconds": p.valid_seconds}
        resources.append({"path": mcp_path, "method": "POST", "capability": tool, "pricing": pricing,
                          "mcp_tool": tool, **extra})
        if tool in http_routes:
            resources.append({"path": http_routes[tool], "method": "POST", "capability": tool, "pricing": pricing,
                              **extra})
    provider: dict[str, Any] = {"name": name}
    if uri:
        provider["uri"] = uri
    return {
        "version": "1.0",
        "provider": provider,
        "currencies": ["msat"],
        "macaroon_versions": [0],
        "payment_methods": ["bolt11"],
        "services": [{"name": macaroons.SERVICE, "description": "Paid MCP tools of this sovereign-mcp server.",
                      "capabilities": sorted(prices), "resources": resources}],
        "caveats": {
            "services": {"type": "service_list", "attenuation": "subset"},
            macaroons.CAPABILITIES: {"type": "string", "attenuation": "subset",
                                     "description": "The tools the token may call."},
            macaroons.VALID_UNTIL: {"type": "timestamp", "attenuation": "earlier"},
            macaroons.MAX_CALLS: {"type": "integer", "attenuation": "decreasing",
                                  "description": "Calls the token may spend in all."},
        },
    }
