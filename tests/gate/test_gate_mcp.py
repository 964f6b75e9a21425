"""The quality gate over MCP and plain HTTP, on the real ``sovereign-mcp serve`` process.

The server runs with a tiny tmp corpus and the shipped KB; results are compared with the gate run
in-process on the same KB and corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastmcp import Client

from sovereign_mcp.config import load_settings
from sovereign_mcp.gate.engine import MAX_INPUT_BYTES
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.kb.loader import KnowledgeBase, load_kb
from sovereign_mcp.paths import default_kb_dir
from sovereign_mcp.search.store import open_index
from tests.helpers import isolate, running_server

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gate"
PODCAST = (FIXTURES / "podcast_episode.txt").read_text(encoding="utf-8")
ARTICLE = (FIXTURES / "clean_article.md").read_text(encoding="utf-8")

CORPUS_ARTICLE = """---
title: One GPU Service At A Time
date: 2025-02-01
tags: [dgx-spark]
---

## The sequence

Stop the language model server, wait sixty seconds, then start the speech engine. The unit file is
/etc/systemd/system/voice.service and the dashboard runs 1.4.2.
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gate-corpus")
    (folder / "one-gpu.md").write_text(CORPUS_ARTICLE, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def url(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("gate-data")
    # payments off: this module tests the gate itself (tests/test_l402_*.py cover paying for it)
    with running_server("--corpus", str(corpus), "--data-dir", str(data),
                        env={"SOVEREIGN_MCP_PAYMENTS__ENABLED": "false"}) as base:
        yield base


@pytest.fixture(scope="module")
def local(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> GateService:
    """The same gate, in-process: shipped KB, facts from the same corpus."""
    tmp = tmp_path_factory.mktemp("gate-local")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp)
        settings = load_settings(None, corpus={"paths": [corpus], "watch": False}, data_dir=tmp / "data")
    index, _ = open_index(settings)
    service = GateService(settings, lambda: index.articles)
    assert service.kb.errors == []
    return service


@pytest.fixture(scope="module")
def shipped() -> KnowledgeBase:
    return load_kb([default_kb_dir()])


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text


async def test_validate_quality_matches_the_engine(url: str, local: GateService, shipped: KnowledgeBase) -> None:
    expected = local.gate().check(PODCAST, "podcast").model_dump(mode="json")
    async with Client(f"{url}/mcp") as client:
        tool = next(t for t in await client.list_tools() if t.name == "validate_quality")
        assert tool.annotations.read_only_hint is True and tool.annotations.idempotent_hint is True
        assert tool.output_schema and tool.output_schema["type"] == "object"
        result = await client.call_tool("validate_quality", {"text": PODCAST, "kind": "podcast"})
    got = result.structured_content
    assert got == expected
    assert got["verdict"] == "fail" and got["kind"] == "podcast"
    types = {e.id: e.type for e in shipped.entries.values()}
    assert [(f["line"], types[f["rule_id"]]) for f in got["findings"]] == [
        (8, "existence"), (10, "caps"), (11, "markup"), (14, "dominance"), (15, "markup"),
    ]


async def test_validate_quality_article_and_rule_selection(url: str, local: GateService,
                                                           shipped: KnowledgeBase) -> None:
    existence = next(e.id for e in shipped.entries.values() if e.type == "existence")
    draft = ("We absolutely restarted it. The unit is /etc/systemd/system/voice.service, the dashboard "
             "1.4.2, and the config /etc/made/up.conf.\n")
    async with Client(f"{url}/mcp") as client:
        clean = (await client.call_tool("validate_quality", {"text": ARTICLE})).structured_content
        full = (await client.call_tool("validate_quality", {"text": draft})).structured_content
        only = (await client.call_tool("validate_quality", {"text": draft, "rules": [existence]})).structured_content
    assert clean["verdict"] == "pass" and clean["findings"] == []
    assert full == local.gate().check(draft, "article").model_dump(mode="json")
    # the corpus backs the unit file and the version; only the invented path is a fabrication
    assert "/etc/made/up.conf" in [f["match"] for f in full["findings"]]
    assert not {"/etc/systemd/system/voice.service", "1.4.2"} & {f["match"] for f in full["findings"]}
    assert only["rules_checked"] == [existence]
    assert [(f["rule_id"], f["match"], f["line"], f["column"]) for f in only["findings"]] == [
        (existence, "absolutely", 1, 4),
    ]


async def test_validate_quality_input_errors_are_clear(url: str) -> None:
    async with Client(f"{url}/mcp") as client:
        too_many_chars = await client.call_tool("validate_quality", {"text": "a" * (MAX_INPUT_BYTES + 1)},
                                                raise_on_error=False)
        too_many_bytes = await client.call_tool("validate_quality", {"text": "é" * (MAX_INPUT_BYTES // 2 + 1)},
                                                raise_on_error=False)
        nul = await client.call_tool("validate_quality", {"text": "a\x00b"}, raise_on_error=False)
        unknown = await client.call_tool("validate_quality", {"text": "x", "rules": ["no-such-rule"]},
                                         raise_on_error=False)
        bad_kind = await client.call_tool("validate_quality", {"text": "x", "kind": "novel"}, raise_on_error=False)
    for result in (too_many_chars, too_many_bytes, nul, unknown, bad_kind):
        assert result.is_error
        _no_traceback(result.content[0].text)
    assert "text" in too_many_chars.content[0].text and str(MAX_INPUT_BYTES) in too_many_chars.content[0].text
    assert "text is larger than 2 MB" in too_many_bytes.content[0].text
    assert "NUL" in nul.content[0].text
    assert "no-such-rule" in unknown.content[0].text and "available:" in unknown.content[0].text
    assert "kind" in bad_kind.content[0].text


async def test_list_kb_rules(url: str, shipped: KnowledgeBase) -> None:
    async with Client(f"{url}/mcp") as client:
        podcast = (await client.call_tool("list_kb_rules", {"scope": "podcast"})).structured_content
        everything = (await client.call_tool("list_kb_rules", {})).structured_content
    assert podcast["scope"] == "podcast"
    ids = [e["id"] for e in podcast["entries"]]
    assert ids == sorted(e.id for e in shipped.entries.values() if e.scope == "podcast")
    assert ids and all(e["scope"] == "podcast" for e in podcast["entries"])
    assert {e["type"] for e in podcast["entries"]} >= {"caps", "markup", "dominance"}
    for e in podcast["entries"]:
        assert e["uri"] == f"kb://entries/{e['id']}"
        assert e["level"] == {"low": "suggestion", "medium": "warning", "high": "error"}[e["severity"]]
    assert everything["scope"] is None
    assert len(everything["entries"]) == len(shipped.entries)
    assert [(e["scope"], e["id"]) for e in everything["entries"]] == sorted((e["scope"], e["id"])
                                                                            for e in everything["entries"])


async def test_kb_entry_resource_is_the_markdown_source(url: str, shipped: KnowledgeBase) -> None:
    entry = next(e for e in shipped.entries.values() if e.type == "caps")
    async with Client(f"{url}/mcp") as client:
        contents = await client.read_resource(f"kb://entries/{entry.id}")
        with pytest.raises(Exception) as err:
            await client.read_resource("kb://entries/no-such-entry")
    assert contents[0].text == entry.path.read_text(encoding="utf-8")
    assert contents[0].mime_type == "text/markdown"
    assert contents[0].text.startswith("---\n") and f"id: {entry.id}" in contents[0].text
    assert "no-such-entry" in str(err.value)
    _no_traceback(str(err.value))


async def test_prompts_are_listed(url: str) -> None:
    async with Client(f"{url}/mcp") as client:
        prompts = {p.name: p for p in await client.list_prompts()}
    assert {"write_article", "write_podcast_script"} <= set(prompts)
    for name in ("write_article", "write_podcast_script"):
        arguments = {a.name: a.required for a in prompts[name].arguments}
        assert arguments == {"topic": True, "sources": False}


async def test_prompts_contain_the_kb_rules(url: str, shipped: KnowledgeBase) -> None:
    caps = next(e for e in shipped.entries.values() if e.type == "caps")
    markup = next(e for e in shipped.entries.values() if e.type == "markup")
    async with Client(f"{url}/mcp") as client:
        article = await client.get_prompt("write_article", {"topic": "the sixty-second wait"})
        podcast = await client.get_prompt("write_podcast_script", {"topic": "one GPU service at a time",
                                                                   "sources": "SOURCE NOTES"})
    article_text = article.messages[0].content.text
    podcast_text = podcast.messages[0].content.text
    assert "the sixty-second wait" in article_text
    for text in (article_text, podcast_text):
        assert "here's the thing" in text.lower() and "great question" in text.lower()
    assert "Only these all-caps words may appear:" in podcast_text and "NVFP4" in podcast_text
    assert f"({caps.level}, {caps.id})" in podcast_text and f"({markup.level}, {markup.id})" in podcast_text
    assert f", {caps.id})" not in article_text and f", {markup.id})" not in article_text
    assert podcast_text.rstrip().endswith("SOURCE NOTES")
    # high-severity entries come first
    levels = [line.rsplit("(", 1)[1].split(",")[0] for line in podcast_text.splitlines() if line.startswith("### ")]
    order = {"error": 0, "warning": 1, "suggestion": 2}
    assert levels == sorted(levels, key=order.__getitem__) and levels[0] == "error"


async def test_api_validate_returns_the_same_report(url: str) -> None:
    async with Client(f"{url}/mcp") as client:
        mcp = (await client.call_tool("validate_quality", {"text": PODCAST, "kind": "podcast"})).structured_content
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        posted = await http.post("/api/validate", json={"text": PODCAST, "kind": "podcast"})
        fetched = await http.get("/api/validate", params={"text": "We absolutely did.", "kind": "article"})
        unknown = await http.post("/api/validate", json={"text": "x", "rules": ["no-such-rule"]})
        too_big = await http.post("/api/validate", json={"text": "é" * (MAX_INPUT_BYTES // 2 + 1)})
        extra = await http.post("/api/validate", json={"text": "x", "colour": "red"})
    assert posted.status_code == 200 and posted.json() == mcp
    assert fetched.status_code == 200
    assert [(f["match"], f["line"], f["column"]) for f in fetched.json()["findings"]] == [("absolutely", 1, 4)]
    assert unknown.status_code == 400 and "no-such-rule" in unknown.json()["error"]
    assert too_big.status_code == 400 and "2 MB" in too_big.json()["error"]
    assert extra.status_code == 400 and "colour" in extra.json()["error"]
    for response in (unknown, too_big, extra):
        _no_traceback(response.text)


async def test_health_reports_the_kb(url: str, shipped: KnowledgeBase) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        health = (await http.get("/health")).json()
    assert health["status"] == "ok"
    assert health["kb_entries"] > 0 and health["kb_entries"] == len(shipped.entries)
    assert health["kb_errors"] == []
