"""Property-based fuzzing (hypothesis) of every tool the server lists: no internal error, no traceback.

For each tool in ``list_tools`` (whatever the list holds; nothing is hard-coded), arguments come from
three generators: schema-valid ones from the tool's ``inputSchema`` (hypothesis-jsonschema), valid ones
with one property replaced by junk (wrong type, huge or odd unicode string, nested junk, a lone
surrogate), and arbitrary objects of junk. Every answer must be either a result or a clear error:

* no JSON-RPC internal error (-32603) and no masked tool crash (FastMCP's bare
  ``Error calling tool '<name>'``, what an unexpected exception becomes with ``mask_error_details``);
* no Python traceback text (``Traceback (most recent call last)``, ``File "``) anywhere in the answer
  (unless the arguments carried it: a tool may quote its input; the served corpora contain neither);
* an error answer carries a non-empty message;
* the server still answers a normal ``search_blog`` and ``list_tools`` afterwards.

The bulk runs in memory (``fastmcp.Client`` on ``build_mcp``) with payments off, so the paid tools'
argument validation is reached, operator auth off, so the operator tools are fuzzed too, and the
pipeline worker off with a temp data dir, so ``trigger_pipeline`` only queues jobs. A smaller run goes
over Streamable HTTP to the real ``sovereign-mcp serve`` process (defaults, except payments, rate limits
and the pipeline worker off), plus raw JSON-RPC junk (bodies that are not JSON, non-object arguments,
deep nesting, lone surrogates), which must get a 4xx or a JSON-RPC error, never a 500.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastmcp import Client, FastMCP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from sovereign_mcp.config import load_settings
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.bootstrap import build_components, build_mcp
from tests.fakes.fake_media import ScriptedLLM, make_png
from tests.helpers import isolated_env, running_server

IN_MEMORY_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
HTTP_EXAMPLES = int(os.environ.get("FUZZ_HTTP_EXAMPLES", "15"))
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "')
INTERNAL_ERROR = -32603
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

# -- generators ------------------------------------------------------------------------------------------

ODD = {  # label -> value (labels keep hypothesis' reports short)
    "empty": "", "space": " ", "nul": "\x00", "bidi+zero-width": "\u202e\u200b\ufeff", "emoji": "💥" * 50,
    "5k umlauts": "ü" * 5000, "100k chars": "a" * 100_001, "10k newlines": "\n" * 10_000, "path": "../../etc/passwd",
    "jndi": "${jndi:x}", "sql": "' OR 1=1 --", "html": "<script>", "format": "%s%n", "backslash": "\\",
    "lone surrogate": "\ud800", "surrogate inside": "x\udfffy", "null": "null", "NaN": "NaN", "-1": "-1",
    "1e309": "1e309",
}
ODD_TEXT = st.sampled_from(sorted(ODD)).map(ODD.__getitem__)
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50)
           | st.text(SURROGATE | st.characters(), max_size=20) | ODD_TEXT)
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
DEEP = st.integers(min_value=20, max_value=200).map(lambda depth: _nest(depth))


def _nest(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with waits capped at 0.2 s (a valid ``wait_seconds: 300`` on a queued job would block the
    run for minutes; the cap changes what is generated, not what the server accepts)."""
    schema = copy.deepcopy(schema)
    for name, prop in schema.get("properties", {}).items():
        if "wait" in name:
            for option in [prop, *prop.get("anyOf", [])]:
                if option.get("type") in ("number", "integer"):
                    option["maximum"] = min(option.get("maximum", 0.2), 0.2)
    return schema


