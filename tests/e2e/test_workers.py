"""Several server processes: two real ``sovereign-mcp serve`` processes with separate data dirs sharing one
PostgreSQL database (``SOVEREIGN_MCP_DATABASE_URL``, dev payments) honour a token paid through either,
spend a single-use token once however the racing requests are split between them, and see each other's
pipeline jobs; ``serve --workers 2`` answers from two worker processes over stateless HTTP and stops
cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastmcp import Client

from sovereign_mcp.payments.backends.dev import DevBackend
from sovereign_mcp.payments.store import TokenStore
from tests.fakes.pg_harness import fresh_database
from tests.helpers import clean_environ, running_server, spawn_server, stop_server
from tests.pipeline.test_pipeline import World

pytestmark = pytest.mark.e2e

DRAFT = {"text": "# A draft\n\nThe gate checks every draft before it is published.\n", "kind": "article"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def clean_env(**extra: str) -> dict[str, str]:
    """No inherited ``SOVEREIGN_MCP_*`` settings; auth and rate limits off (other tests cover them)."""
    return clean_environ(**{"SOVEREIGN_MCP_AUTH__ENABLED": "false", "SOVEREIGN_MCP_RATE_LIMIT__ENABLED": "false",
                            **extra})


class Payer:
    """Pays dev-backend invoices straight in the shared database (what ``sovereign-mcp l402 pay`` does)."""

    def __init__(self, database_url: str, key: Path) -> None:
        self.store = TokenStore(database_url=database_url)
        self.backend = DevBackend(self.store, key)

    def credential(self, challenge: httpx.Response) -> str:
        assert challenge.status_code == 402, challenge.text
        header = next(h for h in challenge.headers.get_list("www-authenticate") if h.startswith("L402 "))
        macaroon = re.search(r'macaroon="([^"]+)"', header).group(1)
        invoice = re.search(r'invoice="([^"]+)"', header).group(1)
        return f"L402 {macaroon}:{self.backend.pay(invoice)}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Payer]]:
    """Two servers sharing a fresh PostgreSQL database, with the pipeline's loopback fakes."""
    root = tmp_path_factory.mktemp("two-processes")
    world = World(root)
    world.sglang.start()
    (root / "corpus").mkdir()
    with fresh_database() as pg:
        env = {**world.env(), "SOVEREIGN_MCP_DATABASE_URL": pg,
               "SOVEREIGN_MCP_PAYMENTS__PRICES": json.dumps({"validate_quality": {"sats": 21, "calls": 1}})}
        try:
            with running_server(env=clean_env(**{**env, "SOVEREIGN_MCP_DATA_DIR": str(root / "one")})) as one, \
                    running_server(env=clean_env(**{**env, "SOVEREIGN_MCP_DATA_DIR": str(root / "two")})) as two:
                payer = Payer(pg, root / "payer.key")
                yield one, two, payer
                payer.store.close()
        finally:
            world.close()


def test_a_token_paid_through_one_process_is_honoured_by_the_other(pair: tuple[str, str, Payer]) -> None:
    one, two, payer = pair
    auth = payer.credential(httpx.post(f"{one}/api/validate", json=DRAFT, timeout=30))
    used = httpx.post(f"{two}/api/validate", json=DRAFT, headers={"Authorization": auth}, timeout=30)
    assert used.status_code == 200, used.text
    assert used.json()["verdict"] in ("pass", "pass_with_warnings")
    again = httpx.post(f"{one}/api/validate", json=DRAFT, headers={"Authorization": auth}, timeout=30)
    assert again.status_code == 402  # the single call was spent in the other process


def test_a_single_use_token_raced_across_both_processes_is_spent_once(pair: tuple[str, str, Payer]) -> None:
    one, two, payer = pair
    auth = payer.credential(httpx.post(f"{two}/api/validate", json=DRAFT, timeout=30))

    def spend(i: int) -> int:
        base = (one, two)[i % 2]
        return httpx.post(f"{base}/api/validate", json=DRAFT, headers={"Authorization": auth}, timeout=60).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(spend, range(16)))
    assert codes.count(200) == 1, codes
    assert codes.count(402) == 15, codes


async def test_a_job_queued_through_one_process_is_followed_through_the_other(
        pair: tuple[str, str, Payer]) -> None:
    one, two, _ = pair
    async with Client(f"{one}/mcp") as client:
        ticket = (await client.call_tool("trigger_pipeline", {"kind": "hero_image", "topic": "a quiet rack"})).data
    async with Client(f"{two}/mcp") as client:
        status: dict = {}
        for _ in range(12):  # up to 12 x 5 s
            result = await client.call_tool("pipeline_status", {"job_id": ticket.job_id, "wait_seconds": 5})
            status = result.structured_content
            if status["state"] in ("done", "failed", "cancelled"):
                break
        assert status["state"] == "done", status
        assert [a["name"] for a in status["artifacts"]] == ["hero.png", "hero.alt.json"]


# -- serve --workers ------------------------------------------------------------------------------------
def test_serve_with_two_workers_answers_from_both_and_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, url = spawn_server("--workers", "2", "--data-dir", str(data),
                             env=clean_env(SOVEREIGN_MCP_PAYMENTS__ENABLED="false"))
    try:
        assert int((data / "server.pid").read_text()) == proc.pid  # SIGHUP / index --signal reach the parent
        init = httpx.post(f"{url}/mcp", headers=MCP_HEADERS, timeout=30, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        assert init.status_code == 200 and "mcp-session-id" not in init.headers  # stateless HTTP was forced

        async def calls(n: int) -> list[int]:
            async with Client(f"{url}/mcp") as client:
                return [len((await client.call_tool("search_blog", {"query": "gpu"})).structured_content["results"])
                        for _ in range(n)]

        async def many() -> list[list[int]]:
            return await asyncio.gather(*(calls(5) for _ in range(8)))

        counts = [c for batch in asyncio.run(many()) for c in batch]
        assert len(counts) == 40 and all(c > 0 for c in counts)

        pids: set[int] = set()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(25):  # up to 200 requests until both workers have answered
                pids |= set(pool.map(lambda _: httpx.get(f"{url}/health", timeout=30).json()["pid"], range(8)))
                if len(pids) >= 2:
                    break
        assert len(pids) == 2 and proc.pid not in pids, pids
    finally:
        code = stop_server(proc, timeout=20)
    assert code == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the workers stopped with the parent
    assert not (data / "server.pid").exists()
