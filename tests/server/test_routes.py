"""Tests for the plain-HTTP routes (/health, /api/*) and the Host guard of the Starlette app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sovereign_mcp.config import Settings
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.bootstrap import build_components, build_http_app
from tests.helpers import isolated_settings

MEMORY_TEXT = " ".join(
    f"Memory paragraph sentence number {i} explains the KV cache budget and the static fraction."
    for i in range(20)
)

ARTICLES = {
    "alpha.md": (
        "---\ntitle: Alpha post\ndate: 2024-01-01\ntags: [gpu, sglang]\n---\n\n"
        "Opening paragraph about running a local model server, long enough to be cited on its own.\n\n"
        "## Tuning the scheduler\n\n"
        "The zebrafish scheduler needs careful tuning of the batch size and the memory fraction.\n\n"
        f"## Memory\n\n{MEMORY_TEXT}\n"
    ),
    "beta.md": "---\ntitle: Beta post\ndate: 2024-03-01\ntags: [gpu]\n---\n\nBeta talks about voxtral speech.\n",
    "gamma.md": (
        "---\ntitle: Zebrafish everywhere\ndate: 2023-06-01\ntags: [gpu, comfyui]\n---\n\n"
        "Zebrafish zebrafish zebrafish: an older post all about the zebrafish image workflow.\n"
    ),
    "delta.md": (
        "---\ntitle: Delta post\ndate: 2024-05-01\ntags: [lightning]\n---\n\nPaying for tools with lightning.\n"
    ),
    "broken.md": "---\ntitle: [unclosed\n---\n\nThis one has malformed front matter.\n",
}


def make_settings(tmp: Path, corpus: Path, **overrides: Any) -> Settings:
    return isolated_settings(tmp, corpus={"paths": [corpus], "watch": False}, data_dir=tmp / "data", **overrides)


def write_corpus(folder: Path, articles: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in articles.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Settings]:
    tmp = tmp_path_factory.mktemp("routes")
    corpus = write_corpus(tmp / "corpus", ARTICLES)
    settings = make_settings(tmp, corpus, server={"max_body_bytes": 2048})
    service = BlogService(settings)
    _, app = build_http_app(build_components(settings, service))
    return app, settings


@pytest.fixture(scope="module")
def client(app_settings: tuple[Any, Settings]) -> Iterator[TestClient]:
    app, _ = app_settings
    with TestClient(app) as c:
        yield c


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["slug"] for r in response.json()["results"]]


# --- /health ----------------------------------------------------------------------------------


def test_health_counts(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    data = r.json()
    assert data["status"] == "ok"
    assert data["articles"] == 4
    assert data["passages"] >= 4
    assert len(data["corpus_warnings"]) == 1
    assert "broken.md" in data["corpus_warnings"][0]
    assert data["reload_error"] is None
    assert data["index_from_cache"] is False


# --- /api/search ------------------------------------------------------------------------------


def test_post_search_cites_passage_under_heading(client: TestClient) -> None:
    r = client.post("/api/search", json={"query": "scheduler batch size"})
    assert r.status_code == 200
    data = r.json()
    assert data["query"] == "scheduler batch size"
    top = data["results"][0]
    assert top["slug"] == "alpha"
    assert "#" in top["url"]
    assert top["url"] == "/alpha/#tuning-the-scheduler"
    assert top["anchor"] == "alpha#tuning-the-scheduler"
    assert top["heading_path"] == ["Tuning the scheduler"]
    assert "batch size" in top["passage"]
    assert top["score"] > 0
    assert data["count"] == len(data["results"])


def test_get_search_with_query_params(client: TestClient) -> None:
    r = client.get("/api/search", params={"query": "voxtral", "n": "3"})
    assert slugs(r) == ["beta"]
    assert r.json()["results"][0]["url"] == "/beta/"


def test_search_no_match(client: TestClient) -> None:
    r = client.post("/api/search", json={"query": "xylophonequartz"})
    assert r.status_code == 200
    assert r.json()["count"] == 0
    assert r.json()["results"] == []


def test_empty_query_lists_newest_first(client: TestClient) -> None:
    r = client.post("/api/search", json={})
    assert slugs(r) == ["delta", "beta", "alpha", "gamma"]
    assert all(hit["score"] == 0 for hit in r.json()["results"])
    assert slugs(client.post("/api/search", json={"query": "", "n": 2})) == ["delta", "beta"]


def test_tag_filter(client: TestClient) -> None:
    assert slugs(client.post("/api/search", json={"tag": "gpu"})) == ["beta", "alpha", "gamma"]
    assert slugs(client.post("/api/search", json={"tag": "GPU", "query": "zebrafish"})) == ["gamma", "alpha"]
    assert slugs(client.post("/api/search", json={"tag": "sglang", "query": "zebrafish"})) == ["alpha"]
    assert slugs(client.post("/api/search", json={"tag": "lightning", "query": "zebrafish"})) == []
    assert slugs(client.get("/api/search", params={"tag": "no-such-tag"})) == []


def test_sort_date_desc_vs_relevance(client: TestClient) -> None:
    assert slugs(client.post("/api/search", json={"query": "zebrafish"})) == ["gamma", "alpha"]
    r = client.post("/api/search", json={"query": "zebrafish", "sort": "date_desc"})
    assert slugs(r) == ["alpha", "gamma"]
    assert r.json()["sort"] == "date_desc"


def test_n_limits_results(client: TestClient) -> None:
    assert len(slugs(client.post("/api/search", json={"n": 1}))) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"query": 5}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"sort": "random"}, "sort"),
        ({"tag": "t" * 101}, "tag"),
        ({"qury": "typo"}, "qury"),
    ],
)
def test_invalid_search_arguments_400(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post("/api/search", json=body)
    assert r.status_code == 400
    data = r.json()
    assert data["error"].startswith("invalid arguments")
    assert [d["field"] for d in data["details"]] == [field]


def test_query_of_5000_chars_400(app_settings: tuple[Any, Settings]) -> None:
    # 5000 characters fit the body limit of the default settings, so this is the query length check
    app, _ = app_settings
    with TestClient(app) as c:
        r = c.get("/api/search", params={"query": "y" * 5000})
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "query"


def test_get_search_bad_n_400(client: TestClient) -> None:
    r = client.get("/api/search", params={"n": "lots"})
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "n"


def test_non_json_body_415(client: TestClient) -> None:
    r = client.post("/api/search", content=b"query=hello", headers={"content-type": "application/json"})
    assert r.status_code == 415
    assert "not valid JSON" in r.json()["error"]


def test_invalid_utf8_body_415(client: TestClient) -> None:
    r = client.post("/api/search", content=b"\xff\xfe\xfa", headers={"content-type": "application/json"})
    assert r.status_code == 415


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"query"', b"null", b"42"])
def test_json_non_object_body_400(client: TestClient, payload: bytes) -> None:
    r = client.post("/api/search", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "body must be a JSON object of arguments"


def test_body_over_limit_413(client: TestClient, app_settings: tuple[Any, Settings]) -> None:
    _, settings = app_settings
    limit = settings.server.max_body_bytes
    r = client.post("/api/search", json={"query": "z" * (limit + 10)})
    assert r.status_code == 413
    assert str(limit) in r.json()["error"]


def test_chunked_body_over_limit_413(client: TestClient, app_settings: tuple[Any, Settings]) -> None:
    _, settings = app_settings
    limit = settings.server.max_body_bytes

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 100 + 5):
            yield b" " * 100

    r = client.post("/api/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413


def test_deeply_nested_json_is_a_client_error(app_settings: tuple[Any, Settings]) -> None:
    app, settings = app_settings
    payload = b"[" * (settings.server.max_body_bytes - 1)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/search", content=payload, headers={"content-type": "application/json"})
    assert r.status_code in (400, 415)


# --- result cap -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capped_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("capped")
    articles = {
        f"post-{i:02d}.md": f"---\ntitle: Post {i}\ndate: 2020-01-{i + 1:02d}\n---\n\nCommon words in post {i}.\n"
        for i in range(25)
    }
    corpus = write_corpus(tmp / "corpus", articles)
    settings = make_settings(tmp, corpus, search={"max_results": 3, "default_results": 2})
    _, app = build_http_app(build_components(settings, BlogService(settings)))
    with TestClient(app) as c:
        yield c


def test_n_capped_to_max_results(capped_client: TestClient) -> None:
    assert slugs(capped_client.post("/api/search", json={"n": 1000})) == ["post-24", "post-23", "post-22"]
    assert len(slugs(capped_client.post("/api/search", json={"query": "common words", "n": 50}))) == 3
    assert len(slugs(capped_client.get("/api/search", params={"n": "2"}))) == 2


def test_huge_n_capped_not_rejected(capped_client: TestClient) -> None:
    r = capped_client.post("/api/search", json={"n": 10_000})
    assert r.status_code == 200
    assert r.json()["count"] == 3


def test_default_results_setting_used_when_n_omitted(capped_client: TestClient) -> None:
    assert len(slugs(capped_client.post("/api/search", json={}))) == 2


# --- /api/article -----------------------------------------------------------------------------


def test_article_full(client: TestClient) -> None:
    r = client.post("/api/article", json={"slug": "alpha"})
    assert r.status_code == 200
    data = r.json()
    assert data["title"] == "Alpha post"
    assert data["url"] == "/alpha/"
    assert data["tags"] == ["gpu", "sglang"]
    assert data["date"].startswith("2024-01-01")
    assert data["section"] is None
    assert data["offset"] == 0
    assert data["next_offset"] is None
    assert data["total_chars"] == len(data["content"])
    assert data["content"].startswith("Opening paragraph")
    assert [s["anchor"] for s in data["sections"]] == ["tuning-the-scheduler", "memory"]
    assert data["front_matter"]["title"] == "Alpha post"


def test_article_unknown_slug_404_with_suggestion(client: TestClient) -> None:
    r = client.post("/api/article", json={"slug": "alpah"})
    assert r.status_code == 404
    data = r.json()
    assert "did you mean" in data["error"]
    assert data["details"] == ["alpha"]


def test_article_unknown_slug_without_close_match(client: TestClient) -> None:
    r = client.get("/api/article", params={"slug": "qqqqqqqqqq"})
    assert r.status_code == 404
    assert "did you mean" not in r.json()["error"]
    assert r.json()["details"] == []


def test_article_missing_slug_400(client: TestClient) -> None:
    r = client.post("/api/article", json={})
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "slug"


def test_article_section_only(client: TestClient) -> None:
    r = client.post("/api/article", json={"slug": "alpha", "section": "tuning-the-scheduler"})
    assert r.status_code == 200
    data = r.json()
    assert data["section"] == "tuning-the-scheduler"
    assert data["url"] == "/alpha/#tuning-the-scheduler"
    assert data["content"].startswith("## Tuning the scheduler")
    assert "zebrafish scheduler" in data["content"]
    assert "## Memory" not in data["content"]
    assert "Opening paragraph" not in data["content"]


def test_article_section_by_heading_text_and_hash(client: TestClient) -> None:
    by_text = client.get("/api/article", params={"slug": "alpha", "section": "Memory"}).json()
    by_hash = client.get("/api/article", params={"slug": "alpha", "section": "#memory"}).json()
    assert by_text["section"] == by_hash["section"] == "memory"
    assert by_text["content"] == by_hash["content"]
    assert by_text["content"].startswith("## Memory")
    assert "zebrafish" not in by_text["content"]


def test_article_unknown_section_400(client: TestClient) -> None:
    r = client.post("/api/article", json={"slug": "alpha", "section": "nope"})
    assert r.status_code == 400
    assert "tuning-the-scheduler" in r.json()["error"]


def test_article_offset_past_end_400(client: TestClient) -> None:
    r = client.post("/api/article", json={"slug": "beta", "offset": 100_000})
    assert r.status_code == 400
    assert "past the end" in r.json()["error"]


def test_article_paging_reassembles_body(client: TestClient) -> None:
    full = client.post("/api/article", json={"slug": "alpha"}).json()
    total = full["total_chars"]
    assert total > 1000
    pages, offset = [], 0
    while offset is not None:
        page = client.post("/api/article", json={"slug": "alpha", "offset": offset, "max_chars": 300}).json()
        assert page["offset"] == offset
        assert page["total_chars"] == total
        assert len(page["content"]) <= 300
        pages.append(page["content"])
        offset = page["next_offset"]
        assert len(pages) < 50
    assert "".join(pages) == full["content"]
    assert len(pages) == -(-total // 300)


def test_article_paging_within_section(client: TestClient) -> None:
    whole = client.post("/api/article", json={"slug": "alpha", "section": "memory"}).json()
    first = client.post("/api/article", json={"slug": "alpha", "section": "memory", "max_chars": 500}).json()
    assert first["total_chars"] == whole["total_chars"]
    assert first["next_offset"] == 500
    rest = client.post(
        "/api/article", json={"slug": "alpha", "section": "memory", "offset": 500, "max_chars": 200_000}
    ).json()
    assert first["content"] + rest["content"] == whole["content"]
    assert rest["next_offset"] is None


def test_article_max_chars_too_small_400(client: TestClient) -> None:
    r = client.post("/api/article", json={"slug": "alpha", "max_chars": 10})
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "max_chars"


# --- /api/tags --------------------------------------------------------------------------------


def test_tags_count_desc_default(client: TestClient) -> None:
    r = client.get("/api/tags")
    assert r.status_code == 200
    data = r.json()
    assert data["sort"] == "count_desc"
    assert data["tags"] == [
        {"tag": "gpu", "count": 3},
        {"tag": "comfyui", "count": 1},
        {"tag": "lightning", "count": 1},
        {"tag": "sglang", "count": 1},
    ]


def test_tags_alpha(client: TestClient) -> None:
    r = client.post("/api/tags", json={"sort": "alpha"})
    assert r.status_code == 200
    assert [t["tag"] for t in r.json()["tags"]] == ["comfyui", "gpu", "lightning", "sglang"]


def test_tags_bad_sort_400(client: TestClient) -> None:
    r = client.get("/api/tags", params={"sort": "sideways"})
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "sort"


# --- Host / DNS-rebinding guard ---------------------------------------------------------------


def test_foreign_host_rejected_when_bound_to_loopback(app_settings: tuple[Any, Settings]) -> None:
    app, settings = app_settings
    assert settings.server.host == "127.0.0.1"
    # scope["server"] is taken from base_url, as uvicorn bound to 127.0.0.1 would report it
    with TestClient(app, base_url=f"http://127.0.0.1:{settings.server.port}") as c:
        evil = c.post("/mcp", json={}, headers={"host": "evil.example.com"})
        assert evil.status_code == 421
        assert c.get("/health", headers={"host": "evil.example.com"}).status_code == 421
        assert c.get("/api/tags", headers={"host": "evil.example.com:8002"}).status_code == 421
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"host": "localhost:8002"}).status_code == 200
        ok = c.post("/mcp", json={}, headers={"accept": "application/json, text/event-stream"})
        assert ok.status_code != 421


def test_configured_allowed_hosts_enforced(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"beta.md": ARTICLES["beta.md"]})
    settings = make_settings(tmp_path, corpus, server={"allowed_hosts": ["blog.example"]})
    _, app = build_http_app(build_components(settings, BlogService(settings)))
    with TestClient(app) as c:  # scope server is "testserver": the explicit list still applies
        assert c.get("/health", headers={"host": "evil.example.com"}).status_code == 421
        assert c.post("/mcp", json={}, headers={"host": "evil.example.com"}).status_code == 421
        assert c.get("/health", headers={"host": "blog.example"}).status_code == 200
        assert c.get("/health", headers={"host": "127.0.0.1:8002"}).status_code == 200
