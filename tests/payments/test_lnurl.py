"""The Lightning address for tips (LUD-06 payRequest, LUD-12 comments, LUD-16): the real server
process on loopback, plus in-process variants for the ``payments.*`` LNURL settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bolt11
import httpx
import pytest
from lnurl import LnurlPayResponse
from starlette.testclient import TestClient

from sovereign_mcp.payments.store import TokenStore
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.bootstrap import build_components, build_http_app
from tests.helpers import isolated_settings, running_server

pytestmark = pytest.mark.e2e

CORPUS_ARTICLE = """---
title: Value for value
date: 2025-03-01
tags: [lightning]
---

## Tips

Readers who like a post can send a few sats to the Lightning address.
"""


def isolated_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SOVEREIGN_MCP_")}
    env.update({"XDG_CONFIG_HOME": str(home / "xdg-config"), "XDG_DATA_HOME": str(home / "xdg-data")})
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lnurl-corpus")
    (folder / "tips.md").write_text(CORPUS_ARTICLE, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("lnurl")
    data = home / "data"
    with running_server("--corpus", str(corpus), "--data-dir", str(data), env=isolated_env(home)) as url:
        yield url, data


@pytest.fixture(scope="module")
def pay_request(server: tuple[str, Path]) -> dict[str, Any]:
    url, _ = server
    response = httpx.get(f"{url}/.well-known/lnurlp/tips", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_pay_request(server: tuple[str, Path], pay_request: dict[str, Any]) -> None:
    url, _ = server
    assert pay_request["tag"] == "payRequest"
    assert pay_request["callback"] == f"{url}/lnurlp/tips/callback"
    assert pay_request["minSendable"] == 1_000
    assert pay_request["maxSendable"] == 1_000_000_000
    assert pay_request["commentAllowed"] == 280
    metadata = json.loads(pay_request["metadata"])
    kinds = dict(metadata)
    assert set(kinds) == {"text/plain", "text/identifier"}
    assert kinds["text/identifier"] == "tips@127.0.0.1"
    assert kinds["text/plain"]
    # a real LNURL library accepts it
    parsed = LnurlPayResponse.model_validate(pay_request)
    assert parsed.metadata.h == hashlib.sha256(pay_request["metadata"].encode()).hexdigest()


def test_callback_invoice_commits_to_metadata(server: tuple[str, Path], pay_request: dict[str, Any]) -> None:
    _, data = server
    response = httpx.get(pay_request["callback"], params={"amount": 21000, "comment": "hi"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) <= {"pr", "routes"} and body.get("routes", []) == []
    invoice = bolt11.decode(body["pr"])
    assert invoice.description_hash == hashlib.sha256(pay_request["metadata"].encode()).hexdigest()
    assert invoice.description is None
    assert invoice.amount_msat == 21_000
    assert invoice.is_regtest
    # the dev backend issued it: it is payable through the data dir
    store = TokenStore(data / "l402.sqlite3")
    try:
        found = store.dev_invoice(invoice.payment_hash)
    finally:
        store.close()
    assert found is not None and found[1] == body["pr"] and found[2] == 21


def test_callback_without_comment_and_at_the_limits(pay_request: dict[str, Any]) -> None:
    for msat in (1_000, 1_000_000_000):
        response = httpx.get(pay_request["callback"], params={"amount": msat}, timeout=30)
        assert response.status_code == 200, response.text
        assert bolt11.decode(response.json()["pr"]).amount_msat == msat
    response = httpx.get(pay_request["callback"], params={"amount": 5000, "comment": "x" * 280}, timeout=30)
    assert response.status_code == 200


@pytest.mark.parametrize("params", [
    {"amount": 0},
    {"amount": 999},
    {"amount": 1_000_001_000},
    {"amount": 21500},
    {"amount": 1},
    {},
    {"amount": ""},
    {"amount": "abc"},
    {"amount": "-21000"},
    {"amount": "21000.0"},
    {"amount": 21000, "comment": "x" * 281},
])
def test_callback_errors(pay_request: dict[str, Any], params: dict[str, Any]) -> None:
    response = httpx.get(pay_request["callback"], params=params, timeout=30)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "ERROR"
    assert body["reason"]
    assert "pr" not in body


def test_callback_superscript_digit_refused(pay_request: dict[str, Any]) -> None:
    response = httpx.get(pay_request["callback"], params={"amount": "²"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR"


def test_unknown_name_404(server: tuple[str, Path]) -> None:
    url, _ = server
    for path in ("/.well-known/lnurlp/alice", "/lnurlp/alice/callback?amount=21000"):
        response = httpx.get(f"{url}{path}", timeout=30)
        assert response.status_code == 404
        assert response.json()["status"] == "ERROR"
        assert "alice" in response.json()["reason"]


# -- settings, in process ---------------------------------------------------------------------------------

@pytest.fixture
def app_for(corpus: Path, tmp_path: Path):
    def make(**payments: Any) -> TestClient:
        settings = isolated_settings(tmp_path, corpus={"paths": [corpus], "watch": False},
                                     data_dir=tmp_path / "data", payments=payments)
        _, app = build_http_app(build_components(settings, BlogService(settings)))
        return TestClient(app, base_url="http://127.0.0.1:8002")
    return make


def test_public_url_name_and_limits(app_for) -> None:
    client = app_for(public_url="https://blog.example", lightning_address_name="coffee",
                     lnurl_min_sat=10, lnurl_max_sat=500)
    with client:
        assert client.get("/.well-known/lnurlp/tips").status_code == 404
        response = client.get("/.well-known/lnurlp/coffee")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["callback"] == "https://blog.example/lnurlp/coffee/callback"
        assert (body["minSendable"], body["maxSendable"]) == (10_000, 500_000)
        assert dict(json.loads(body["metadata"]))["text/identifier"] == "coffee@blog.example"
        ok = client.get("/lnurlp/coffee/callback", params={"amount": 10_000})
        assert ok.status_code == 200, ok.text
        assert bolt11.decode(ok.json()["pr"]).description_hash == hashlib.sha256(body["metadata"].encode()).hexdigest()
        for msat in (9_000, 501_000):
            assert client.get("/lnurlp/coffee/callback", params={"amount": msat}).json()["status"] == "ERROR"


def test_no_lightning_address_when_payments_disabled(app_for) -> None:
    with app_for(enabled=False) as client:
        assert client.get("/.well-known/lnurlp/tips").status_code == 404
        assert client.get("/health").status_code == 200
