"""The pipeline over MCP on the real ``sovereign-mcp serve`` process (payments off), pointed at loopback fakes
through ``SOVEREIGN_MCP_*`` variables: ``trigger_pipeline`` answers with a job id at once, the server's worker
runs the job, ``pipeline_status`` reports progress and lists the artifacts as resource links, and the
``pipeline://jobs/{id}/artifacts/{name}`` template serves them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from sovereign_mcp.gpu.manager import GPUServiceManager, find_overlaps
from sovereign_mcp.pipeline.media import is_png, mp3_frame_offset
from tests.fakes.fake_media import make_png
from tests.helpers import operator_token, running_server, spawn_server
from tests.pipeline.test_pipeline import IMAGE, World

pytestmark = pytest.mark.e2e

CORPUS_POST = """---
title: One GPU Service At A Time
date: 2025-02-01
tags: [dgx-spark]
---

## The rule

Stop the language model server, wait a minute, then start the speech engine.
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("pipeline-mcp"))
    w.sglang.start()
    (w.root / "corpus").mkdir()
    (w.root / "corpus" / "one-gpu.md").write_text(CORPUS_POST)
    yield w
    w.close()


@pytest.fixture(scope="module")
def early_job(world: World) -> str:
    """A job queued while no server runs (e.g. before a restart): the server's worker must pick it up."""
    service = world.service()
    job_id = service.submit("hero_image", "queued before the server started").job_id
    service.close()
    return job_id


@pytest.fixture(scope="module")
def url(world: World, early_job: str) -> Iterator[str]:
    env = {**world.env(), "SOVEREIGN_MCP_PAYMENTS__ENABLED": "false"}
    with running_server("--corpus", str(world.root / "corpus"), "--data-dir", str(world.data_dir), env=env) as base:
        yield f"{base}/mcp"


async def test_trigger_returns_at_once_and_status_ends_done_with_artifacts(url: str, world: World,
                                                                           early_job: str) -> None:
    early = world.service()
    deadline = time.monotonic() + 20
    while early.status(early_job).state != "done" and time.monotonic() < deadline:  # before any MCP request
        time.sleep(0.05)
    assert early.status(early_job).state == "done"
    async with Client(url, auth=operator_token(world.data_dir)) as client:  # list_jobs, cancel: operator-only
        tools = {t.name for t in await client.list_tools()}
        assert {"trigger_pipeline", "pipeline_status", "cancel_pipeline", "list_jobs"} <= tools
        started = time.perf_counter()
        ticket = (await client.call_tool("trigger_pipeline", {
            "kind": "article", "topic": "one GPU service at a time", "source_slugs": ["one-gpu"]})).data
        image = (await client.call_tool("trigger_pipeline", {"kind": "hero_image", "topic": "a quiet rack"})).data
        assert time.perf_counter() - started < 3.0
        assert ticket.state == "queued" and ticket.steps[0] == "article_part1"
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        result = await client.call_tool("pipeline_status", {"job_id": ticket.job_id, "wait_seconds": 30},
                                        progress_handler=on_progress)
        status = result.structured_content
        assert status["state"] == "done", status
        assert status["done_steps"] == status["total_steps"] == 4
        assert progress and progress[-1][0] == 4 and progress[-1][1] == 4
        links = [c for c in result.content if c.type == "resource_link"]
        assert [str(link.uri) for link in links] == [f"pipeline://jobs/{ticket.job_id}/artifacts/article.md"]
        (article,) = await client.read_resource(str(links[0].uri))
        assert article.text.startswith("# One Service At A Time")
        part1 = next(p for p in world.sglang.prompts() if "Write part 1 of 2" in p)
        assert "Stop the language model server" in part1  # the source was injected

        deadline = time.monotonic() + 20
        while True:
            result = await client.call_tool("pipeline_status", {"job_id": image.job_id, "wait_seconds": 5})
            if result.structured_content["state"] in ("done", "failed") or time.monotonic() > deadline:
                break
        status = result.structured_content
        assert status["state"] == "done", status
        link, alt = [c for c in result.content if c.type == "resource_link"]
        assert link.mime_type == "image/png" and alt.mime_type == "application/json"
        (blob,) = await client.read_resource(str(link.uri))
        png = base64.b64decode(blob.blob)
        assert is_png(png) and png == make_png(*IMAGE)
        assert hashlib.sha256(png).hexdigest() == status["artifacts"][0]["sha256"]
        assert blob.mime_type == "image/png"

        jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
        assert {j["job_id"] for j in jobs} >= {ticket.job_id, image.job_id, early_job}
        cancelled = await client.call_tool("cancel_pipeline", {"job_id": image.job_id})
        assert cancelled.structured_content["state"] == "done"  # finished jobs stay finished
        with pytest.raises(ToolError, match="no pipeline job"):
            await client.call_tool("pipeline_status", {"job_id": "nosuchjob"})
        with pytest.raises(ToolError, match="unknown article slug"):
            await client.call_tool("trigger_pipeline", {"kind": "article", "topic": "x", "source_slugs": ["nope"]})
    assert Path(world.data_dir / "artifacts" / ticket.job_id / "article.md").is_file()


