"""Lightning backends reached over HTTP (httpx): LNbits, LND REST and Core Lightning's clnrest.

API shapes (LNbits ``lnbits/core/views/payment_api.py``; LND REST ``lnrpc/lightning.swagger.json``;
Core Lightning ``plugins/rest-plugin`` clnrest docs):

* LNbits: ``POST /api/v1/payments`` (``X-Api-Key: <invoice key>``, ``{"out": false, "amount", "memo",
  "unit": "sat", "expiry"}``) -> ``payment_hash``, ``payment_request``; ``GET /api/v1/payments/{hash}``
  -> ``{"paid", "preimage"}``.
* LND: ``POST /v1/invoices`` (``Grpc-Metadata-macaroon: <hex>``, ``{"value", "memo", "expiry"}``) ->
  ``r_hash`` (base64), ``payment_request``; ``GET /v1/invoice/{r_hash hex}`` -> ``settled``,
  ``r_preimage`` (base64).
* Core Lightning clnrest: ``POST /v1/invoice`` (``Rune: <rune>``, ``{"amount_msat", "label",
  "description", "expiry"}``) -> ``payment_hash``, ``bolt11``; ``POST /v1/listinvoices``
  ``{"payment_hash"}`` -> ``invoices[0].status == "paid"``, ``payment_preimage``.

Any transport error, timeout or non-2xx answer becomes :class:`BackendUnavailable`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import httpx

from sovereign_mcp.payments.backends.base import BackendUnavailable, Invoice, Settlement


class _HTTPBackend:
    name = "http"

    def __init__(self, url: str, headers: dict[str, str], timeout: float = 10.0, verify: bool | str = True) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, verify=verify)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{self.name} unreachable at {self.client.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise BackendUnavailable(f"{self.name} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise BackendUnavailable(f"{self.name} answered non-JSON") from None


class LNbitsBackend(_HTTPBackend):
    """An LNbits wallet, addressed with its invoice/read key."""

    name = "lnbits"

    def __init__(self, url: str, api_key: str, timeout: float = 10.0) -> None:
        super().__init__(url, {"X-Api-Key": api_key}, timeout)

    def create_invoice(self, amount_sat: int, memo: str, expiry: int,
                       hashed_description: str | None = None) -> Invoice:
        body: dict[str, Any] = {"out": False, "amount": amount_sat, "memo": memo, "unit": "sat", "expiry": expiry}
        if hashed_description is not None:
            body["description_hash"] = hashlib.sha256(hashed_description.encode()).hexdigest()
        data = self._call("POST", "/api/v1/payments", json=body)
        bolt11 = data.get("payment_request") or data.get("bolt11")
        if not bolt11 or not data.get("payment_hash"):
            raise BackendUnavailable(f"lnbits returned no invoice: {str(data)[:200]}")
        return Invoice(bolt11, data["payment_hash"], amount_sat, int(time.time()) + expiry)

    def lookup(self, payment_hash: str) -> Settlement:
        data = self._call("GET", f"/api/v1/payments/{payment_hash}")
        paid = bool(data.get("paid"))
        return Settlement(paid, data.get("preimage") if paid else None)


class LNDBackend(_HTTPBackend):
    """LND's REST API with an invoice macaroon (hex)."""

    name = "lnd"

    def __init__(self, url: str, macaroon_hex: str, tls_cert: str | None = None, timeout: float = 10.0) -> None:
        super().__init__(url, {"Grpc-Metadata-macaroon": macaroon_hex}, timeout, verify=tls_cert or True)

    def create_invoice(self, amount_sat: int, memo: str, expiry: int,
                       hashed_description: str | None = None) -> Invoice:
        body: dict[str, Any] = {"value": str(amount_sat), "memo": memo, "expiry": str(expiry)}
        if hashed_description is not None:
            body["description_hash"] = base64.b64encode(hashlib.sha256(hashed_description.encode()).digest()).decode()
        data = self._call("POST", "/v1/invoices", json=body)
        try:
            payment_hash = base64.b64decode(data["r_hash"]).hex()
            request = data["payment_request"]
        except (KeyError, ValueError, TypeError):
            raise BackendUnavailable(f"lnd returned no invoice: {str(data)[:200]}") from None
        return Invoice(request, payment_hash, amount_sat, int(time.time()) + expiry)

    def lookup(self, payment_hash: str) -> Settlement:
        data = self._call("GET", f"/v1/invoice/{payment_hash}")
        paid = bool(data.get("settled")) or data.get("state") == "SETTLED"
        preimage = base64.b64decode(data["r_preimage"]).hex() if paid and data.get("r_preimage") else None
        return Settlement(paid, preimage)


class CLNBackend(_HTTPBackend):
    """Core Lightning's clnrest plugin with a rune."""

    name = "cln"

    def __init__(self, url: str, rune: str, timeout: float = 10.0, verify: bool | str = True) -> None:
        super().__init__(url, {"Rune": rune}, timeout, verify)

    def create_invoice(self, amount_sat: int, memo: str, expiry: int,
                       hashed_description: str | None = None) -> Invoice:
        body: dict[str, Any] = {"amount_msat": amount_sat * 1000, "label": f"sovereign-mcp-{secrets.token_hex(8)}",
                                "description": memo, "expiry": expiry}
        if hashed_description is not None:  # CLN's invoice RPC: the description goes in hashed only (tag h)
            body.update(description=hashed_description, deschashonly=True)
        data = self._call("POST", "/v1/invoice", json=body)
        if "bolt11" not in data or "payment_hash" not in data:
            raise BackendUnavailable(f"cln returned no invoice: {str(data)[:200]}")
        return Invoice(data["bolt11"], data["payment_hash"], amount_sat,
                       int(data.get("expires_at") or time.time() + expiry))

    def lookup(self, payment_hash: str) -> Settlement:
        data = self._call("POST", "/v1/listinvoices", json={"payment_hash": payment_hash})
        invoices = data.get("invoices") or []
        if not invoices:
            return Settlement(False)
        paid = invoices[0].get("status") == "paid"
        return Settlement(paid, invoices[0].get("payment_preimage") if paid else None)
