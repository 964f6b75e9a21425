"""L402 end to end with a REAL LNbits (FakeWallet) as the Lightning backend of the real server process.

LNbits runs from its own venv (``tests/fakes/lnbits_harness.py``); the server is started with
``payments.backend = "lnbits"`` and the merchant wallet's invoice key. Every invoice the server hands
out is created by LNbits, a second LNbits wallet pays it, and the preimage LNbits releases unlocks the
paid call: over ``POST /api/validate``, over MCP (``/mcp`` with the ``Authorization`` header), in
protocol over stdio (``_meta.l402``), and for LNURL-pay tips (description hash).

Skips only when LNbits cannot be installed here; under CI (``CI=true``) that is a failure instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11
import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.client.client import Client as SDKClient

from sovereign_mcp.payments.backends.base import Settlement
from sovereign_mcp.payments.backends.remote import LNbitsBackend
from tests.fakes.lnbits_harness import LNbits, LNbitsUnavailable, ensure_venv, in_ci, running_lnbits
from tests.helpers import mcp_challenge, running_server
from tests.payments.test_l402_http import ARTICLE, BODY, TOOL, assert_report

pytestmark = pytest.mark.e2e  # (an "lnbits" marker is not registered in pyproject)

PRICE_SAT = 21  # the default price of validate_quality
CORPUS_ARTICLE = """---
title: Lightning tips for a blog
date: 2025-03-01
tags: [lightning]
---

## Value for value

Readers pay for tools with Lightning invoices from the blog's own LNbits wallet.
"""


# -- fixtures ------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def lnbits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LNbits]:
    try:
        ensure_venv()
    except LNbitsUnavailable as exc:
        if in_ci():
            pytest.fail(f"CI=true: LNbits must install here, but: {exc}", pytrace=False)
        pytest.skip(f"LNbits cannot be installed here: {str(exc).splitlines()[0]}")
    with running_lnbits(tmp_path_factory.mktemp("lnbits-data"), payer_sats=1000) as instance:
        yield instance


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lnbits-corpus")
    (folder / "tips.md").write_text(CORPUS_ARTICLE, encoding="utf-8")
    return folder


def server_env(lnbits: LNbits, home: Path) -> dict[str, str]:
    """Payments on, backend = this LNbits with the merchant's invoice key; no user config."""
    return {
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "XDG_DATA_HOME": str(home / "xdg-data"),
        "SOVEREIGN_MCP_PAYMENTS__ENABLED": "true",
        "SOVEREIGN_MCP_PAYMENTS__FREE_CALLS_PER_DAY": "0",
        "SOVEREIGN_MCP_PAYMENTS__BACKEND": "lnbits",
        "SOVEREIGN_MCP_PAYMENTS__LNBITS_URL": lnbits.url,
        "SOVEREIGN_MCP_PAYMENTS__LNBITS_INVOICE_KEY": lnbits.merchant.inkey,
    }


