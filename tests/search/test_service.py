"""The live index: on-disk cache, reload while serving, watcher, SIGHUP, and the stdio transport."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from sovereign_mcp.cli import main as cli_main
from sovereign_mcp.config import load_settings
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.search.store import open_index
from tests.helpers import running_server

ARTICLE = """---
title: {title}
date: 2025-01-0{day}
tags: [notes]
---

## Section

{text}
"""


def write(folder: Path, slug: str, title: str, text: str, day: int = 1) -> Path:
    path = folder / f"{slug}.md"
    path.write_text(ARTICLE.format(title=title, text=text, day=day), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    write(folder, "alpha", "Alpha", "The quick brown fox jumps over sleepy dogs near the river bank.", 1)
    write(folder, "beta", "Beta", "Unified memory on the GB10 is released late after a service stops.", 2)
    return folder


def settings_for(corpus: Path, tmp_path: Path, **corpus_opts):
    return load_settings(None, corpus={"paths": [corpus], "watch": False, **corpus_opts}, data_dir=tmp_path / "data")


def test_index_is_cached_by_corpus_hash(corpus, tmp_path):
    settings = settings_for(corpus, tmp_path)
    first, cached = open_index(settings)
    assert not cached and len(first.articles) == 2
    second, cached = open_index(settings)
    assert cached and [a.slug for a in second.articles] == ["alpha", "beta"]
    assert second.search("fox")[0].article.slug == "alpha"
    write(corpus, "gamma", "Gamma", "Lightning invoices carry a payment hash.", 3)
    third, cached = open_index(settings)
    assert not cached and len(third.articles) == 3
    assert len(list((tmp_path / "data" / "index").glob("*.pkl"))) == 1  # the stale file was replaced


def test_corrupt_cache_is_rebuilt(corpus, tmp_path):
    settings = settings_for(corpus, tmp_path)
    open_index(settings)
    (cache,) = (tmp_path / "data" / "index").glob("*.pkl")
    cache.write_bytes(b"not a pickle")
    index, cached = open_index(settings)
    assert not cached and len(index.articles) == 2


def test_reload_keeps_serving_old_index_until_new_one_is_ready(corpus, tmp_path):
    service = BlogService(settings_for(corpus, tmp_path))
    old = service.index
    write(corpus, "gamma", "Gamma", "Lightning invoices carry a payment hash.", 3)
    answers: list[int] = []
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            answers.append(len(service.index.search("memory")))

    reader = threading.Thread(target=query)
    reader.start()
    try:
        assert service.reload()
    finally:
        stop.set()
        reader.join()
    assert answers and all(n == 1 for n in answers)  # every query during the reload was answered
    assert service.index is not old and service.index.search("payment hash")[0].article.slug == "gamma"


def test_failed_reload_keeps_old_index(corpus, tmp_path):
    service = BlogService(settings_for(corpus, tmp_path))
    old = service.index
    corpus.rename(tmp_path / "moved")
    assert service.reload() is False
    assert service.index is old and "not found" in service.last_error
    assert service.health()["reload_error"] == service.last_error


def test_watcher_picks_up_new_articles(corpus, tmp_path):
    service = BlogService(settings_for(corpus, tmp_path, watch=True))
    service.start_watching()
    try:
        time.sleep(0.5)
        write(corpus, "gamma", "Gamma", "Lightning invoices carry a payment hash.", 3)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not service.index.search("invoices"):
            time.sleep(0.2)
        assert service.index.search("invoices")[0].article.slug == "gamma"
    finally:
        service.close()


def test_index_command_signals_running_server(corpus, tmp_path, capsys):
    data = tmp_path / "data"
    with running_server("--corpus", str(corpus), "--data-dir", str(data)) as url:
        assert httpx.post(f"{url}/api/search", json={"query": "invoices"}).json()["count"] == 0
        write(corpus, "gamma", "Gamma", "Lightning invoices carry a payment hash.", 3)
        assert cli_main(["index", "--corpus", str(corpus), "--data-dir", str(data), "--signal"]) == 0
        assert "3 articles" in capsys.readouterr().out
        deadline = time.monotonic() + 20
        count = 0
        while time.monotonic() < deadline and not count:
            count = httpx.post(f"{url}/api/search", json={"query": "invoices"}).json()["count"]
            time.sleep(0.2)
        assert count == 1
        assert httpx.get(f"{url}/health").json()["articles"] == 3


def test_restart_uses_cached_index(corpus, tmp_path):
    data = tmp_path / "data"
    with running_server("--corpus", str(corpus), "--data-dir", str(data)) as url:
        assert httpx.get(f"{url}/health").json()["index_from_cache"] is False
    with running_server("--corpus", str(corpus), "--data-dir", str(data)) as url:
        assert httpx.get(f"{url}/health").json()["index_from_cache"] is True


async def test_stdio_transport(corpus, tmp_path):
    transport = StdioTransport(
        command=sys.executable,
        args=["-m", "sovereign_mcp", "serve", "--transport", "stdio", "--no-watch", "--log-level", "warning",
              "--corpus", str(corpus), "--data-dir", str(tmp_path / "data")],
    )
    async with Client(transport) as client:
        result = await client.call_tool("search_blog", {"query": "unified memory released"})
        assert result.structured_content["results"][0]["slug"] == "beta"
        assert result.structured_content["results"][0]["url"] == "/beta/#section"
