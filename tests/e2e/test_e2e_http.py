"""End to end: the real ``sovereign-mcp serve`` process on a loopback port, real MCP clients over HTTP.

Runs against the real corpora in ``../shared/corpora`` (jvns: a Hugo blog; til: notes without front
matter). Clients: ``fastmcp.Client`` (2026-07-28, sessionless discovery), the official ``mcp`` SDK
client forced to the handshake-era ``initialize`` flow, and the MCP Inspector CLI from npm where
``npx`` is available.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest
from fastmcp import Client
from mcp import Client as SdkClient

from tests.helpers import SHARED_CORPORA, running_server

pytestmark = pytest.mark.e2e

CORPORA = {
    # corpus: (query paraphrasing a passage, expected slug)
    "jvns": ("why can't gzip files be decompressed in parallel", "day-15-how-gzip-works"),
    "til": ("download every video from a tiktok account with yt-dlp", "download-all-videos"),
}


@pytest.fixture(scope="module", params=sorted(CORPORA))
def server(request, tmp_path_factory):
    corpus = SHARED_CORPORA / request.param
    if not corpus.is_dir():
        pytest.skip(f"real corpus not found at {corpus}")
    data = tmp_path_factory.mktemp(f"data-{request.param}")
    with running_server("--corpus", str(corpus), "--data-dir", str(data)) as url:
        yield request.param, url


async def test_every_tool_over_http(server):
    name, url = server
    query, expected = CORPORA[name]
    async with Client(f"{url}/mcp") as client:
        tools = {t.name: t for t in await client.list_tools()}
        assert {"search_blog", "get_article", "list_tags"} <= set(tools)
        for tool in (tools[name] for name in ("search_blog", "get_article", "list_tags")):
            assert tool.annotations.read_only_hint is True
            assert tool.annotations.idempotent_hint is True
            assert tool.annotations.open_world_hint is False
            assert tool.output_schema and tool.output_schema["type"] == "object"

        found = (await client.call_tool("search_blog", {"query": query, "n": 3})).structured_content
        assert found["count"] == len(found["results"]) >= 1
        top = found["results"][0]
        assert top["slug"] == expected
        assert top["passage"] and top["score"] > 0
        assert top["url"].split("#")[0].endswith(("/", expected)) or expected in top["url"]

        # The cited anchor opens the section the passage came from.
        if top["heading_path"]:
            anchor = top["url"].rsplit("#", 1)[1]
            section = (await client.call_tool("get_article", {"slug": expected, "section": anchor})).structured_content
            assert section["section"] == anchor
            assert top["heading_path"][-1] in section["content"].splitlines()[0]
            first_words = " ".join(top["passage"].split()[:6])
            assert first_words in " ".join(section["content"].split())

        article = (await client.call_tool("get_article", {"slug": expected, "max_chars": 500})).structured_content
        assert article["slug"] == expected and len(article["content"]) == 500
        assert article["next_offset"] == 500 and article["total_chars"] > 500

        tags = (await client.call_tool("list_tags", {"sort": "count_desc"})).structured_content["tags"]
        counts = [t["count"] for t in tags]
        assert counts == sorted(counts, reverse=True) and counts[0] > 1

        newest = (await client.call_tool("search_blog", {"query": "", "n": 5})).structured_content["results"]
        dates = [r["date"] for r in newest]
        assert len(dates) == 5 and dates == sorted(dates, reverse=True)

        listing = json.loads((await client.read_resource("blog://articles"))[0].text)
        assert any(a["slug"] == expected for a in listing)
        markdown = (await client.read_resource(f"blog://articles/{expected}"))[0].text
        assert markdown.startswith("---\n") and "title:" in markdown


async def test_search_blog_for_agents_over_http(server):
    """Budget, titles-only, explain, freshness and one resource_link per hit, through a real MCP client (which
    validates structuredContent against the tool's outputSchema)."""
    name, url = server
    query, expected = CORPORA[name]
    async with Client(f"{url}/mcp") as client:
        result = await client.call_tool("search_blog", {"query": query, "n": 5, "explain": True})
        data = result.structured_content
        links = [c for c in result.content if c.type == "resource_link"]
        assert [str(link.uri) for link in links] == [f"blog://articles/{h['slug']}" for h in data["results"]]
        assert json.loads(result.content[0].text) == data
        top = data["results"][0]
        assert top["slug"] == expected and top["indexed_at"] == data["indexed_at"]
        assert set(top["explain"]) >= {"passage", "article", "lexical"}
        assert all(stage["rank"] >= 1 for stage in top["explain"].values())
        markdown = (await client.read_resource(str(links[0].uri)))[0].text
        assert top["title"] in markdown

        titles = (await client.call_tool("search_blog", {"query": query, "detail": "titles"})).structured_content
        assert titles["results"][0]["slug"] == expected and titles["results"][0]["passage"] == ""

        small = (await client.call_tool("search_blog", {"query": query, "n": 10, "max_chars": 1500}))
        cut = small.structured_content
        assert len(json.dumps(cut, separators=(",", ":"))) <= 1500 * 1.05  # same JSON, other escaping of non-ASCII
        assert cut["truncated"] and cut["note"] and cut["omitted"] + cut["count"] == 10
        bad = await client.call_tool("search_blog", {"query": query, "max_chars": 10}, raise_on_error=False)
        assert bad.is_error and "max_chars" in bad.content[0].text


async def test_errors_are_clear_and_carry_no_traceback(server):
    name, url = server
    _, expected = CORPORA[name]
    async with Client(f"{url}/mcp") as client:
        missing = await client.call_tool("get_article", {"slug": expected[:-1]}, raise_on_error=False)
        assert missing.is_error
        assert "did you mean" in missing.content[0].text and expected in missing.content[0].text
        for bad in ({"query": 5}, {"n": 0}, {"n": "many"}, {"query": "x" * 5000}, {"sort": "random"}):
            result = await client.call_tool("search_blog", bad, raise_on_error=False)
            assert result.is_error, bad
            text = result.content[0].text
            assert "Traceback" not in text and 'File "' not in text
        huge = await client.call_tool("search_blog", {"query": "python", "n": 10_000})
        assert huge.structured_content["count"] <= 20


async def test_handshake_era_client(server):
    name, url = server
    query, expected = CORPORA[name]
    async with SdkClient(f"{url}/mcp", mode="legacy") as client:
        assert client.protocol_version < "2026-07-28"
        result = await client.call_tool("search_blog", {"query": query, "n": 1})
        assert result.structured_content["results"][0]["slug"] == expected


async def test_health_and_plain_json_api(server):
    name, url = server
    query, expected = CORPORA[name]
    async with httpx.AsyncClient(base_url=url) as http:
        health = (await http.get("/health")).json()
        assert health["status"] == "ok" and health["articles"] > 300 and health["passages"] > health["articles"]
        found = (await http.post("/api/search", json={"query": query, "n": 1})).json()
        assert found["results"][0]["slug"] == expected
        bad = await http.post("/api/search", json={"n": "x"})
        assert bad.status_code == 400 and "n" in bad.json()["error"]
        rebinding = await http.post("/mcp", headers={"Host": "attacker.example"}, json={})
        assert rebinding.status_code == 421


NPX = shutil.which("npx")
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


def _inspector(url: str, *args: str) -> dict:
    proc = subprocess.run(
        [NPX, "-y", INSPECTOR, "--cli", f"{url}/mcp", "--transport", "http", *args],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(NPX is None, reason="node/npx not installed (CI has it)")
def test_mcp_inspector_cli(server):
    name, url = server
    query, expected = CORPORA[name]
    tools = _inspector(url, "--method", "tools/list")
    assert {t["name"] for t in tools["tools"]} >= {"search_blog", "get_article", "list_tags"}
    found = _inspector(url, "--method", "tools/call", "--tool-name", "search_blog",
                       "--tool-arg", f"query={query}", "--tool-arg", "n=2")
    assert found["structuredContent"]["results"][0]["slug"] == expected
    article = _inspector(url, "--method", "tools/call", "--tool-name", "get_article",
                         "--tool-arg", f"slug={expected}")
    assert article["structuredContent"]["slug"] == expected
    tags = _inspector(url, "--method", "tools/call", "--tool-name", "list_tags", "--tool-arg", "sort=alpha")
    names = [t["tag"].lower() for t in tags["structuredContent"]["tags"]]
    assert names == sorted(names)