@pytest.fixture(scope="module")
def server(lnbits: LNbits, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("lnbits-server")
    with running_server("--corpus", str(corpus), "--data-dir", str(home / "data"),
                        env=server_env(lnbits, home)) as url:
        yield url


# -- helpers -------------------------------------------------------------------------------------------

def challenge_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 402, response.text
    values = response.headers.get_list("www-authenticate")
    match = re.fullmatch(r'L402 macaroon="([A-Za-z0-9+/=]+)", invoice="(ln[0-9a-z]+)"', values[0])
    assert match, values
    required = response.json()["payment_required"]
    assert (required["macaroon"], required["invoice"]) == match.groups()
    return required


def assert_lnbits_invoice(lnbits: LNbits, required: dict[str, Any]) -> None:
    """The challenge's invoice was made by LNbits for the merchant wallet, and is still unpaid."""
    invoice = bolt11.decode(required["invoice"])
    assert invoice.payment_hash == required["payment_hash"]
    assert invoice.amount_msat == PRICE_SAT * 1000 == required["amount_sat"] * 1000
    assert abs(invoice.date + invoice.expiry - required["expires_at"]) <= 5
    known = lnbits.lookup(required["payment_hash"])
    assert known["paid"] is False, known
    details = known["details"]
    assert details["wallet_id"] == lnbits.merchant.id
    assert details["bolt11"] == required["invoice"]
    assert details["amount"] == PRICE_SAT * 1000
    assert TOOL in details["memo"]


def pay_and_confirm(lnbits: LNbits, required: dict[str, Any]) -> str:
    """The payer wallet pays through LNbits; LNbits then shows the merchant's invoice paid."""
    payer_before, merchant_before = lnbits.balance_msat(lnbits.payer), lnbits.balance_msat(lnbits.merchant)
    preimage = lnbits.pay(required["invoice"])
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == required["payment_hash"]
    known = lnbits.lookup(required["payment_hash"])
    assert known["paid"] is True and known["preimage"] == preimage, known
    assert lnbits.balance_msat(lnbits.merchant) == merchant_before + PRICE_SAT * 1000
    assert lnbits.balance_msat(lnbits.payer) == payer_before - PRICE_SAT * 1000
    return preimage


# -- the harness and our backend class against LNbits itself -------------------------------------------

def test_internal_payment_releases_the_preimage(lnbits: LNbits) -> None:
    backend = LNbitsBackend(lnbits.url, lnbits.merchant.inkey)
    invoice = backend.create_invoice(7, "harness check", 120)
    assert bolt11.decode(invoice.bolt11).payment_hash == invoice.payment_hash
    assert backend.lookup(invoice.payment_hash) == Settlement(False, None)
    preimage = lnbits.pay(invoice.bolt11)
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == invoice.payment_hash
    assert backend.lookup(invoice.payment_hash) == Settlement(True, preimage)
    with pytest.raises(AssertionError, match=r"(?i)insufficient balance"):
        lnbits.pay(backend.create_invoice(1_000_000, "too much", 120).bolt11)


# -- HTTP: /api/validate ---------------------------------------------------------------------------------

def test_api_validate_paid_through_lnbits(server: str, lnbits: LNbits) -> None:
    required = challenge_of(httpx.post(f"{server}/api/validate", json=BODY, timeout=30))
    assert required["tool"] == TOOL and required["reason"] == "this tool is paid"
    assert_lnbits_invoice(lnbits, required)

    preimage = pay_and_confirm(lnbits, required)
    credential = f"L402 {required['macaroon']}:{preimage}"
    paid = httpx.post(f"{server}/api/validate", json=BODY, headers={"Authorization": credential}, timeout=30)
    assert paid.status_code == 200, paid.text
    assert_report(paid.json())

    replay = challenge_of(httpx.post(f"{server}/api/validate", json=BODY, headers={"Authorization": credential},
                                     timeout=30))
    assert "used up" in replay["reason"]
    assert replay["payment_hash"] != required["payment_hash"]
    assert lnbits.lookup(replay["payment_hash"])["paid"] is False


def test_preimage_of_another_lnbits_payment_is_refused(server: str, lnbits: LNbits) -> None:
    first = challenge_of(httpx.post(f"{server}/api/validate", json=BODY, timeout=30))
    second = challenge_of(httpx.post(f"{server}/api/validate", json=BODY, timeout=30))
    preimage = pay_and_confirm(lnbits, first)
    wrong = f"L402 {second['macaroon']}:{preimage}"
    refused = challenge_of(httpx.post(f"{server}/api/validate", json=BODY, headers={"Authorization": wrong},
                                      timeout=30))
    assert "preimage does not match" in refused["reason"]
    assert lnbits.lookup(second["payment_hash"])["paid"] is False


# -- MCP over HTTP ---------------------------------------------------------------------------------------

async def test_mcp_validate_quality_paid_through_lnbits(server: str, lnbits: LNbits) -> None:
    required = await mcp_challenge(server, TOOL, {"text": ARTICLE})  # in-band, as every MCP client sees it
    assert_lnbits_invoice(lnbits, required)
    preimage = pay_and_confirm(lnbits, required)

    credential = f"L402 {required['macaroon']}:{preimage}"
    async with Client(StreamableHttpTransport(f"{server}/mcp", headers={"Authorization": credential})) as client:
        result = await client.call_tool(TOOL, {"text": ARTICLE}, raise_on_error=False)
        assert not result.is_error, result.content
        assert_report(result.structured_content)
    assert lnbits.lookup(required["payment_hash"])["paid"] is True
    # again, paid through LNbits and retried by the tool's l402 argument from the official SDK client
    second = await mcp_challenge(server, TOOL, {"text": ARTICLE})
    preimage = pay_and_confirm(lnbits, second)
    async with SDKClient(f"{server}/mcp") as sdk:
        paid = await sdk.call_tool(TOOL, {"text": ARTICLE, "l402": f"L402 {second['macaroon']}:{preimage}"})
    assert not paid.is_error, paid.content
    assert_report(paid.structured_content)
    assert paid.meta["l402/receipt"]["payment_hash"] == second["payment_hash"]
    assert paid.meta["l402/receipt"]["amount_sat"] == 21


# -- MCP over stdio: payment_required in protocol, credential in _meta -----------------------------------

async def test_stdio_payment_required_then_meta_credential(lnbits: LNbits, corpus: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **server_env(lnbits, tmp_path)}
    transport = StdioTransport(sys.executable, ["-m", "sovereign_mcp", "serve", "--transport", "stdio", "--no-watch",
                                                "--log-level", "warning", "--corpus", str(corpus),
                                                "--data-dir", str(tmp_path / "data")], env=env)
    async with Client(transport) as client:
        first = await client.call_tool(TOOL, {"text": ARTICLE}, raise_on_error=False)
        assert first.is_error
        required = first.structured_content["payment_required"]
        assert required["invoice"] in first.content[0].text
        assert_lnbits_invoice(lnbits, required)
        preimage = pay_and_confirm(lnbits, required)
        paid = await client.call_tool(TOOL, {"text": ARTICLE}, meta={"l402": f"L402 {required['macaroon']}:{preimage}"},
                                      raise_on_error=False)
        assert not paid.is_error, paid.content
        assert_report(paid.structured_content)


# -- LNURL-pay tips: the invoice commits to the metadata -------------------------------------------------

def test_lnurl_tip_invoice_from_lnbits(server: str, lnbits: LNbits) -> None:
    pay_request = httpx.get(f"{server}/.well-known/lnurlp/tips", timeout=30)
    assert pay_request.status_code == 200, pay_request.text
    offer = pay_request.json()
    assert offer["tag"] == "payRequest"
    answer = httpx.get(offer["callback"], params={"amount": 5000, "comment": "thanks"}, timeout=30)
    assert answer.status_code == 200, answer.text
    invoice = bolt11.decode(answer.json()["pr"])
    assert invoice.amount_msat == 5000
    assert invoice.description_hash == hashlib.sha256(offer["metadata"].encode()).hexdigest()
    known = lnbits.lookup(invoice.payment_hash)
    assert known["paid"] is False and known["details"]["wallet_id"] == lnbits.merchant.id
    preimage = lnbits.pay(answer.json()["pr"])
    settled = lnbits.lookup(invoice.payment_hash)
    assert settled["paid"] is True and settled["preimage"] == preimage
