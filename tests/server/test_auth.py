"""Operator auth: the hashed token store, the FastMCP verifier (stored tokens and JWTs from a local RSA key),
the ``sovereign-mcp token`` CLI, and the real ``sovereign-mcp serve`` process over HTTP (fastmcp.Client,
httpx) and stdio: operator tools hidden from and refused to anonymous callers, shown to and run for an
operator token; 401 for a bearer that does not verify; operator calls of paid tools without L402; the
live probe refused without the operator.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from mcp.shared.exceptions import MCPError

from sovereign_mcp.auth.tokens import OPERATOR, TOKEN_RE, OperatorTokenStore, TokenInputError
from sovereign_mcp.auth.verifier import OperatorTokenVerifier, jwt_verifier
from sovereign_mcp.cli import main as cli_main
from sovereign_mcp.config import AuthSettings, ConfigError, load_settings
from sovereign_mcp.pipeline.config import ROLES
from sovereign_mcp.server.diagnostics import PROBE_REFUSED
from tests.fakes.fake_sglang import FakeSGLang, fake_sglang
from tests.helpers import isolated_env, running_server

OPERATOR_TOOLS = {"cancel_pipeline", "retry_pipeline", "list_jobs", "gpu_services"}
PUBLIC_TOOLS = {"search_blog", "get_article", "list_tags", "diagnose_sglang", "validate_quality",
                "trigger_pipeline", "pipeline_status"}
ISSUER = "https://id.example.test"
ARTICLE = """---
title: Keys for the operator
date: 2025-04-01
tags: [security]
---

## Tokens