@pytest.mark.skipif(shutil.which("ffmpeg") is None and not os.environ.get("CI"),
                    reason="ffmpeg is not installed (CI installs it via .ci/run)")
async def test_full_job_over_mcp_survives_an_outage_and_a_crash(tmp_path: Path) -> None:
    """The issue's done-when: ``trigger_pipeline`` turns a topic into a gated article, a podcast MP3 and a hero
    PNG; every inference provider goes away (the job waits), the server is SIGKILLed while it waits, the
    provider comes back, a new server process finishes the job without redoing a finished step, and no two
    GPU services were ever up together (manager event log and the fake services' own lifetimes)."""
    world = World(tmp_path)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "one-gpu.md").write_text(CORPUS_POST)
    env = {**world.env(), "SOVEREIGN_MCP_PAYMENTS__ENABLED": "false"}
    args = ("--corpus", str(tmp_path / "corpus"), "--data-dir", str(world.data_dir))
    first, base = spawn_server(*args, env=env)
    try:
        async with Client(f"{base}/mcp") as client:  # SGLang and llama.cpp are both down: a blackout
            ticket = (await client.call_tool("trigger_pipeline", {
                "kind": "full", "topic": "one GPU service at a time", "source_slugs": ["one-gpu"]})).data
            deadline = time.monotonic() + 30
            while True:
                status = (await client.call_tool("pipeline_status", {"job_id": ticket.job_id})).structured_content
                steps = {s["name"]: s["state"] for s in status["steps"]}
                if (status["state"] == "waiting" and steps["hero_image"] == "done") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        assert status["state"] == "waiting", status  # the image needs no LLM, so it ran; the rest waits
        assert "waiting for an inference provider" in status["message"] and status["error"] is None
        assert steps["article_part1"] == "pending"
    finally:
        first.kill()  # a crash, not a clean shutdown
        first.wait(10)
    world.sglang.start()  # the provider is back
    with running_server(*args, env=env) as base:
        async with Client(f"{base}/mcp") as client:
            deadline = time.monotonic() + 90
            while True:
                result = await client.call_tool("pipeline_status", {"job_id": ticket.job_id, "wait_seconds": 5})
                status = result.structured_content
                if status["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
                    break
            assert status["state"] == "done", status
            links = {str(c.uri).rsplit("/", 1)[1]: c for c in result.content if c.type == "resource_link"}
            assert set(links) == {"article.md", "podcast_script.txt", "podcast.mp3", "hero.png", "hero.alt.json"}
            (mp3,) = await client.read_resource(str(links["podcast.mp3"].uri))
            assert mp3.mime_type == "audio/mpeg" and mp3_frame_offset(base64.b64decode(mp3.blob)) is not None
            (png,) = await client.read_resource(str(links["hero.png"].uri))
            assert is_png(base64.b64decode(png.blob))
    assert [g["verdict"] for g in status["gate"] if g["verdict"] == "fail"] == []
    assert len(world.comfyui.prompts) == 1  # the hero image was drawn once, before the crash
    prompts = world.sglang.prompts()
    assert sum("Write part 1 of 2" in p for p in prompts) == 1
    assert sum("Write part 2 of 2" in p for p in prompts) == 1
    events = GPUServiceManager(world.settings().gpu, world.data_dir).events()
    assert find_overlaps(events) == []
    assert world.stack.overlapping() == []
    world.close()