def arguments(schema: dict[str, Any], known: dict[str, list[Any]] | None = None, *,
              surrogates: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Schema-valid arguments, valid ones with one property set to junk, and objects of junk.

    ``known`` maps a property name to values that exist on the server (article slugs, job ids), mixed into
    the valid arguments so that the paths behind a successful lookup are fuzzed too, not only "not found".
    """
    schema = _bounded(schema)
    names = sorted(schema.get("properties", {})) or ["x"]
    junk = JUNK | DEEP
    if not surrogates:  # an HTTP client cannot encode a lone surrogate as UTF-8; the raw test sends them escaped
        junk = junk.filter(lambda v: _encodable(v))
    valid = from_schema(schema)
    hints = {k: st.sampled_from(v) for k, v in (known or {}).items() if k in names and v}
    if hints:
        valid = valid | st.tuples(valid, st.fixed_dictionaries({}, optional=hints)).map(lambda t: {**t[0], **t[1]})
    mutated = st.tuples(valid, st.sampled_from(names) | st.text(max_size=10), junk).map(
        lambda t: {**t[0], t[1]: t[2]})
    garbage = st.dictionaries(st.sampled_from(names) | st.text(max_size=12), junk, max_size=5)
    return st.one_of(valid, mutated, garbage)


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return False
    return True


# -- checks ----------------------------------------------------------------------------------------------

def _texts(result: Any) -> str:
    parts = [getattr(c, "text", "") or "" for c in result.content]
    if result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, default=str))
    return "\n".join(parts)


def assert_clean(tool: str, args: dict[str, Any], outcome: Any) -> None:
    """``outcome`` (a CallToolResult or the exception the client raised) is a result or a clear error."""
    where = f"{tool}({_short(args)})"
    if isinstance(outcome, BaseException):
        error = getattr(outcome, "error", None)
        code = getattr(error, "code", None)
        message = str(outcome)
        assert code is not None, f"{where}: client raised {type(outcome).__name__}: {message}"
        assert code != INTERNAL_ERROR, f"{where}: JSON-RPC internal error: {message}"
        text = message
    else:
        text = _texts(outcome)
        if outcome.is_error:
            assert text.strip(), f"{where}: error without a message"
            assert text.strip() != f"Error calling tool {tool!r}", f"{where}: the tool crashed (masked error)"
    sent = json.dumps(args, default=str, ensure_ascii=False)
    for marker in TRACEBACK_MARKERS:  # (a tool may quote its input, e.g. a pasted log: that is not a leak)
        assert marker not in text or marker in sent, f"{where}: traceback text in the answer:\n{text[:2000]}"


def _short(args: dict[str, Any]) -> str:
    shown = json.dumps(args, default=str, ensure_ascii=True)
    return shown if len(shown) < 300 else shown[:300] + "..."


async def call(client: Client, tool: str, args: dict[str, Any]) -> Any:
    try:
        return await client.call_tool(tool, args, raise_on_error=False)
    except Exception as exc:  # the outcome is judged by assert_clean
        return exc


async def still_answers(client: Client) -> None:
    names = {t.name for t in await client.list_tools()}
    assert "search_blog" in names
    found = await client.call_tool("search_blog", {"query": "sglang memory"})
    assert found.structured_content["results"], "a normal search must still find articles"


async def known_values(client: Client) -> dict[str, list[Any]]:
    """Values that exist on the server: article slugs, tags, KB rule ids, a queued job id."""
    [listing] = await client.read_resource("blog://articles")
    articles = json.loads(listing.text)
    slugs = [a["slug"] for a in articles]
    job = await client.call_tool("trigger_pipeline", {"kind": "hero_image", "topic": "fuzz"}, raise_on_error=False)
    jobs = [job.structured_content["job_id"]] if not job.is_error else []
    rules = await client.call_tool("list_kb_rules", {}, raise_on_error=False)
    rule_ids = [e["id"] for e in rules.structured_content["entries"]] if not rules.is_error else []
    tags = sorted({t for a in articles for t in a["tags"]})
    png = base64.b64encode(make_png(16, 16)).decode()
    return {"slug": slugs, "source_slugs": [slugs[:1], slugs[:3]], "tag": tags, "job_id": jobs,
            "rules": [rule_ids[:1], rule_ids[:5]], "scope": ["podcast", "article", "sglang"],
            "image": [png, f"data:image/png;base64,{png}"]}


# -- in memory -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastMCP]:
    data = tmp_path_factory.mktemp("fuzz-data")
    vision = ScriptedLLM("vision", lambda prompt: '{"role": "informative", "alt": "A small test pattern"}').start()
    inference = {"providers": [{"name": "vision", "kind": "openai", "base_url": vision.base_url, "model": "m"}]}
    config = load_settings(None, data_dir=data, corpus={"watch": False}, auth={"enabled": False},
                           pipeline={"worker": False, "manage_gpu": False},  # no GPU service is started here
                           diagnostics={"sglang_url": None}, inference=inference)
    service = BlogService(config)
    try:
        yield build_mcp(build_components(service.settings, service, payments=None))
    finally:
        service.close()
        vision.stop()


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as p:
        yield p


@pytest.fixture(scope="module")
def client(mcp: FastMCP, portal: BlockingPortal) -> Iterator[Client]:
    with portal.wrap_async_context_manager(Client(mcp, timeout=60)) as c:
        yield c


def fuzz_tool(portal: BlockingPortal, client: Client, name: str, schema: dict[str, Any], examples: int,
              known: dict[str, list[Any]], surrogates: bool = True) -> dict[str, int]:
    """Run ``examples`` generated calls of tool ``name``; returns how many succeeded and were refused."""
    counts = {"ok": 0, "error": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(args=arguments(schema, known, surrogates=surrogates))
    def fuzz(args: dict[str, Any]) -> None:
        outcome = portal.call(call, client, name, args)
        assert_clean(name, args, outcome)
        counts["error" if isinstance(outcome, BaseException) or outcome.is_error else "ok"] += 1

    fuzz()
    return counts


def test_every_listed_tool_survives_fuzzed_arguments(client: Client, portal: BlockingPortal) -> None:
    tools = portal.call(client.list_tools)
    names = [t.name for t in tools]
    assert {"search_blog", "validate_quality", "trigger_pipeline"} <= set(names), names
    known = portal.call(known_values, client)
    for tool in tools:
        counts = fuzz_tool(portal, client, tool.name, tool.input_schema, IN_MEMORY_EXAMPLES, known)
        portal.call(still_answers, client)
        # the generators reach both sides of every tool: some calls succeed, some are refused
        assert counts["ok"] > 0, f"{tool.name}: no generated call succeeded ({counts})"
        assert counts["error"] > 0, f"{tool.name}: no generated call was refused ({counts})"


def test_paid_tools_reach_their_own_validation(client: Client, portal: BlockingPortal) -> None:
    """With payments off the paid tools validate their arguments themselves, with a message that says what."""
    bad_kind = portal.call(call, client, "validate_quality", {"text": "x", "kind": "poem"})
    assert bad_kind.is_error and "kind" in _texts(bad_kind)
    bad_options = portal.call(call, client, "trigger_pipeline", {"kind": "article", "topic": "x",
                                                                 "options": {"speed": "fast"}})
    assert bad_options.is_error and "speed" in _texts(bad_options)
    queued = portal.call(call, client, "trigger_pipeline", {"kind": "hero_image", "topic": "a quiet rack"})
    assert not queued.is_error and queued.structured_content["state"] == "queued"  # the worker is off


def test_the_check_catches_a_crashing_tool(portal: BlockingPortal) -> None:
    """The oracle is not vacuous: a tool that raises an unexpected exception is reported."""
    broken = FastMCP(name="broken", mask_error_details=True)

    @broken.tool
    def explode(x: int = 0) -> int:
        return {"a": 1}["b"]  # KeyError: an internal error, masked by FastMCP

    with portal.wrap_async_context_manager(Client(broken)) as c:
        outcome = portal.call(call, c, "explode", {"x": 1})
    with pytest.raises(AssertionError, match="crashed"):
        assert_clean("explode", {"x": 1}, outcome)


# -- over HTTP, the real server process ------------------------------------------------------------------

@pytest.fixture(scope="module")
def http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("fuzz-http")
    env = isolated_env(home, SOVEREIGN_MCP_PAYMENTS__ENABLED="false", SOVEREIGN_MCP_RATE_LIMIT__ENABLED="false",
                       SOVEREIGN_MCP_PIPELINE__WORKER="false")
    with running_server("--data-dir", str(home / "data"), env=env) as url:
        yield url


@pytest.mark.e2e
def test_fuzzed_arguments_over_http(http_url: str, portal: BlockingPortal) -> None:
    with portal.wrap_async_context_manager(Client(f"{http_url}/mcp", timeout=60)) as remote:
        tools = portal.call(remote.list_tools)
        assert tools
        known = portal.call(known_values, remote)
        for tool in tools:
            fuzz_tool(portal, remote, tool.name, tool.input_schema, HTTP_EXAMPLES, known, surrogates=False)
        portal.call(still_answers, remote)


def _raw_bodies() -> list[tuple[str, bytes, bool]]:
    """``(label, body, must_be_refused)``: a huge ``n`` is capped, not refused."""
    def call_body(arguments: Any, name: Any = "search_blog") -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": name, "arguments": arguments}}).encode()

    deep = "[" * 50_000 + "]" * 50_000
    return [
        ("not JSON", b"{not json", True),
        ("not UTF-8", b'{"jsonrpc": "2.0", "id": 1, "method": "\xff\xfe"}', True),
        ("empty", b"", True),
        ("a JSON string", b'"hello"', True),
        ("arguments is a list", call_body([1, 2, 3]), True),
        ("arguments is a string", call_body("query=sglang"), True),
        ("name is a number", call_body({}, 42), True),
        ("unknown tool", call_body({}, "no_such_tool"), True),
        ("lone surrogate, escaped", call_body({"query": "\ud800\udc00\ud800"}), True),
        ("huge integer", call_body({"n": 10**400}), False),
        ("deep nesting in arguments", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": '
                                      b'"search_blog", "arguments": {"query": ' + deep.encode() + b"}}}", True),
        ("deep nesting at the top", deep.encode(), True),
        ("params is null", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": null}', True),
        ("unknown method", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/destroy", "params": {}}', True),
    ]


@pytest.mark.e2e
@pytest.mark.parametrize(("label", "body", "refused"), _raw_bodies(), ids=[label for label, *_ in _raw_bodies()])
def test_raw_junk_requests_get_clear_errors(http_url: str, label: str, body: bytes, refused: bool) -> None:
    with httpx.Client(base_url=http_url, timeout=30) as http:
        headers = {**MCP_HEADERS, "MCP-Protocol-Version": "2025-06-18"}
        init = http.post("/mcp", headers=MCP_HEADERS, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "fuzz", "version": "1"}}})
        assert init.status_code == 200, init.text
        if "mcp-session-id" in init.headers:  # only with server.stateless_http = false
            headers["mcp-session-id"] = init.headers["mcp-session-id"]
        http.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})

        response = http.post("/mcp", headers=headers, content=body)
        assert response.status_code < 500, f"{label}: HTTP {response.status_code}: {response.text[:500]}"
        for marker in TRACEBACK_MARKERS:
            assert marker not in response.text, f"{label}: traceback text in the answer: {response.text[:2000]}"
        for line in response.text.splitlines():  # JSON or one SSE event; no internal error either way
            payload = line[5:] if line.startswith("data:") else line
            if payload.strip().startswith("{"):
                message = json.loads(payload)
                assert (message.get("error") or {}).get("code") != INTERNAL_ERROR, f"{label}: {message}"
        answered_error = response.status_code >= 400 or '"error"' in response.text or '"isError":true' in response.text
        assert answered_error or not refused, f"{label}: junk was accepted: {response.text[:500]}"

        after = http.post("/mcp", headers=headers, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "search_blog", "arguments": {"query": "sglang"}}})
        assert after.status_code == 200 and '"results"' in after.text, after.text[:500]
