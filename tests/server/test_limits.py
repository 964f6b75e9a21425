"""Rate limits, trusted proxies, bounded bodies and arguments, per-tool timeouts: the real ``sovereign-mcp
serve`` process on loopback, driven by ``fastmcp.Client`` and httpx over HTTP.

Servers (one per module fixture): ``plain`` runs the defaults (60 free calls a minute, no trusted proxy);
``proxied`` trusts 127.0.0.1 as a reverse proxy, so each test there is its own client through its own
``X-Forwarded-For`` address (separate buckets, no order dependence); ``open_server`` has payments, auth and
rate limits off and a 1 s limit on ``diagnose_sglang``, probing a loopback SGLang stand-in that stalls.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from sovereign_mcp.config import ConfigError, load_settings
from sovereign_mcp.ratelimit import client_key, limiter_for
from sovereign_mcp.server.middleware.timeouts import ToolTimeoutMiddleware
from tests.fakes.fake_sglang import fake_sglang
from tests.helpers import isolated_env, mcp_challenge, running_server

CALL = {"jsonrpc": "2.0", "method": "tools/call"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def call(tool: str, arguments: dict, request_id: int = 1) -> dict:
    return {**CALL, "id": request_id, "params": {"name": tool, "arguments": arguments}}


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("plain")
    with running_server("--data-dir", str(home / "data"), env=isolated_env(home)) as url:
        yield url, home


@pytest.fixture(scope="module")
def proxied(tmp_path_factory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("proxied")
    env = isolated_env(home, SOVEREIGN_MCP_SERVER__TRUSTED_PROXIES='["127.0.0.1"]',
                       SOVEREIGN_MCP_RATE_LIMIT__FREE_CALLS="3/minute",
                       SOVEREIGN_MCP_RATE_LIMIT__CHALLENGES="2/minute",
                       SOVEREIGN_MCP_SERVER__MAX_MCP_BODY_BYTES="4096")
    with running_server("--data-dir", str(home / "data"), env=env) as url:
        yield url


# --- the 61st free call ----------------------------------------------------------------------------------


async def test_61st_free_call_in_a_minute_is_refused(plain):
    url, _ = plain
    async with Client(f"{url}/mcp") as client:
        for i in range(60):
            result = await client.call_tool("search_blog", {"query": "sglang", "n": 1})
            assert not result.is_error, f"call {i + 1} of 60 failed"
        with pytest.raises(MCPError, match=r"rate limit exceeded: 60 per 1 minute; retry after \d+ s"):
            await client.call_tool("search_blog", {"query": "sglang"})
    async with httpx.AsyncClient(timeout=10) as http:
        # The same bucket on the wire: 429, Retry-After in whole seconds, a JSON-RPC error for the request id.
        raw = await http.post(f"{url}/mcp", headers=MCP_HEADERS, json=call("list_tags", {}, request_id=61))
        assert raw.status_code == 429
        retry = int(raw.headers["retry-after"])
        assert 1 <= retry <= 60
        body = raw.json()
        assert body["id"] == 61 and body["error"]["data"] == {"retry_after": retry, "limit": "60 per 1 minute"}
        api = await http.get(f"{url}/api/search", params={"query": "sglang"})
        assert api.status_code == 429 and 1 <= int(api.headers["retry-after"]) <= 60
        assert api.json()["error"].startswith("rate limit exceeded: 60 per 1 minute")
        # Not counted, not refused: discovery and health.
        assert (await http.get(f"{url}/health")).status_code == 200


async def test_operator_token_has_its_own_bucket(plain):
    url, home = plain
    async with httpx.AsyncClient(timeout=10) as http:
        statuses = [(await http.get(f"{url}/api/tags")).status_code for _ in range(61)]
        assert statuses[-1] == 429  # this IP's bucket is spent (by this test or the one before)
    made = subprocess.run([sys.executable, "-m", "sovereign_mcp", "token", "create", "--scope", "operator", "--json",
                           "--data-dir", str(home / "data")], capture_output=True, text=True, timeout=60,
                          env=isolated_env(home))
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    async with Client(f"{url}/mcp", auth=token) as client:
        for i in range(60):
            assert not (await client.call_tool("list_tags", {})).is_error, f"operator call {i + 1} failed"
        with pytest.raises(MCPError, match="rate limit exceeded: 60 per 1 minute"):
            await client.call_tool("list_tags", {})


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(plain):
    url, _ = plain
    async with httpx.AsyncClient(timeout=10) as http:
        statuses = [(await http.get(f"{url}/api/tags", headers={"X-Forwarded-For": f"203.0.113.{i}"})).status_code
                    for i in range(61)]
    assert 429 in statuses  # 61 different claimed addresses, one real one: spoofing does not escape the limit
    assert all(s == 429 for s in statuses[statuses.index(429):])


# --- behind a trusted proxy ------------------------------------------------------------------------------


async def test_trusted_proxy_clients_are_limited_separately(proxied):
    async with httpx.AsyncClient(timeout=10) as http:
        def get(ip: str):
            return http.get(f"{proxied}/api/tags", headers={"X-Forwarded-For": f"{ip}, 127.0.0.1"})

        assert [(await get("198.51.100.7")).status_code for _ in range(3)] == [200, 200, 200]
        refused = await get("198.51.100.7")
        assert refused.status_code == 429 and refused.headers["retry-after"].isdigit()
        assert (await get("198.51.100.8")).status_code == 200
        # IPv6 clients are keyed by their /64: another address in it shares the bucket, the next /64 does not.
        assert [(await get(f"2001:db8:7::{i}")).status_code for i in range(1, 4)] == [200, 200, 200]
        assert (await get("2001:db8:7::99")).status_code == 429
        assert (await get("2001:db8:7:1::1")).status_code == 200


async def test_l402_challenges_are_limited(proxied):
    forwarded = {"X-Forwarded-For": "198.51.100.20"}
    async with httpx.AsyncClient(timeout=30) as http:
        async def validate(**extra_headers: str) -> httpx.Response:
            return await http.post(f"{proxied}/mcp", headers={**MCP_HEADERS, **forwarded, **extra_headers},
                                   json=call("validate_quality", {"text": "# Hello\n\nWorld."}))

        # two in-band challenges (each through a real MCP client session: initialize, then tools/call)
        for _ in range(2):
            required = await mcp_challenge(proxied, "validate_quality", {"text": "# Hello\n\nWorld."}, forwarded)
            assert required["amount_sat"] > 0
        third = await validate()
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
        assert "rate limit exceeded for L402 invoices: 2 per 1 minute" in third.json()["error"]["message"]
        # A credential that does not verify would get a fresh invoice too: limited the same way.
        assert (await validate(Authorization="L402 AgEE:00")).status_code == 429
        api = await http.post(f"{proxied}/api/validate", headers=forwarded, json={"text": "# Hi"})
        assert api.status_code == 429 and "L402 invoices" in api.json()["error"]
        # Free calls are a separate bucket.
        assert (await http.get(f"{proxied}/api/tags", headers=forwarded)).status_code == 200


async def test_sessions_resources_and_lnurl_invoices_are_counted(proxied):
    """initialize (a new session), resources/read and prompts/get share the free bucket; the LNURL-pay
    callback creates an invoice, so it shares the L402 challenge bucket; a JSON-RPC batch is refused before
    anything is counted."""
    async with httpx.AsyncClient(timeout=30) as http:
        def post(ip: str, message: dict | list) -> Any:
            return http.post(f"{proxied}/mcp", headers={**MCP_HEADERS, "X-Forwarded-For": ip}, json=message)

        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        assert [(await post("198.51.100.30", init)).status_code for _ in range(3)] == [200, 200, 200]
        flood = await post("198.51.100.30", init)
        assert flood.status_code == 429 and flood.json()["id"] == 1  # no fourth session from this client

        read = {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "blog://articles"}}
        batch = [call("search_blog", {"query": "a"}, 5), call("search_blog", {"query": "b"}, 6)]
        for _ in range(5):  # batches are refused at once and count nothing
            refused = await post("198.51.100.31", batch)
            assert refused.status_code == 400 and "batches are not supported" in refused.json()["error"]["message"]
        counted = [call("list_tags", {}, 3), read, call("list_tags", {}, 4)]
        assert [(await post("198.51.100.31", m)).status_code != 429 for m in counted] == [True, True, True]
        assert (await post("198.51.100.31", read)).status_code == 429  # the fourth counted request

        lnurl = f"{proxied}/lnurlp/tips/callback"
        forwarded = {"X-Forwarded-For": "198.51.100.32"}
        first = [await http.get(lnurl, params={"amount": 1000}, headers=forwarded) for _ in range(2)]
        assert all(r.status_code == 200 and r.json()["pr"].startswith("lnbcrt") for r in first), first
        third = await http.get(lnurl, params={"amount": 1000}, headers=forwarded)
        assert third.status_code == 429 and third.headers["retry-after"].isdigit()


async def test_oversize_mcp_body_is_413_with_payments_on(proxied):
    big = json.dumps(call("search_blog", {"query": "x" * 5000})).encode()
    async with httpx.AsyncClient(timeout=10) as http:
        declared = await http.post(f"{proxied}/mcp", headers=MCP_HEADERS, content=big)
        assert declared.status_code == 413
        assert "request body larger than 4096 bytes" in declared.json()["error"]["message"]

        async def chunks():  # no Content-Length: counted while read
            for i in range(0, len(big), 1000):
                yield big[i:i + 1000]

        streamed = await http.post(f"{proxied}/mcp", headers=MCP_HEADERS, content=chunks())
        assert streamed.status_code == 413


# --- payments, auth and rate limits off: bodies, arguments, timeouts ---------------------------------------


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("open")
    with fake_sglang(hang={"/health"}, hang_seconds=120) as fake:
        env = isolated_env(home, SOVEREIGN_MCP_PAYMENTS__ENABLED="false", SOVEREIGN_MCP_AUTH__ENABLED="false",
                           SOVEREIGN_MCP_RATE_LIMIT__ENABLED="false",
                           SOVEREIGN_MCP_SERVER__MAX_MCP_BODY_BYTES="8192",
                           SOVEREIGN_MCP_SERVER__TOOL_TIMEOUTS='{"diagnose_sglang": 1}',
                           SOVEREIGN_MCP_DIAGNOSTICS__SGLANG_URL=fake.url,
                           SOVEREIGN_MCP_DIAGNOSTICS__PROBE_TIMEOUT="30")
        try:
            with running_server("--data-dir", str(home / "data"), env=env) as url:
                yield url, fake
        finally:
            fake.released.set()


async def test_oversize_mcp_body_is_413_with_payments_off(open_server):
    url, _ = open_server
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{url}/mcp", headers=MCP_HEADERS,
                                   json=call("search_blog", {"query": "x" * 9000}))
    assert response.status_code == 413 and "8192 bytes" in response.json()["error"]["message"]


OVERSIZE = [  # one argument over its bound per tool kind: (tool, arguments, what the error names)
    ("search_blog", {"query": "x" * 1001}, "at most 1000 characters"),
    ("get_article", {"slug": "s" * 301}, "at most 300 characters"),
    ("list_kb_rules", {"scope": "p" * 41}, "at most 40 characters"),
    ("validate_quality", {"text": "# Hi", "rules": ["r" * 201]}, "at most 200 characters"),
    ("diagnose_sglang", {"env": {"K" * 257: "1"}}, "at most 256 characters"),
    ("trigger_pipeline", {"kind": "article", "topic": "t" * 2001}, "at most 2000 characters"),
    ("trigger_pipeline", {"kind": "article", "topic": "t", "options": {f"k{i}": 1 for i in range(21)}},
     "at most 20 items"),
    ("pipeline_status", {"job_id": "j" * 65}, "at most 64 characters"),
    ("list_jobs", {"limit": 501}, "less than or equal to 500"),
]


@pytest.mark.parametrize(("tool", "arguments", "expected"), OVERSIZE, ids=[f"{t}-{i}" for i, (t, *_) in
                                                                           enumerate(OVERSIZE)])
async def test_oversize_argument_is_a_clear_validation_error(open_server, tool, arguments, expected):
    url, _ = open_server
    async with Client(f"{url}/mcp") as client:
        with pytest.raises(ToolError) as raised:
            await client.call_tool(tool, arguments)
        message = str(raised.value)
        assert expected in message and "Traceback" not in message
        assert not (await client.call_tool("list_tags", {})).is_error  # the server carries on


async def test_stalled_tool_times_out_and_the_server_keeps_serving(open_server):
    url, fake = open_server
    async with Client(f"{url}/mcp", timeout=25) as client:
        with pytest.raises(ToolError, match=r"tool 'diagnose_sglang' timed out after 1 s .*server\.tool_timeouts"):
            await client.call_tool("diagnose_sglang", {"probe": True})
        # The probe is still stuck in the stalled backend (never released), yet the answer came, and the
        # server goes on serving other calls meanwhile.
        assert ("GET", "/health") in fake.requests and not fake.released.is_set()
        found = await client.call_tool("search_blog", {"query": "sglang", "n": 1})
        assert not found.is_error and found.structured_content["count"] >= 1
        report = await client.call_tool("diagnose_sglang", {"launch_command": "python -m sglang.launch_server"})
        assert not report.is_error


# --- keys ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ip", "token", "key"), [
    ("192.0.2.10", None, "ip:192.0.2.10"),
    ("2001:db8:1:2:aaaa::1", None, "ip:2001:db8:1:2::/64"),
    ("::ffff:192.0.2.10", None, "ip:192.0.2.10"),
    ("192.0.2.10", "0123456789abcdef", "token:0123456789abcdef"),
    (None, None, "ip:unknown"),
])
def test_client_key(ip, token, key):
    assert client_key(ip, token) == key


def test_memory_storage_with_several_workers_warns(caplog):
    logger = logging.getLogger("sovereign_mcp.ratelimit")
    logger.addHandler(caplog.handler)  # direct, at WARNING: other tests' log setup may raise levels or cut propagation
    try:
        with caplog.at_level(logging.WARNING, logger="sovereign_mcp.ratelimit"):
            limiter = limiter_for(load_settings(server={"workers": 4}))
    finally:
        logger.removeHandler(caplog.handler)
    assert limiter is not None and limiter.per_process
    assert "each of the 4 worker processes counts on its own" in caplog.text
    assert limiter_for(load_settings(rate_limit={"enabled": False})) is None


def test_unknown_storage_is_a_config_error():
    with pytest.raises(ConfigError, match=r"rate_limit.storage_uri = 'bogus://x'"):
        limiter_for(load_settings(rate_limit={"storage_uri": "bogus://x"}))


def test_bad_limit_string_is_a_config_error():
    with pytest.raises(ConfigError, match=r"rate_limit.free_calls: .*must be like '60/minute'"):
        load_settings(rate_limit={"free_calls": "sixty a minute"})


def test_tool_limits_default_override_and_waits():
    limits = ToolTimeoutMiddleware.from_settings(load_settings(server={
        "tool_timeout_seconds": 30, "tool_timeouts": {"diagnose_sglang": 5}}).server)
    assert limits.limit_for("search_blog") == 30
    assert limits.limit_for("diagnose_sglang", {"probe": True}) == 5
    assert limits.limit_for("pipeline_status", {"job_id": "j", "wait_seconds": 300}) == 330  # waits by design
    assert limits.limit_for("pipeline_status", {"wait_seconds": True}) == 30  # not a number of seconds


async def test_a_paid_call_that_times_out_is_charged_and_a_failing_one_is_not(tmp_path: Path) -> None:
    """A timed-out sync tool keeps running in its thread (it may still queue a job), so its call is not
    handed back; a call that fails by itself is."""
    import threading

    from fastmcp import FastMCP
    from fastmcp.exceptions import ToolError

    from sovereign_mcp.server.middleware.payments import L402Middleware
    from sovereign_mcp.server.middleware.timeouts import ToolTimeoutMiddleware
    from tests.payments.test_l402_macaroons import Env, credential

    env = Env(tmp_path, prices={"slow_job": {"sats": 10, "calls": 2}})
    finished = threading.Event()
    mcp = FastMCP("t")

    @mcp.tool
    def slow_job(fail: bool = False, l402: str | None = None) -> str:
        if fail:
            raise ToolError("refused by the tool")
        finished.wait(5)
        return "queued"

    mcp.add_middleware(L402Middleware(env.service))
    mcp.add_middleware(ToolTimeoutMiddleware(0.3))
    challenge, preimage = env.buy("slow_job")
    cred = credential(challenge.macaroon, preimage)
    (token,) = [t for t in env.store.tokens() if t.payment_hash == challenge.payment_hash]
    token_id = token.token_id
    async with Client(mcp) as client:
        with pytest.raises(ToolError, match="refused by the tool"):
            await client.call_tool("slow_job", {"fail": True, "l402": cred})
        assert env.store.get(token_id).calls_used == 0  # refunded
        with pytest.raises(ToolError, match=r"timed out after 0.3 s"):
            await client.call_tool("slow_job", {"l402": cred})
        finished.set()
        assert env.store.get(token_id).calls_used == 1  # charged: the work went on
