"""L402 over HTTP on the real ``sovereign-mcp serve`` process (payments on, embedded dev backend), with
``payments.mcp_http_402 = true`` (the opt-in mode for L402-aware proxies; the default in-band challenges on
``/mcp`` are tested in ``tests/payments/test_l402_mcp.py``):
402 challenges on ``/api/validate`` and on paid ``tools/call`` messages to ``/mcp``, paying through the
``sovereign-mcp l402 pay`` CLI, replay and concurrency, a restart between paying and using, a backend
that is down, the free allowance, and a real L402 client from PyPI (``l402-requests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11
import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from sovereign_mcp.payments.backends.dev import DevBackend
from sovereign_mcp.payments.store import TokenStore
from tests.helpers import free_port, isolated_env, running_server

pytestmark = pytest.mark.e2e

TOOL = "validate_quality"
ARTICLE = """---
title: Paying for a quality check
date: 2026-05-01
---

## Why

The gate checks every draft before it is published. It is deterministic.
"""
BODY = {"text": ARTICLE, "kind": "article"}
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2026-07-28",
}
CORPUS_ARTICLE = """---
title: Lightning tips for a blog
date: 2025-03-01
tags: [lightning]
---

## Value for value

Readers can pay for tools with Lightning invoices; the zebrafish example shows the flow.
"""


# -- helpers -----------------------------------------------------------------------------------------

class Server:
    def __init__(self, url: str, data: Path, home: Path) -> None:
        self.url, self.data, self.home = url, data, home


def cli(server: Server, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sovereign_mcp", "l402", *args, "--data-dir", str(server.data)],
                          capture_output=True, text=True, timeout=60, cwd=server.home,
                          env=isolated_env(server.home, **env))


def pay_cli(server: Server, invoice: str) -> str:
    done = cli(server, "pay", invoice)
    assert done.returncode == 0, done.stderr
    preimage = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", preimage), done.stdout
    return preimage


def pay_in_process(data: Path, invoices: list[str]) -> list[str]:
    """Settle dev invoices through the same SQLite file the server uses (fast, for bulk)."""
    store = TokenStore(data / "l402.sqlite3")
    try:
        backend = DevBackend(store, data / "l402-dev-node.key")
        return [backend.pay(invoice) for invoice in invoices]
    finally:
        store.close()


def stats(server: Server) -> dict[str, Any]:
    done = cli(server, "stats", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def challenge_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 402, response.text
    return response.json()["payment_required"]


def tools_call(tool: str, arguments: dict[str, Any], id_: int = 1, meta: dict[str, Any] | None = None) -> dict:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


def assert_report(payload: dict[str, Any], text: str = ARTICLE) -> None:
    assert payload["verdict"] in {"pass", "pass_with_warnings", "fail"}
    assert payload["kind"] == "article"
    assert payload["chars"] == len(text)
    assert isinstance(payload["findings"], list) and payload["rules_checked"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("l402-corpus")
    (folder / "tips.md").write_text(CORPUS_ARTICLE, encoding="utf-8")
    return folder


@contextlib.contextmanager
def serve(corpus: Path, home: Path, **env: str) -> Iterator[Server]:
    data = home / "data"
    env = {"SOVEREIGN_MCP_RATE_LIMIT__ENABLED": "false",  # these tests issue far more than 20 invoices/min
           "SOVEREIGN_MCP_PAYMENTS__MCP_HTTP_402": "true", **env}
    with running_server("--corpus", str(corpus), "--data-dir", str(data), env=isolated_env(home, **env)) as url:
        yield Server(url, data, home)


@pytest.fixture(scope="module")
def server(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(corpus, tmp_path_factory.mktemp("l402-http")) as srv:
        yield srv


# -- /api/validate -------------------------------------------------------------------------------------

def test_challenge_without_credential(server: Server) -> None:
    response = httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30)
    assert response.status_code == 402
    values = response.headers.get_list("www-authenticate")
    assert len(values) == 2
    pattern = r'(L402|LSAT) macaroon="([A-Za-z0-9+/=]+)", invoice="(lnbcrt[0-9a-z]+)"'
    matches = [re.fullmatch(pattern, v) for v in values]
    assert all(matches), values
    assert [m.group(1) for m in matches] == ["L402", "LSAT"]
    assert matches[0].group(2, 3) == matches[1].group(2, 3)

    required = response.json()["payment_required"]
    assert required["scheme"] == "L402" and required["tool"] == TOOL
    assert required["amount_sat"] == 21 and required["calls"] == 1
    assert (required["macaroon"], required["invoice"]) == matches[0].group(2, 3)
    assert isinstance(required["expires_at"], int) and required["expires_at"] > 0
    invoice = bolt11.decode(required["invoice"])
    assert invoice.amount_msat == 21_000
    assert invoice.payment_hash == required["payment_hash"]
    assert invoice.date + invoice.expiry == required["expires_at"]
    assert required["reason"] == "this tool is paid"


def test_pay_retry_then_replay(server: Server) -> None:
    required = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30))
    preimage = pay_cli(server, required["invoice"])
    cred = f"L402 {required['macaroon']}:{preimage}"

    paid = httpx.post(f"{server.url}/api/validate", json=BODY, headers={"Authorization": cred}, timeout=30)
    assert paid.status_code == 200, paid.text
    assert_report(paid.json())

    replay = httpx.post(f"{server.url}/api/validate", json=BODY, headers={"Authorization": cred}, timeout=30)
    again = challenge_of(replay)
    assert "used up" in again["reason"]
    assert again["invoice"] != required["invoice"], "a fresh challenge comes with the refusal"
    assert len(replay.headers.get_list("www-authenticate")) == 2


def test_lsat_credential_accepted(server: Server) -> None:
    required = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30))
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    ok = httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30,
                    headers={"Authorization": f"LSAT {required['macaroon']}:{preimage}"})
    assert ok.status_code == 200, ok.text


def test_a_failed_paid_api_call_is_not_charged(server: Server) -> None:
    required = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30))
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    cred = {"Authorization": f"L402 {required['macaroon']}:{preimage}"}
    failed = httpx.post(f"{server.url}/api/validate", json={**BODY, "rules": ["no-such-rule"]}, headers=cred,
                        timeout=30)
    assert failed.status_code == 400 and "no-such-rule" in failed.text
    ok = httpx.post(f"{server.url}/api/validate", json=BODY, headers=cred, timeout=30)  # the call was given back
    assert ok.status_code == 200, ok.text
    assert "used up" in challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, headers=cred,
                                                timeout=30))["reason"]


def test_wrong_preimage_gets_402(server: Server) -> None:
    required = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30))
    pay_cli(server, required["invoice"])
    wrong = f"L402 {required['macaroon']}:{'00' * 32}"
    refused = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, headers={"Authorization": wrong},
                                      timeout=30))
    assert "preimage does not match" in refused["reason"]
    garbage = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY,
                                      headers={"Authorization": "L402 garbage"}, timeout=30))
    assert garbage["reason"] != "this tool is paid"


def test_invalid_arguments_are_400_before_any_challenge(server: Server) -> None:
    response = httpx.post(f"{server.url}/api/validate", json={"txt": "typo"}, timeout=30)
    assert response.status_code == 400


# -- /mcp ----------------------------------------------------------------------------------------------

def test_mcp_tools_call_without_credential_is_402(server: Server) -> None:
    response = httpx.post(f"{server.url}/mcp", headers=MCP_HEADERS, timeout=30,
                          content=json.dumps(tools_call(TOOL, {"text": ARTICLE})))
    required = challenge_of(response)
    assert required["tool"] == TOOL and required["amount_sat"] == 21
    assert [v.split()[0] for v in response.headers.get_list("www-authenticate")] == ["L402", "LSAT"]
    # a batch is refused before anything is counted or invoiced (MCP 2025-06-18 dropped JSON-RPC batching)
    issued = len(TokenStore(server.data / "l402.sqlite3").tokens(limit=1000))
    batch = [tools_call("search_blog", {"query": "lightning"}, 1), tools_call(TOOL, {"text": "x"}, 2)]
    refused = httpx.post(f"{server.url}/mcp", headers=MCP_HEADERS, content=json.dumps(batch), timeout=30)
    assert refused.status_code == 400 and "batches are not supported" in refused.json()["error"]["message"]
    assert len(TokenStore(server.data / "l402.sqlite3").tokens(limit=1000)) == issued
    # a credential that does not verify gets a fresh challenge with the reason
    bad = httpx.post(f"{server.url}/mcp", timeout=30, content=json.dumps(tools_call(TOOL, {"text": "x"})),
                     headers={**MCP_HEADERS, "Authorization": f"L402 {required['macaroon']}:{'11' * 32}"})
    assert "preimage does not match" in challenge_of(bad)["reason"]


async def test_mcp_paid_call_with_authorization_header(server: Server) -> None:
    required = challenge_of(httpx.post(f"{server.url}/mcp", headers=MCP_HEADERS, timeout=30,
                                       content=json.dumps(tools_call(TOOL, {"text": ARTICLE}))))
    preimage = pay_cli(server, required["invoice"])
    cred = f"L402 {required['macaroon']}:{preimage}"
    transport = StreamableHttpTransport(f"{server.url}/mcp", headers={"Authorization": cred})
    async with Client(transport) as client:
        result = await client.call_tool(TOOL, {"text": ARTICLE}, raise_on_error=False)
        assert not result.is_error, result.content
        assert_report(result.structured_content)
        # free tools do not touch the credential
        found = await client.call_tool("search_blog", {"query": "zebrafish"})
        assert found.structured_content["results"]
    # spent: the same header now gets a 402 with the reason
    replay = httpx.post(f"{server.url}/mcp", timeout=30, content=json.dumps(tools_call(TOOL, {"text": "x"})),
                        headers={**MCP_HEADERS, "Authorization": cred})
    assert "used up" in challenge_of(replay)["reason"]


async def test_mcp_paid_call_with_meta_credential(server: Server) -> None:
    required = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30))
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    cred = f"L402 {required['macaroon']}:{preimage}"
    async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
        result = await client.call_tool(TOOL, {"text": ARTICLE}, meta={"l402": cred}, raise_on_error=False)
        assert not result.is_error, result.content
        assert_report(result.structured_content)


async def test_free_tools_without_paying(server: Server) -> None:
    async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
        found = await client.call_tool("search_blog", {"query": "zebrafish"})
        assert found.structured_content["results"][0]["slug"] == "tips"
        tags = await client.call_tool("list_tags", {})
        assert tags.structured_content["tags"]
        rules = await client.call_tool("list_kb_rules", {})
        assert rules.structured_content["entries"]
    response = httpx.post(f"{server.url}/mcp", headers=MCP_HEADERS, timeout=30,
                          content=json.dumps(tools_call("search_blog", {"query": "zebrafish"})))
    assert response.status_code != 402
    assert httpx.post(f"{server.url}/api/search", json={"query": "zebrafish"}, timeout=30).status_code == 200


# -- concurrency ---------------------------------------------------------------------------------------

async def _fire(url: str, headers_list: list[dict[str, str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
        return await asyncio.gather(*(client.post(f"{url}/api/validate", json=BODY, headers=h)
                                      for h in headers_list))


def test_50_parallel_paid_calls_with_distinct_tokens(server: Server) -> None:
    challenges = [challenge_of(r) for r in asyncio.run(_fire(server.url, [{}] * 50))]
    assert len({c["payment_hash"] for c in challenges}) == 50
    preimages = pay_in_process(server.data, [c["invoice"] for c in challenges])
    headers = [{"Authorization": f"L402 {c['macaroon']}:{p}"} for c, p in zip(challenges, preimages, strict=True)]
    responses = asyncio.run(_fire(server.url, headers))
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses if r.status_code != 200]
    for response in responses:
        assert_report(response.json())
    store = TokenStore(server.data / "l402.sqlite3")
    try:
        by_hash = {t.payment_hash: t for t in store.tokens("paid", limit=1000)}
    finally:
        store.close()
    assert all(by_hash[c["payment_hash"]].calls_used == 1 for c in challenges)


def test_single_use_token_10_parallel_calls(server: Server) -> None:
    required = challenge_of(httpx.post(f"{server.url}/api/validate", json=BODY, timeout=30))
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    cred = {"Authorization": f"L402 {required['macaroon']}:{preimage}"}
    responses = asyncio.run(_fire(server.url, [cred] * 10))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [402] * 9, codes
    for response in responses:
        if response.status_code == 402:
            assert "used up" in response.json()["payment_required"]["reason"]


# -- restart, backend down, free allowance ---------------------------------------------------------------

async def test_backend_down(corpus: Path, tmp_path: Path) -> None:
    closed = free_port()
    env = {"SOVEREIGN_MCP_PAYMENTS__BACKEND": "lnbits",
           "SOVEREIGN_MCP_PAYMENTS__LNBITS_URL": f"http://127.0.0.1:{closed}",
           "SOVEREIGN_MCP_PAYMENTS__LNBITS_INVOICE_KEY": "x"}
    with serve(corpus, tmp_path, **env) as srv:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(f"{srv.url}/api/validate", json=BODY)
            assert response.status_code == 503, response.text
            assert "payments unavailable" in response.json()["error"]
            assert response.headers.get("retry-after") == "30"
            assert "www-authenticate" not in response.headers

            mcp = await http.post(f"{srv.url}/mcp", headers=MCP_HEADERS,
                                  content=json.dumps(tools_call(TOOL, {"text": ARTICLE})))
            assert mcp.status_code == 503
            assert "payments unavailable" in mcp.json()["error"]

            assert (await http.post(f"{srv.url}/api/search", json={"query": "zebrafish"})).status_code == 200
        async with Client(StreamableHttpTransport(f"{srv.url}/mcp")) as client:
            found = await client.call_tool("search_blog", {"query": "zebrafish"})
            assert found.structured_content["results"]
            rules = await client.call_tool("list_kb_rules", {})
            assert rules.structured_content["entries"]


def from_address(local_address: str):
    """An httpx2 client factory for fastmcp that connects from another loopback address (another
    client bucket: the server masks IPv4 clients to /24)."""
    import httpx2

    def factory(headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None,
                **_: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers=headers, auth=auth, timeout=timeout or httpx2.Timeout(30),
                                  transport=httpx2.AsyncHTTPTransport(local_address=local_address))

    return factory


async def test_free_allowance_then_restart(corpus: Path, tmp_path: Path) -> None:
    """FREE_CALLS_PER_DAY=2 per client /24 over /api and /mcp; then a credential obtained and paid
    before a restart works once on a new server over the same data dir (and the used allowance stays)."""
    free = {"SOVEREIGN_MCP_PAYMENTS__FREE_CALLS_PER_DAY": "2"}
    with serve(corpus, tmp_path, **free) as first:
        async with httpx.AsyncClient(timeout=30) as http:  # client 127.0.0.1 -> bucket 127.0.0.0/24
            codes = [(await http.post(f"{first.url}/api/validate", json=BODY)).status_code for _ in range(3)]
            assert codes == [200, 200, 402]
            third = await http.post(f"{first.url}/mcp", headers=MCP_HEADERS,
                                    content=json.dumps(tools_call(TOOL, {"text": ARTICLE})))
            assert challenge_of(third)["reason"] == "this tool is paid", "one bucket for /api and /mcp"

        # another /24 (127.0.1.1) has its own two free calls, over MCP; the HTTP guard and the MCP
        # middleware count each call once
        transport = StreamableHttpTransport(f"{first.url}/mcp", httpx_client_factory=from_address("127.0.1.1"))
        async with Client(transport) as client:
            for _ in range(2):
                result = await client.call_tool(TOOL, {"text": ARTICLE}, raise_on_error=False)
                assert not result.is_error, result.content
                assert_report(result.structured_content)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.1.1"), timeout=30) as other:
            third = other.post(f"{first.url}/mcp", headers=MCP_HEADERS,
                               content=json.dumps(tools_call(TOOL, {"text": ARTICLE})))
            assert challenge_of(third)["reason"] == "this tool is paid"

        # obtain a challenge, pay it, then stop the server before using it
        required = challenge_of(httpx.post(f"{first.url}/api/validate", json=BODY, timeout=30))
        preimage = pay_cli(first, required["invoice"])
    cred = {"Authorization": f"L402 {required['macaroon']}:{preimage}"}

    with serve(corpus, tmp_path, **free) as second:
        assert second.data == first.data
        assert httpx.post(f"{second.url}/api/validate", json=BODY, timeout=30).status_code == 402, \
            "today's used allowance survives the restart"
        ok = httpx.post(f"{second.url}/api/validate", json=BODY, headers=cred, timeout=30)
        assert ok.status_code == 200, ok.text
        assert_report(ok.json())
        replay = httpx.post(f"{second.url}/api/validate", json=BODY, headers=cred, timeout=30)
        assert "used up" in challenge_of(replay)["reason"]


# -- a real L402 client from PyPI --------------------------------------------------------------------------

def test_l402_requests_client_pays_through_dev_backend(server: Server) -> None:
    from l402_requests import BudgetController, L402Client, WalletBase

    class DevCliWallet(WalletBase):
        """Pays by running ``sovereign-mcp l402 pay`` against the server's data dir."""

        def __init__(self) -> None:
            self.paid: list[str] = []

        async def pay_invoice(self, bolt11: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sovereign_mcp", "l402", "pay", bolt11, "--data-dir", str(server.data),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=server.home,
                env=isolated_env(server.home))
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            self.paid.append(bolt11)
            return out.decode().strip()

    before = stats(server)["earned"].get(TOOL, {"tokens": 0, "sats": 0, "calls": 0})
    wallet = DevCliWallet()
    client = L402Client(wallet=wallet, timeout=30,
                        budget=BudgetController(max_sats_per_request=100, allowed_domains={"127.0.0.1"}))
    response = client.post(f"{server.url}/api/validate", json=BODY)
    assert response.status_code == 200, response.text
    assert_report(response.json())
    assert len(wallet.paid) == 1
    assert bolt11.decode(wallet.paid[0]).amount_msat == 21_000
    [entry] = client.spending_log.records
    assert (entry.success, entry.domain, entry.path, entry.amount_sats) == (True, "127.0.0.1", "/api/validate", 21)
    after = stats(server)["earned"][TOOL]
    assert after["tokens"] - before["tokens"] == 1
    assert after["sats"] - before["sats"] == 21
    assert after["calls"] - before["calls"] == 1
