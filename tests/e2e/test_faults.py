"""Kill and restart under load: the real ``sovereign-mcp serve`` process (payments on, dev backend) is SIGKILLed
while paid and free calls run concurrently, then started again on the same data dir.

Proved: no paid token is lost or over-spent (``calls_used`` never exceeds ``max_calls``, is never below the
calls that were answered 200, exceeds them by at most the calls cut off by the kill, and every remaining call
works after the restart, then the token is refused as used up), and no pipeline job is lost (every job queued
before the kill, including any whose answer the kill swallowed, is in the store after the restart and is
finished by the restarted server's worker). Jobs are ``hero_image`` against the fake ComfyUI of
tests/fakes/fake_media.py through the real GPU manager (tests/pipeline/test_pipeline.py ``World``); the first
server runs with the pipeline worker off, so every job is still queued at the kill.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from sovereign_mcp.payments.store import TokenStore
from tests.helpers import isolated_env, mcp_challenge, spawn_server
from tests.payments.test_l402_http import BODY, challenge_of, pay_in_process
from tests.pipeline.test_pipeline import World

pytestmark = pytest.mark.e2e

VQ_TOKENS, VQ_CALLS = 6, 25  # validate_quality: 6 tokens of 25 calls
TP_TOKENS, TP_CALLS = 2, 3  # trigger_pipeline: 2 tokens of 3 calls (each call queues a hero_image job)
PRICES = {"validate_quality": {"sats": 21, "calls": VQ_CALLS}, "trigger_pipeline": {"sats": 2100, "calls": TP_CALLS}}
CORPUS_POST = """---
title: Faults and restarts
date: 2025-02-01
tags: [ops]
---

## Kill nine

