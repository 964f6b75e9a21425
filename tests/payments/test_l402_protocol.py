"""L402 in-protocol over stdio (``payment_required`` results, credential in ``_meta`` or in the ``l402``
argument) and the ``sovereign-mcp l402`` operator commands (tokens, stats, revoke, pay).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import bolt11
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from sovereign_mcp.payments import macaroons
from sovereign_mcp.payments.backends.dev import DevBackend
from sovereign_mcp.payments.store import TokenStore
from tests.helpers import isolated_env

pytestmark = pytest.mark.e2e

TOOL = "validate_quality"
TEXT = "## Notes\n\nThe gate runs twice per draft and gives the same answer every time.\n"
CORPUS_ARTICLE = """---
title: Lightning tips for a blog
date: 2025-03-01
tags: [lightning]
---

## Value for value

Readers can pay for tools with Lightning invoices; the zebrafish example shows the flow.
"""


class Home:
    def __init__(self, root: Path, corpus: Path) -> None:
        self.root, self.corpus, self.data = root, corpus, root / "data"


def cli(home: Home, *args: str, data: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sovereign_mcp", "l402", *args, "--data-dir", str(data or home.data)],
        capture_output=True, text=True, timeout=60, cwd=home.root, env=isolated_env(home.root, **env))


def pay(home: Home, invoice: str) -> str:
    done = cli(home, "pay", invoice)
    assert done.returncode == 0, done.stderr
    preimage = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", preimage)
    return preimage


def pay_in_process(home: Home, invoice: str) -> str:
    """Settle a dev invoice through the data dir's SQLite file (what ``l402 pay`` does, without a process)."""
    store = TokenStore(home.data / "l402.sqlite3")
    try:
        return DevBackend(store, home.data / "l402-dev-node.key").pay(invoice)
    finally:
        store.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("l402-stdio")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "tips.md").write_text(CORPUS_ARTICLE, encoding="utf-8")
    return Home(root, corpus)


@asynccontextmanager
async def stdio(home: Home) -> AsyncIterator[Client]:
    transport = StdioTransport(
        sys.executable,
        ["-m", "sovereign_mcp", "serve", "--transport", "stdio", "--data-dir", str(home.data),
         "--corpus", str(home.corpus), "--no-watch", "--log-level", "warning"],
        env=isolated_env(home.root), cwd=str(home.root))
    async with Client(transport) as client:
        yield client


def required_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result.content
    required = result.structured_content["payment_required"]
    assert required["invoice"] in result.content[0].text
    return required


def assert_report(result: Any) -> None:
    assert not result.is_error, result.content
    report = result.structured_content
    assert report["verdict"] in {"pass", "pass_with_warnings", "fail"}
    assert report["chars"] == len(TEXT) and report["kind"] == "article"


async def test_stdio_payment_required_then_paid_retries(home: Home) -> None:
    async with stdio(home) as client:
        first = required_of(await client.call_tool(TOOL, {"text": TEXT}, raise_on_error=False))
        assert first["scheme"] == "L402" and first["tool"] == TOOL
        assert first["reason"] == "this tool is paid"
        invoice = bolt11.decode(first["invoice"])
        assert invoice.amount_msat == 21_000 and first["amount_sat"] == 21
        assert invoice.payment_hash == first["payment_hash"]
        ident = macaroons.identifier_of(macaroons.decode(first["macaroon"]))
        assert ident.payment_hash.hex() == invoice.payment_hash

        cred = f"L402 {first['macaroon']}:{pay(home, first['invoice'])}"
        paid = await client.call_tool(TOOL, {"text": TEXT}, meta={"l402": cred}, raise_on_error=False)
        assert_report(paid)
        assert paid.meta["l402/receipt"]["charged"] is True and paid.meta["l402/receipt"]["calls_left"] == 0
        # the same call again replays its answer free; another call on the spent token is refused
        replay = await client.call_tool(TOOL, {"text": TEXT}, meta={"l402": cred}, raise_on_error=False)
        assert replay.structured_content == paid.structured_content
        assert replay.meta["l402/receipt"]["replayed"] is True and replay.meta["l402/receipt"]["charged"] is False
        other = {"text": TEXT + "\nMore."}
        again = required_of(await client.call_tool(TOOL, other, meta={"l402": cred}, raise_on_error=False))
        assert "used up" in again["reason"]

        second = required_of(await client.call_tool(TOOL, {"text": TEXT}, raise_on_error=False))
        assert second["payment_hash"] != first["payment_hash"]
        cred2 = f"L402 {second['macaroon']}:{pay_in_process(home, second['invoice'])}"
        assert_report(await client.call_tool(TOOL, {"text": TEXT, "l402": cred2}, raise_on_error=False))
        spent = required_of(await client.call_tool(TOOL, {**other, "l402": cred2}, raise_on_error=False))
        assert "used up" in spent["reason"]

        # a forged credential (the real identifier, signed with another root key) and other bad ones
        third = required_of(await client.call_tool(TOOL, {"text": TEXT}, raise_on_error=False))
        preimage = pay_in_process(home, third["invoice"])
        ident = macaroons.identifier_of(macaroons.decode(third["macaroon"]))
        forged = macaroons.encode(macaroons.mint(secrets.token_bytes(32), ident, [TOOL], 2**31, 100))
        refused = required_of(await client.call_tool(TOOL, {"text": TEXT}, meta={"l402": f"L402 {forged}:{preimage}"},
                                                     raise_on_error=False))
        assert "signature does not verify" in refused["reason"]
        assert refused["payment_hash"] != third["payment_hash"], "a fresh challenge comes with the refusal"
        wrong = required_of(await client.call_tool(
            TOOL, {"text": TEXT, "l402": f"L402 {third['macaroon']}:{'00' * 32}"}, raise_on_error=False))
        assert "preimage does not match" in wrong["reason"]
        garbage = required_of(await client.call_tool(TOOL, {"text": TEXT}, meta={"l402": "L402 nonsense"},
                                                     raise_on_error=False))
        assert garbage["reason"] and garbage["reason"] != "this tool is paid"
        # the genuine credential was not burnt by the forgeries
        genuine = f"L402 {third['macaroon']}:{preimage}"
        assert_report(await client.call_tool(TOOL, {"text": TEXT}, meta={"l402": genuine}, raise_on_error=False))

        # free tools need nothing
        found = await client.call_tool("search_blog", {"query": "zebrafish"})
        assert found.structured_content["results"][0]["slug"] == "tips"