Only the operator may cancel jobs. The gate checks every draft before it is published.
"""
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _files_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


# -- the store ------------------------------------------------------------------------------------------

def test_token_is_stored_hashed_and_verifies(tmp_path: Path) -> None:
    store = OperatorTokenStore(tmp_path / "auth.sqlite3")
    token, record = store.create(OPERATOR, label="laptop")
    match = TOKEN_RE.match(token)
    assert match is not None and match["id"] == record.token_id
    found = store.verify(token)
    assert found is not None and (found.token_id, found.scope, found.label) == (record.token_id, "operator", "laptop")
    store.close()
    raw = _files_bytes(tmp_path)  # the database file and its WAL
    assert match["secret"].encode() not in raw and token.encode() not in raw
    assert hashlib.sha256(match["secret"].encode()).hexdigest().encode() in raw


def test_wrong_secret_unknown_id_and_garbage_are_refused(tmp_path: Path) -> None:
    store = OperatorTokenStore(tmp_path / "auth.sqlite3")
    token, record = store.create()
    secret = TOKEN_RE.match(token)["secret"]  # type: ignore[index]
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    assert store.verify(f"smcp_{record.token_id}_{flipped}") is None
    assert store.verify(f"smcp_{'0' * 16}_{secret}") is None
    for garbage in ("", "smcp_", token + "x", token[:-1], token.upper(), f"Bearer {token}"):
        assert store.verify(garbage) is None, garbage
    assert store.verify(token) is not None


def test_revoke_and_expiry(tmp_path: Path) -> None:
    store = OperatorTokenStore(tmp_path / "auth.sqlite3")
    token, record = store.create(expires_in=60, now=1_000)
    assert record.expires_at == 1_060
    assert store.verify(token, now=1_059) is not None
    assert store.verify(token, now=1_060) is None
    assert store.get(record.token_id).state(1_060) == "expired"  # type: ignore[union-attr]
    other, kept = store.create()
    assert store.revoke(kept.token_id) is True
    assert store.revoke(kept.token_id) is False and store.revoke("f" * 16) is False
    assert store.verify(other) is None
    assert [(t.token_id, t.state()) for t in store.list()] == [(kept.token_id, "revoked"),
                                                              (record.token_id, "expired")]


def test_last_used_is_recorded(tmp_path: Path) -> None:
    store = OperatorTokenStore(tmp_path / "auth.sqlite3")
    token, record = store.create(now=1_000)
    assert record.last_used_at is None
    store.verify(token, now=2_000)
    assert store.get(record.token_id).last_used_at == 2_000  # type: ignore[union-attr]
    store.verify(token, now=2_030)  # within a minute: not rewritten
    assert store.get(record.token_id).last_used_at == 2_000  # type: ignore[union-attr]
    store.verify(token, now=2_100)
    assert store.get(record.token_id).last_used_at == 2_100  # type: ignore[union-attr]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scope": "admin"}, "unknown scope 'admin': use one of operator"),
    ({"label": "x" * 201}, "label longer than 200"),
    ({"expires_in": 0}, "lifetime must be positive"),
    ({"expires_in": float("inf")}, "lifetime must be positive"),
])
def test_bad_input_is_refused_and_stores_nothing(tmp_path: Path, kwargs: dict, message: str) -> None:
    store = OperatorTokenStore(tmp_path / "auth.sqlite3")
    with pytest.raises(TokenInputError, match=message):
        store.create(**kwargs)
    assert store.list() == []


# -- the verifier ---------------------------------------------------------------------------------------

async def test_verifier_maps_stored_tokens_to_access_tokens(tmp_path: Path) -> None:
    store = OperatorTokenStore(tmp_path / "auth.sqlite3")
    token, record = store.create(label="ci")
    verifier = OperatorTokenVerifier(store)
    access = await verifier.verify_token(token)
    assert access is not None
    assert (access.client_id, access.scopes, access.token) == (record.token_id, ["operator"], token)
    store.revoke(record.token_id)
    assert await verifier.verify_token(token) is None
    assert await verifier.verify_token("eyJhbGciOiJSUzI1NiJ9.e30.x") is None  # no JWT configured


async def test_jwt_operator_scope_is_mapped(tmp_path: Path) -> None:
    keys, stranger = RSAKeyPair.generate(), RSAKeyPair.generate()
    config = AuthSettings(jwt_public_key=keys.public_key, jwt_issuer=ISSUER, jwt_audience="sovereign-mcp",
                          jwt_operator_scope="blog:admin")
    verifier = OperatorTokenVerifier(OperatorTokenStore(tmp_path / "a.sqlite3"), jwt_verifier(config), "blog:admin")

    def make(pair: RSAKeyPair = keys, **kw: object) -> str:
        args: dict = {"issuer": ISSUER, "audience": "sovereign-mcp", "scopes": ["blog:admin"], "subject": "ops", **kw}
        return pair.create_token(**args)

    admin = await verifier.verify_token(make())
    assert admin is not None and admin.client_id == "ops" and set(admin.scopes) == {"blog:admin", "operator"}
    reader = await verifier.verify_token(make(scopes=["blog:read"]))
    assert reader is not None and reader.scopes == ["blog:read"]
    assert await verifier.verify_token(make(stranger)) is None  # signed by another key
    assert await verifier.verify_token(make(issuer="https://evil.test")) is None
    assert await verifier.verify_token(make(audience="someone-else")) is None
    assert await verifier.verify_token(make(expires_in_seconds=-10)) is None


def test_jwks_and_public_key_together_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ConfigError, match=r"set auth\.jwt_public_key or auth\.jwt_jwks_uri, not both") as exc:
        load_settings(auth={"jwt_jwks_uri": "https://id.example.test/jwks", "jwt_public_key": "PEM-SECRET"})
    assert "PEM-SECRET" not in str(exc.value)


# -- the CLI --------------------------------------------------------------------------------------------

def test_cli_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    data = ["--data-dir", str(tmp_path / "data")]
    assert cli_main(["token", "create", "--scope", "operator", "--label", "laptop", "--expires-days", "30", *data]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert TOKEN_RE.match(token) and "Authorization: Bearer <token>" in err
    store = OperatorTokenStore(tmp_path / "data" / "auth.sqlite3")
    record = store.verify(token)
    assert record is not None and record.label == "laptop" and record.expires_at is not None
    assert 29.9 * 86_400 < record.expires_at - record.created_at <= 30 * 86_400

    assert cli_main(["token", "list", *data]) == 0
    listing = capsys.readouterr().out
    assert record.token_id in listing and "active" in listing and "laptop" in listing
    assert TOKEN_RE.match(token)["secret"] not in listing  # type: ignore[index]
    assert cli_main(["token", "list", "--json", *data]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["token_id"] == record.token_id and "secret" not in json.dumps(row).lower()

    assert cli_main(["token", "revoke", record.token_id, *data]) == 0
    assert store.verify(token) is None
    assert cli_main(["token", "revoke", record.token_id, *data]) == 1
    assert "already revoked" in capsys.readouterr().err
    assert cli_main(["token", "create", "--scope", "operator", "--expires-days", "-1", *data]) == 2
    assert "lifetime must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_main(["token", "create", "--scope", "root", *data])
    assert exc.value.code == 2


# -- the real server over HTTP --------------------------------------------------------------------------

@dataclass
class Served:
    url: str
    store: OperatorTokenStore
    operator: str
    keys: RSAKeyPair
    fake: FakeSGLang

    @property
    def mcp(self) -> str:
        return f"{self.url}/mcp"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("auth-corpus")
    (folder / "keys.md").write_text(ARTICLE, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("auth-http")
    keys = RSAKeyPair.generate()
    store = OperatorTokenStore(root / "data" / "auth.sqlite3")
    operator, _ = store.create(label="tests")
    with fake_sglang() as fake:
        env = isolated_env(root, SOVEREIGN_MCP_DIAGNOSTICS__SGLANG_URL=fake.url,
                   SOVEREIGN_MCP_AUTH__JWT_PUBLIC_KEY=keys.public_key, SOVEREIGN_MCP_AUTH__JWT_ISSUER=ISSUER)
        with running_server("--corpus", str(corpus), "--data-dir", str(root / "data"), env=env) as url:
            yield Served(url, store, operator, keys, fake)
    store.close()


@pytest.mark.e2e
async def test_anonymous_cannot_see_or_call_operator_tools(served: Served) -> None:
    async with Client(served.mcp) as client:
        names = {t.name for t in await client.list_tools()}
        assert names >= PUBLIC_TOOLS and not names & OPERATOR_TOOLS
        for tool in sorted(OPERATOR_TOOLS):
            with pytest.raises(ToolError, match="Unknown tool"):
                await client.call_tool(tool, {"job_id": "x"} if tool.endswith("_pipeline") else {})
        found = await client.call_tool("search_blog", {"query": "operator tokens"})
        assert found.structured_content["results"][0]["slug"] == "keys"


@pytest.mark.e2e
async def test_operator_sees_and_calls_operator_tools(served: Served) -> None:
    async with Client(served.mcp, auth=served.operator) as client:
        names = {t.name for t in await client.list_tools()}
        assert names >= PUBLIC_TOOLS | OPERATOR_TOOLS
        jobs = await client.call_tool("list_jobs", {})
        assert jobs.structured_content == {"jobs": []}
        gpu = (await client.call_tool("gpu_services", {})).structured_content
        assert set(gpu["roles"]) == set(ROLES) and isinstance(gpu["active_jobs"], int)
        with pytest.raises(ToolError, match="no pipeline job"):
            await client.call_tool("cancel_pipeline", {"job_id": "nosuchjob"})
    last = served.store.get(TOKEN_RE.match(served.operator)["id"])  # type: ignore[index]
    assert last is not None and last.last_used_at is not None


@pytest.mark.e2e
async def test_bearer_that_does_not_verify_gets_401(served: Served) -> None:
    revoked, record = served.store.create(label="to revoke")
    async with Client(served.mcp, auth=revoked) as client:
        assert {t.name for t in await client.list_tools()} >= OPERATOR_TOOLS
    served.store.revoke(record.token_id)
    expired, _ = served.store.create(expires_in=1, now=1_000)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        for bad in (revoked, expired, "smcp_0123456789abcdef_" + "x" * 43, "not-a-token", ""):
            for path, content, headers in (("/mcp", body, MCP_HEADERS), ("/api/search", '{"query": "x"}', {})):
                bearer = f"Bearer {bad}".strip()  # "Bearer" alone: an empty token
                response = await http.post(path, content=content, headers={**headers, "Authorization": bearer})
                assert response.status_code == 401, (bad, path, response.text)
                assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
                assert "sovereign-mcp token create --scope operator" in response.json()["error_description"]
        plain = await http.post("/api/search", json={"query": "operator"})
        metrics = await http.get("/metrics", headers={"Authorization": "Bearer not-an-operator-token"})
    assert plain.status_code == 200  # no Authorization header: anonymous, unchanged
    assert metrics.status_code == 200  # /metrics has its own bearer (observability.metrics_token), unset here
    with pytest.raises(MCPError, match="Server returned an error response"):  # the client's word for the 401
        async with Client(served.mcp, auth=revoked) as client:
            await client.list_tools()


@pytest.mark.e2e
async def test_operator_calls_paid_tools_without_paying(served: Served) -> None:
    body = {"text": ARTICLE}
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        anonymous = await http.post("/api/validate", json=body)
        operator = await http.post("/api/validate", json=body, headers={"Authorization": f"Bearer {served.operator}"})
    async with Client(served.mcp) as anonymous_client:  # in-band challenge on MCP
        over_mcp = await anonymous_client.call_tool("validate_quality", body, raise_on_error=False)
    assert anonymous.status_code == 402 and anonymous.json()["payment_required"]["tool"] == "validate_quality"
    assert over_mcp.is_error and over_mcp.structured_content["payment_required"]["amount_sat"] == 21
    assert operator.status_code == 200 and operator.json()["verdict"] in {"pass", "pass_with_warnings"}
    async with Client(served.mcp, auth=served.operator) as client:
        checked = await client.call_tool("validate_quality", body)
        assert checked.structured_content["chars"] == len(ARTICLE)
        queued = await client.call_tool("trigger_pipeline", {"kind": "hero_image", "topic": "a key"})
        ticket = queued.structured_content
        assert ticket["state"] == "queued"
        cancelled = await client.call_tool("cancel_pipeline", {"job_id": ticket["job_id"]})
        assert not cancelled.is_error and cancelled.structured_content["job_id"] == ticket["job_id"]
        if cancelled.structured_content["state"] == "cancelled":
            retried = await client.call_tool("retry_pipeline", {"job_id": ticket["job_id"]})
            assert retried.structured_content["state"] in ("queued", "running", "done")
            with pytest.raises(ToolError, match="only a failed or cancelled job can be retried"):
                await client.call_tool("retry_pipeline", {"job_id": ticket["job_id"]})
            await client.call_tool("cancel_pipeline", {"job_id": ticket["job_id"]})


@pytest.mark.e2e
async def test_live_probe_needs_the_operator(served: Served) -> None:
    seen = len(served.fake.requests)
    async with Client(served.mcp) as client:
        refused = await client.call_tool("diagnose_sglang", {"probe": True}, raise_on_error=False)
        offline = await client.call_tool("diagnose_sglang", {"attention_backend": "flashinfer"})
    assert refused.is_error and refused.content[0].text == PROBE_REFUSED
    assert offline.structured_content["probe"] is None
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        api_refused = await http.post("/api/diagnose", json={"probe": True})
        assert len(served.fake.requests) == seen  # nothing reached the SGLang server
        api_probe = await http.post("/api/diagnose", json={"probe": True},
                                    headers={"Authorization": f"Bearer {served.operator}"})
    assert api_refused.status_code == 401 and api_refused.json()["error"] == PROBE_REFUSED
    assert api_refused.headers["www-authenticate"] == 'Bearer scope="operator"'
    assert api_probe.status_code == 200 and api_probe.json()["probe"]["url"] == served.fake.url
    async with Client(served.mcp, auth=served.operator) as client:
        report = (await client.call_tool("diagnose_sglang", {"probe": True})).structured_content
    assert report["probe"]["reachable"] is True and report["probe"]["ready"] is True


@pytest.mark.e2e
async def test_jwt_with_the_operator_scope(served: Served) -> None:
    operator = served.keys.create_token(issuer=ISSUER, scopes=["operator"], subject="sso-ops")
    reader = served.keys.create_token(issuer=ISSUER, scopes=["read"], subject="sso-reader")
    forged = RSAKeyPair.generate().create_token(issuer=ISSUER, scopes=["operator"])
    async with Client(served.mcp, auth=operator) as client:
        assert {t.name for t in await client.list_tools()} >= OPERATOR_TOOLS
        assert (await client.call_tool("list_jobs", {})).structured_content is not None
    async with Client(served.mcp, auth=reader) as client:
        assert not OPERATOR_TOOLS & {t.name for t in await client.list_tools()}
    response = httpx.post(f"{served.url}/api/search", json={"query": "x"}, timeout=30,
                          headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


# -- stdio is the local operator; auth off is today's behaviour ----------------------------------------

@pytest.mark.e2e
async def test_stdio_is_the_local_operator(tmp_path: Path, corpus: Path) -> None:
    with fake_sglang() as fake:
        transport = StdioTransport(sys.executable, [
            "-m", "sovereign_mcp", "serve", "--transport", "stdio", "--data-dir", str(tmp_path / "data"),
            "--corpus", str(corpus), "--no-watch", "--log-level", "warning"],
            env=isolated_env(tmp_path, SOVEREIGN_MCP_DIAGNOSTICS__SGLANG_URL=fake.url), cwd=str(tmp_path))
        async with Client(transport) as client:
            assert {t.name for t in await client.list_tools()} >= OPERATOR_TOOLS
            assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}
            report = (await client.call_tool("diagnose_sglang", {"probe": True})).structured_content
    assert report["probe"]["url"] == fake.url and report["probe"]["reachable"] is True


@pytest.mark.e2e
async def test_auth_disabled_leaves_every_tool_open(tmp_path: Path, corpus: Path) -> None:
    env = isolated_env(tmp_path, SOVEREIGN_MCP_AUTH__ENABLED="false", SOVEREIGN_MCP_PAYMENTS__ENABLED="false")
    with running_server("--corpus", str(corpus), "--data-dir", str(tmp_path / "data"), env=env) as url:
        async with Client(f"{url}/mcp") as client:
            assert {t.name for t in await client.list_tools()} >= PUBLIC_TOOLS | OPERATOR_TOOLS
            assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}
        unchecked = httpx.post(f"{url}/api/search", json={"query": "x"}, timeout=30,
                               headers={"Authorization": "Bearer anything"})
    assert unchecked.status_code == 200
    assert not (tmp_path / "data" / "auth.sqlite3").exists()