A server that is killed must lose nothing it promised: paid calls and queued jobs.
"""


@dataclass
class Token:
    """One bought token and what the load saw of it."""

    tool: str
    credential: str
    payment_hash: str
    ok: int = 0  # calls answered with success
    cut: int = 0  # calls whose answer the kill swallowed (connection errors after the kill)
    unexpected: list[str] = field(default_factory=list)


@dataclass
class Load:
    killed: bool = False
    free_ok: int = 0
    free_unexpected: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.sglang.start()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "faults.md").write_text(CORPUS_POST)
    yield w
    w.close()


def server_env(world: World, worker: bool) -> dict[str, str]:
    return isolated_env(world.root, **{
        **world.env(),
        "SOVEREIGN_MCP_PIPELINE": json.dumps(world.pipeline(worker=worker)),
        "SOVEREIGN_MCP_PAYMENTS__PRICES": json.dumps(PRICES),
        "SOVEREIGN_MCP_RATE_LIMIT__ENABLED": "false",
    })


async def buy(url: str, data: Path) -> list[Token]:
    """Obtain the 402 challenges (``/api/validate`` and a paid ``tools/call`` on ``/mcp``) and pay them."""
    challenges = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(VQ_TOKENS):
            challenges.append(("validate_quality", challenge_of(http.post("/api/validate", json=BODY))))
    for _ in range(TP_TOKENS):  # on MCP the challenge is an in-band tool result
        required = await mcp_challenge(url, "trigger_pipeline", {"kind": "hero_image", "topic": "x"})
        challenges.append(("trigger_pipeline", required))
    preimages = pay_in_process(data, [c["invoice"] for _, c in challenges])
    return [Token(tool, f"L402 {c['macaroon']}:{p}", c["payment_hash"])
            for (tool, c), p in zip(challenges, preimages, strict=True)]


async def validate_loop(url: str, token: Token, load: Load) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while True:
            try:
                response = await http.post("/api/validate", json=BODY, headers={"Authorization": token.credential})
            except httpx.TransportError as exc:
                if load.killed:
                    token.cut += 1
                    return
                token.unexpected.append(f"{type(exc).__name__}: {exc}")
                return
            if response.status_code == 200:
                token.ok += 1
            elif response.status_code == 402 and "used up" in response.text:
                return
            else:
                token.unexpected.append(f"HTTP {response.status_code}: {response.text[:300]}")
                return


async def trigger_loop(url: str, token: Token, load: Load) -> None:
    transport = StreamableHttpTransport(f"{url}/mcp", headers={"Authorization": token.credential})
    try:
        async with Client(transport, timeout=30) as client:
            while token.ok < TP_CALLS:
                try:
                    # distinct arguments: an identical repeat on the same token would replay the first ticket
                    topic = f"under load {token.ok}"
                    result = await client.call_tool("trigger_pipeline", {"kind": "hero_image", "topic": topic})
                except Exception as exc:  # the kill cuts the connection; anything else is reported
                    if load.killed:
                        token.cut += 1
                    else:
                        token.unexpected.append(f"{type(exc).__name__}: {exc}")
                    return
                token.ok += 1
                load.job_ids.append(result.structured_content["job_id"])
                await asyncio.sleep(0.2)  # spread the jobs over the load
    except Exception as exc:  # a session cut by the kill while closing
        if not load.killed:
            token.unexpected.append(f"session: {type(exc).__name__}: {exc}")


async def free_loop(url: str, load: Load) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while not load.killed:
            try:
                response = await http.post("/api/search", json={"query": "kill nine"})
            except httpx.TransportError:
                if not load.killed:
                    load.free_unexpected.append("connection error before the kill")
                return
            if response.status_code == 200 and response.json()["results"]:
                load.free_ok += 1
            else:
                load.free_unexpected.append(f"HTTP {response.status_code}: {response.text[:300]}")


async def run_and_kill(url: str, proc: Any, tokens: list[Token], load: Load) -> None:
    tasks = [asyncio.create_task(free_loop(url, load)) for _ in range(4)]
    tasks += [asyncio.create_task(validate_loop(url, t, load) if t.tool == "validate_quality"
                                  else trigger_loop(url, t, load)) for t in tokens]
    deadline = time.monotonic() + 40
    paid = [t for t in tokens if t.tool == "validate_quality"]
    while not (sum(t.ok for t in paid) >= 30 and len(load.job_ids) >= 2 and load.free_ok >= 20):
        assert time.monotonic() < deadline, f"load too slow: {tokens}, {load}"
        assert not any(t.unexpected for t in tokens) and not load.free_unexpected, (tokens, load)
        await asyncio.sleep(0.02)
    load.killed = True
    proc.send_signal(signal.SIGKILL)
    await asyncio.gather(*tasks)


def stored(data: Path) -> dict[str, Any]:
    store = TokenStore(data / "l402.sqlite3")
    try:
        return {t.payment_hash: t for t in store.tokens("paid", limit=1000)}
    finally:
        store.close()


async def spend_rest(url: str, token: Token, remaining: int) -> tuple[list[int], str]:
    """Use the ``remaining`` calls of ``token`` on the restarted server (HTTP statuses: 200 = answered), then
    one more call as a plain HTTP request: the refusal reason of its 402 challenge."""
    statuses = []
    auth = {"Authorization": token.credential}
    transport = StreamableHttpTransport(f"{url}/mcp", headers=auth)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http, Client(transport, timeout=30) as client:
        for k in range(remaining):
            if token.tool == "validate_quality":
                statuses.append((await http.post("/api/validate", json=BODY, headers=auth)).status_code)
            else:
                result = await client.call_tool("trigger_pipeline", {"kind": "hero_image", "topic": f"after {k}"})
                statuses.append(400 if result.is_error else 200)
    extra = ({"kind": "hero_image", "topic": "one too many"} if token.tool == "trigger_pipeline"
             else {"text": "one too many"})
    refusal = await mcp_challenge(url, token.tool, extra, headers=auth)
    return statuses, refusal["reason"]


async def test_sigkill_under_load_loses_no_paid_token_and_no_job(world: World) -> None:
    args = ("--corpus", str(world.root / "corpus"), "--data-dir", str(world.data_dir))
    first, url = spawn_server(*args, env=server_env(world, worker=False))
    try:
        tokens = await buy(url, world.data_dir)
        load = Load()
        await run_and_kill(url, first, tokens, load)
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()

    assert load.free_ok >= 20 and not load.free_unexpected, load
    for token in tokens:
        assert not token.unexpected, token
    records = stored(world.data_dir)
    for token in tokens:
        used = records[token.payment_hash].calls_used
        assert token.ok <= used <= min(token.ok + token.cut, records[token.payment_hash].max_calls), \
            f"{token.tool}: {token.ok} answered, {token.cut} cut by the kill, {used} metered"
    before_kill = list(load.job_ids)
    jobs_store = world.service()
    queued = {j.job_id: j.state for j in jobs_store.list(None, 500).jobs}
    assert set(before_kill) <= set(queued), "a job queued before the kill is missing"
    assert set(queued.values()) == {"queued"}, queued  # the first server's worker was off

    second, url = spawn_server(*args, env=server_env(world, worker=True))
    try:
        remaining = {t.payment_hash: records[t.payment_hash].max_calls - records[t.payment_hash].calls_used
                     for t in tokens}
        results = await asyncio.gather(*(spend_rest(url, t, remaining[t.payment_hash]) for t in tokens))
        for token, (statuses, refusal) in zip(tokens, results, strict=True):
            assert statuses == [200] * remaining[token.payment_hash], (token.tool, statuses)
            assert "used up" in refusal, (token.tool, refusal)
        assert all(r.calls_used == r.max_calls for r in stored(world.data_dir).values()
                   if r.payment_hash in remaining)

        deadline = time.monotonic() + 40
        while True:
            jobs = {j.job_id: j.state for j in jobs_store.list(None, 500).jobs}
            if all(state == "done" for state in jobs.values()) or time.monotonic() > deadline:
                break
            assert not {"failed", "cancelled"} & set(jobs.values()), jobs
            await asyncio.sleep(0.1)
        assert set(queued) <= set(jobs), "a job queued before the kill was lost by the restart"
        assert all(state == "done" for state in jobs.values()), jobs
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