async def test_cli_tokens_stats_revoke(home: Home) -> None:
    async with stdio(home) as client:
        required = required_of(await client.call_tool(TOOL, {"text": TEXT}, raise_on_error=False))
        cred = f"L402 {required['macaroon']}:{pay_in_process(home, required['invoice'])}"
        token_id = macaroons.identifier_of(macaroons.decode(required["macaroon"])).token_id.hex()

        listed = cli(home, "tokens", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = {row["token_id"]: row for row in json.loads(listed.stdout)}
        row = rows[token_id]
        assert row["state"] == "pending"  # paid, but the server learns it when the credential comes
        assert (row["payment_hash"], row["price_sat"], row["max_calls"], row["calls_used"], row["tools"]) == \
            (required["payment_hash"], 21, 1, 0, TOOL)
        assert all("root_key" not in r for r in rows.values())
        assert "root_key" not in listed.stdout

        before = json.loads(cli(home, "stats", "--json").stdout)
        revoked = cli(home, "revoke", token_id)
        assert revoked.returncode == 0 and token_id in revoked.stdout
        refused = required_of(await client.call_tool(TOOL, {"text": TEXT}, meta={"l402": cred}, raise_on_error=False))
        assert "revoked" in refused["reason"]
        again = cli(home, "revoke", token_id)
        assert again.returncode == 1 and "already revoked" in again.stderr

        # buy one and use it: stats count it
        bought = required_of(await client.call_tool(TOOL, {"text": TEXT}, raise_on_error=False))
        cred2 = f"L402 {bought['macaroon']}:{pay_in_process(home, bought['invoice'])}"
        assert_report(await client.call_tool(TOOL, {"text": TEXT}, meta={"l402": cred2}, raise_on_error=False))

    after_run = cli(home, "stats", "--json")
    assert after_run.returncode == 0, after_run.stderr
    after = json.loads(after_run.stdout)
    earned_before = before["earned"].get(TOOL, {"tokens": 0, "sats": 0, "calls": 0})
    assert after["earned"][TOOL]["tokens"] == earned_before["tokens"] + 1
    assert after["earned"][TOOL]["sats"] == earned_before["sats"] + 21
    assert after["sats_total"] == sum(e["sats"] for e in after["earned"].values())
    assert after["by_state"]["revoked"] >= 1 and after["by_state"]["paid"] >= 1


def test_cli_pay_refuses_foreign_invoice(home: Home, tmp_path: Path) -> None:
    foreign = _issue_invoice(tmp_path / "other-data")  # another data dir's dev node
    done = cli(home, "pay", foreign)
    assert done.returncode == 2
    assert "not issued by this server" in done.stderr
    assert done.stdout == ""
    bad = cli(home, "pay", "lnbc1garbage")
    assert bad.returncode == 2 and "not a BOLT11 invoice" in bad.stderr


def _issue_invoice(data: Path) -> str:
    store = TokenStore(data / "l402.sqlite3")
    try:
        return DevBackend(store, data / "l402-dev-node.key").create_invoice(21, "x", 600).bolt11
    finally:
        store.close()


def test_cli_pay_refuses_non_dev_backend(home: Home) -> None:
    invoice = _issue_invoice(home.data)
    done = cli(home, "pay", invoice, SOVEREIGN_MCP_PAYMENTS__BACKEND="lnbits",
               SOVEREIGN_MCP_PAYMENTS__LNBITS_URL="http://127.0.0.1:9", SOVEREIGN_MCP_PAYMENTS__LNBITS_INVOICE_KEY="x")
    assert done.returncode == 2
    assert "dev backend only" in done.stderr and "lnbits" in done.stderr
    assert done.stdout == ""


def test_cli_l402_with_incomplete_backend_config_is_exit_2(home: Home) -> None:
    done = cli(home, "pay", "lnbcrt1x", SOVEREIGN_MCP_PAYMENTS__BACKEND="lnbits")
    assert "payments.lnbits_url" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
