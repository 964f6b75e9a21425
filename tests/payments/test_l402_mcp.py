"""Paying for tools over MCP/HTTP with standard clients (the default: in-band challenges, no HTTP 402).

The real ``sovereign-mcp serve`` process (embedded dev backend) and real clients on loopback: ``fastmcp.Client``,
the official ``mcp`` SDK client and, where node is present, the MCP Inspector CLI. They see the invoice as a tool
result, pay it (``sovereign-mcp l402 pay``, or the dev node's store directly), retry with the credential as the
``l402`` argument or in ``_meta``, get a receipt, replay an answer free, and are never charged twice: not under
10 parallel retries of a single-use credential, not when the connection drops mid-call. Price discovery:
``get_prices``, the paid tools' listing, ``GET /.well-known/l402.json``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11
import httpx
import jsonschema
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp.client.client import Client as SDKClient

from sovereign_mcp.payments import macaroons
from sovereign_mcp.payments.store import TokenStore
from tests.helpers import mcp_challenge
from tests.payments.test_l402_http import ARTICLE, TOOL, Server, assert_report, pay_cli, pay_in_process, serve, stats

pytestmark = pytest.mark.e2e

# The fields of GET /.well-known/l402.json, as README.md documents them (lightninglabs/L402 discovery-spec
# section 5, version 1.0, plus calls_per_token / valid_seconds / mcp_tool on each resource).
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["version", "provider", "currencies", "services"],
    "properties": {
        "version": {"const": "1.0"},
        "provider": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"},
                                                                             "uri": {"type": "string"}}},
        "currencies": {"type": "array", "contains": {"const": "msat"}},
        "macaroon_versions": {"const": [0]},
        "payment_methods": {"const": ["bolt11"]},
        "services": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "resources"],
            "properties": {
                "name": {"const": "sovereign-mcp"},
                "capabilities": {"type": "array", "items": {"type": "string"}},
                "resources": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["path", "method", "capability", "pricing", "calls_per_token",
                                                   "valid_seconds"],
                    "properties": {
                        "path": {"type": "string"}, "method": {"const": "POST"}, "capability": {"type": "string"},
                        "pricing": {"type": "object", "required": ["model", "price_msat"],
                                    "properties": {"model": {"const": "fixed"},
                                                   "price_msat": {"type": "integer", "minimum": 1000}}},
                        "calls_per_token": {"type": "integer", "minimum": 1},
                        "valid_seconds": {"type": "integer", "minimum": 60},
                        "mcp_tool": {"type": "string"},
                    }}},
            }}},
        "caveats": {"type": "object"},
    },
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mcp-pay-corpus")
    (folder / "tips.md").write_text("---\ntitle: Tips\ndate: 2025-03-01\n---\n\nLightning tips.\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(corpus, tmp_path_factory.mktemp("mcp-pay"), SOVEREIGN_MCP_PAYMENTS__MCP_HTTP_402="false") as srv:
        yield srv


def credential(required: dict[str, Any], preimage: str) -> str:
    return f"L402 {required['macaroon']}:{preimage}"


def tokens(server: Server) -> dict[str, Any]:
    store = TokenStore(server.data / "l402.sqlite3")
    try:
        return {t.payment_hash: t for t in store.tokens(limit=10_000)}
    finally:
        store.close()


async def test_unpaid_call_is_a_tool_result_every_client_reads(server: Server) -> None:
    # fastmcp.Client: a result, not MCPError -32603; the same JSON as structured content and as text
    required = await mcp_challenge(server.url, TOOL, {"text": ARTICLE})
    assert required["scheme"] == "L402" and required["tool"] == TOOL and required["amount_sat"] == 21
    assert required["calls"] == 1 and required["reason"] == "this tool is paid"
    assert "'l402' argument" in required["retry"]
    invoice = bolt11.decode(required["invoice"])
    assert invoice.amount_msat == 21_000 and invoice.payment_hash == required["payment_hash"]
    assert macaroons.identifier_of(macaroons.decode(required["macaroon"])).payment_hash.hex() == invoice.payment_hash
    # raised as a ToolError by default, with the invoice in the message an LLM reads
    async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
        with pytest.raises(Exception, match="payment_required") as raised:
            await client.call_tool(TOOL, {"text": ARTICLE})
        assert "lnbcrt" in str(raised.value)
    # the official SDK client: isError with the structured challenge, which validates against the listed schema
    async with SDKClient(f"{server.url}/mcp") as sdk:
        listed = {t.name: t for t in (await sdk.list_tools()).tools}
        result = await sdk.call_tool(TOOL, {"text": ARTICLE})
    assert result.is_error and result.structured_content["payment_required"]["amount_sat"] == 21
    assert json.loads(result.content[0].text) == result.structured_content
    jsonschema.validate(result.structured_content, listed[TOOL].output_schema)
    # the same tools/call never answers 402 on /mcp (that is opt-in: payments.mcp_http_402)
    assert all(r.status_code != 402 for r in [httpx.get(f"{server.url}/health", timeout=10)])


async def test_prices_before_paying(server: Server) -> None:
    async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
        listed = {t.name: t for t in await client.list_tools()}
        prices = (await client.call_tool("get_prices", {})).structured_content
    paid = listed[TOOL]
    assert "21 sats for 1 call" in paid.description and "valid 24 h" in paid.description
    assert paid.meta["l402/price"] == {"scheme": "L402", "amount_sat": 21, "calls": 1, "valid_seconds": 86_400}
    assert "l402/price" in listed["trigger_pipeline"].meta and "l402/price" not in (listed["search_blog"].meta or {})
    # the widened output schema still describes the report
    report_branch = paid.output_schema["anyOf"][0]
    assert {"verdict", "findings"} <= set(report_branch["properties"])
    by_tool = {p["tool"]: p for p in prices["tools"]}
    assert by_tool[TOOL] == {"tool": TOOL, "amount_sat": 21, "amount_msat": 21_000, "calls": 1,
                             "valid_seconds": 86_400, "routes": ["mcp", "/api/validate"]}
    assert by_tool["trigger_pipeline"]["amount_sat"] == 2100 and by_tool["trigger_pipeline"]["routes"] == ["mcp"]

    response = httpx.get(f"{server.url}/.well-known/l402.json", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert response.headers["access-control-allow-origin"] == "*"
    manifest = response.json()
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    resources = manifest["services"][0]["resources"]
    assert {(r["path"], r["capability"]) for r in resources} == {
        ("/mcp", TOOL), ("/api/validate", TOOL), ("/mcp", "trigger_pipeline"), ("/mcp", "check_affiliate_links"),
        ("/mcp", "caption_image")}
    assert all(r["pricing"]["price_msat"] == by_tool[r["capability"]]["amount_msat"] for r in resources)
    # the plain route's 402 points at the manifest
    challenge = httpx.post(f"{server.url}/api/validate", json={"text": ARTICLE}, timeout=30)
    assert challenge.status_code == 402 and 'rel="l402-manifest"' in challenge.headers["link"]


async def test_pay_by_argument_receipt_then_free_replay(server: Server) -> None:
    required = await mcp_challenge(server.url, TOOL, {"text": ARTICLE})
    cred = credential(required, pay_cli(server, required["invoice"]))
    earned_before = stats(server)["sats_total"]
    async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
        paid = await client.call_tool(TOOL, {"text": ARTICLE, "l402": cred}, raise_on_error=False)
        assert not paid.is_error, paid.content
        assert_report(paid.structured_content)
        receipt = paid.meta["l402/receipt"]
        assert receipt["payment_hash"] == required["payment_hash"] and receipt["amount_sat"] == 21
        assert receipt["charged"] is True and receipt["replayed"] is False and receipt["calls_left"] == 0
        assert receipt["valid_until"] > required["expires_at"]
        # the answer got lost? the same call again: the same answer, free
        again = await client.call_tool(TOOL, {"text": ARTICLE, "l402": cred}, raise_on_error=False)
        assert again.structured_content == paid.structured_content
        assert again.meta["l402/receipt"]["replayed"] is True and again.meta["l402/receipt"]["charged"] is False
        # a different call on the spent token: a fresh challenge that says why
        other = await client.call_tool(TOOL, {"text": ARTICLE + "\nMore.", "l402": cred}, raise_on_error=False)
        assert other.is_error and "used up" in other.structured_content["payment_required"]["reason"]
    token = tokens(server)[required["payment_hash"]]
    assert token.calls_used == 1
    assert stats(server)["sats_total"] - earned_before == 21  # the earnings match the one receipt


async def test_pay_by_meta_with_the_official_sdk_client(server: Server) -> None:
    required = await mcp_challenge(server.url, TOOL, {"text": ARTICLE})
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    async with SDKClient(f"{server.url}/mcp") as sdk:
        result = await sdk.call_tool(TOOL, {"text": ARTICLE}, meta={"l402": credential(required, preimage)})
    assert not result.is_error, result.content
    assert_report(result.structured_content)
    assert result.meta["l402/receipt"]["amount_sat"] == 21 and result.meta["l402/receipt"]["charged"] is True


async def test_bad_credentials_get_a_fresh_challenge_with_the_reason(server: Server) -> None:
    required = await mcp_challenge(server.url, TOOL, {"text": ARTICLE})
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    mac = macaroons.decode(required["macaroon"])

    def narrowed(caveat: str) -> str:
        copy = macaroons.decode(required["macaroon"])
        copy.add_first_party_caveat(caveat)
        return f"L402 {macaroons.encode(copy)}:{preimage}"

    cases = {
        "forged": (f"L402 {required['macaroon']}:{'11' * 32}", TOOL, "preimage does not match"),
        "narrowed to another tool": (narrowed(f"{macaroons.CAPABILITIES}=trigger_pipeline"), TOOL, ""),
        "expired": (narrowed(f"{macaroons.VALID_UNTIL}=1000"), TOOL, "expired"),
        "other tool": (credential(required, preimage), "trigger_pipeline", ""),
    }
    for name, (cred, tool, reason) in cases.items():
        args = {"text": ARTICLE} if tool == TOOL else {"kind": "hero_image", "topic": "t"}
        fresh = await mcp_challenge(server.url, tool, {**args, "l402": cred})
        assert fresh["payment_hash"] != required["payment_hash"], name
        assert fresh["reason"] != "this tool is paid" and reason in fresh["reason"], (name, fresh["reason"])
    assert mac.identifier  # the original is untouched and still good
    async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
        good = await client.call_tool(TOOL, {"text": ARTICLE, "l402": credential(required, preimage)},
                                      raise_on_error=False)
    assert not good.is_error, good.content


async def test_single_use_credential_under_10_parallel_retries(server: Server) -> None:
    required = await mcp_challenge(server.url, TOOL, {"text": ARTICLE})
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    cred = credential(required, preimage)

    async def call(arguments: dict[str, Any]) -> Any:
        async with Client(StreamableHttpTransport(f"{server.url}/mcp"), timeout=60) as client:
            return await client.call_tool(TOOL, {**arguments, "l402": cred}, raise_on_error=False)

    # the same call 10 times at once: run and charged once, the others replay it or are told to retry
    results = await asyncio.gather(*(call({"text": ARTICLE}) for _ in range(10)))
    charged = [r for r in results if not r.is_error and r.meta["l402/receipt"]["charged"]]
    replayed = [r for r in results if not r.is_error and r.meta["l402/receipt"]["replayed"]]
    waiting = [r for r in results if r.is_error and "call_in_progress" in r.structured_content]
    assert len(charged) == 1 and len(charged) + len(replayed) + len(waiting) == 10, [r.content for r in results]
    assert all(r.structured_content == charged[0].structured_content for r in replayed)
    assert tokens(server)[required["payment_hash"]].calls_used == 1
    # 10 different calls at once on a second single-use token: exactly one is served
    second = await mcp_challenge(server.url, TOOL, {"text": ARTICLE})
    [preimage2] = pay_in_process(server.data, [second["invoice"]])
    cred = credential(second, preimage2)
    results = await asyncio.gather(*(call({"text": f"{ARTICLE}\nVariant {k}."}) for k in range(10)))
    served = [r for r in results if not r.is_error]
    refused = [r for r in results if r.is_error]
    assert len(served) == 1 and all("used up" in r.structured_content["payment_required"]["reason"] for r in refused)
    assert tokens(server)[second["payment_hash"]].calls_used == 1


async def test_a_call_cut_off_mid_way_is_retried_free(server: Server) -> None:
    big = "# Draft\n\n" + "Actually, this is basically a very simple sentence that we leverage to delve. " * 24_000
    arguments = {"text": big[:1_900_000]}
    required = await mcp_challenge(server.url, TOOL, arguments)
    [preimage] = pay_in_process(server.data, [required["invoice"]])
    arguments["l402"] = credential(required, preimage)
    with pytest.raises(TimeoutError):  # the client gives up and closes its connection while the gate runs
        async with Client(StreamableHttpTransport(f"{server.url}/mcp"), timeout=120) as client:
            await asyncio.wait_for(client.call_tool(TOOL, arguments, raise_on_error=False), timeout=0.3)
    async with Client(StreamableHttpTransport(f"{server.url}/mcp"), timeout=120) as client:
        for _ in range(120):  # "still running, retry in N s" until the cut-off attempt settles
            result = await client.call_tool(TOOL, arguments, raise_on_error=False)
            if not (result.is_error and "call_in_progress" in (result.structured_content or {})):
                break
            await asyncio.sleep(0.5)
    assert not result.is_error, result.content[0].text[:500]
    assert result.structured_content["chars"] == len(arguments["text"]) and result.structured_content["findings"]
    assert tokens(server)[required["payment_hash"]].calls_used == 1  # one answer, one charge


async def test_trigger_pipeline_paid_in_band_and_a_retry_queues_no_second_job(server: Server) -> None:
    arguments = {"kind": "hero_image", "topic": "a quiet rack"}
    required = await mcp_challenge(server.url, "trigger_pipeline", arguments)
    assert required["amount_sat"] == 2100
    cred = credential(required, pay_cli(server, required["invoice"]))
    async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
        first = await client.call_tool("trigger_pipeline", {**arguments, "l402": cred}, raise_on_error=False)
        again = await client.call_tool("trigger_pipeline", {**arguments, "l402": cred}, raise_on_error=False)
    assert not first.is_error, first.content
    assert first.structured_content["job_id"] == again.structured_content["job_id"]
    assert first.meta["l402/receipt"]["amount_sat"] == 2100 and again.meta["l402/receipt"]["replayed"] is True


NPX = shutil.which("npx")
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


def _inspector(url: str, *args: str, is_error: bool = False) -> dict[str, Any]:
    """The Inspector CLI's JSON output; it exits 5 (``tool_is_error``) on an ``isError`` result."""
    proc = subprocess.run([NPX or "npx", "-y", INSPECTOR, "--cli", f"{url}/mcp", "--transport", "http", *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == (5 if is_error else 0), proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(NPX is None, reason="node/npx not installed (CI has it)")
def test_mcp_inspector_cli_sees_the_invoice_and_pays_by_argument(server: Server) -> None:
    text = "# Inspector\n\nA short draft."
    unpaid = _inspector(server.url, "--method", "tools/call", "--tool-name", TOOL, "--tool-arg", f"text={text}",
                        is_error=True)
    assert unpaid["isError"] is True
    required = unpaid["structuredContent"]["payment_required"]
    cred = credential(required, pay_cli(server, required["invoice"]))
    paid = _inspector(server.url, "--method", "tools/call", "--tool-name", TOOL, "--tool-arg", f"text={text}",
                      "--tool-arg", f"l402={cred}")
    assert not paid.get("isError") and paid["structuredContent"]["chars"] == len(text)
    assert paid["_meta"]["l402/receipt"]["amount_sat"] == 21
