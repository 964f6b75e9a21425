"""Ranking: best passage fused with the whole article, the citation, explain, budgets, freshness, dense re-rank."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from sovereign_mcp.config import EmbeddingServer, SearchSettings
from sovereign_mcp.corpus.loader import load_corpus
from sovereign_mcp.search import api
from sovereign_mcp.search.embeddings import EmbeddingError, OpenAIEmbedder, quantize
from sovereign_mcp.search.index import SearchIndex
from sovereign_mcp.search.store import open_index
from tests.fakes.fake_embeddings import FakeEmbeddings
from tests.helpers import isolated_settings

ARTICLES = {
    # the answer to "cooldown unified memory release" is spread over three sections
    "spread": ("Swapping GPU services", "2025-01-03", "lastmod: 2025-02-01\n", [
        ("Waiting", "The cooldown between two services lasts a full minute on this box, and the cooldown is not "
                    "optional."),
        ("One pool", "CPU and GPU draw from one unified pool, so two big models never fit together."),
        ("Late", "Freed memory comes back late: the release is slow after a stop."),
    ]),
    # one dense passage on a single query term
    "dense": ("Allocator notes", "2025-01-02", "", [
        ("Leak", "Memory memory memory: the memory allocator leaked memory until the release of version two."),
    ]),
    "filler-a": ("Fox", "2025-01-01", "", [("Story", "The quick brown fox jumps over sleepy dogs near the river.")]),
    "filler-b": ("Invoices", "2025-01-01", "", [("Hash", "Lightning invoices carry a payment hash and an expiry.")]),
    "filler-c": ("Kettle", "2025-01-01", "", [("Tea", "Boil the kettle, warm the pot, and wait four minutes.")]),
}
QUERY = "cooldown unified memory release"


def write_corpus(folder: Path, articles: dict = ARTICLES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for slug, (title, date, extra, sections) in articles.items():
        body = "\n\n".join(f"## {heading}\n\n{text}" for heading, text in sections)
        (folder / f"{slug}.md").write_text(f"---\ntitle: {title}\ndate: {date}\n{extra}tags: [notes]\n---\n\n{body}\n")
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


def index_of(corpus: Path, **settings) -> SearchIndex:
    search = SearchSettings(**settings)
    return SearchIndex(load_corpus([corpus], min_passage_chars=search.min_passage_chars), search, datetime.now(UTC))


def test_an_answer_spread_over_sections_beats_one_dense_passage(corpus):
    fused = [h.article.slug for h in index_of(corpus).search(QUERY, n=2)]
    assert fused == ["spread", "dense"]
    # the test discriminates: ranked by the best passage alone, the dense passage wins
    passage_only = [h.article.slug for h in index_of(corpus, passage_weight=1.0).search(QUERY, n=2)]
    assert passage_only == ["dense", "spread"]


def test_the_citation_is_the_articles_best_passage(corpus):
    hit = index_of(corpus).search("freed memory comes back slowly", n=1)[0]
    assert hit.article.slug == "spread" and hit.passage.anchor == "late"


def test_explain_gives_each_stage_score_and_rank(corpus):
    hits = index_of(corpus).search(QUERY, n=2, explain=True)
    spread, dense = (h.explain for h in hits)
    assert set(spread) == {"passage", "article", "lexical"}
    assert spread["passage"]["rank"] == 2 and dense["passage"]["rank"] == 1
    assert spread["article"]["rank"] == 1 and spread["lexical"]["rank"] == 1
    assert spread["article"]["score"] > dense["article"]["score"] > 0
    assert index_of(corpus).search(QUERY, n=1)[0].explain is None  # only when asked


def test_tag_filter_and_date_sort_still_apply(corpus):
    index = index_of(corpus)
    assert index.search(QUERY, tag="no-such-tag") == []
    assert [h.article.slug for h in index.search(QUERY, sort="date_desc")] == ["spread", "dense"]
    assert index.search("zzzz unknownword") == [] and index.search(QUERY, n=0) == []


def test_freshness_resource_and_titles_detail(corpus):
    index = index_of(corpus)
    out = api.search_blog(index, QUERY, n=2)
    top = out.results[0]
    assert top.updated == "2025-02-01" and out.results[1].updated is None
    assert top.indexed_at == out.indexed_at == index.built_at.isoformat()
    assert top.resource == "blog://articles/spread"
    assert top.passage and top.passage_chars == len(top.passage) and not top.passage_truncated
    titles = api.search_blog(index, QUERY, n=2, detail="titles")
    assert [h.slug for h in titles.results] == ["spread", "dense"]
    assert all(h.passage == "" and h.passage_chars > 0 and not h.passage_truncated for h in titles.results)


def test_max_chars_bounds_the_whole_answer_and_says_what_it_cut(tmp_path):
    long_text = " ".join(["Memory release notes for the unified pool cooldown."] * 60)
    articles = {f"long-{i}": (f"Long {i}", "2025-01-01", "", [("Part", long_text)]) for i in range(5)}
    index = index_of(write_corpus(tmp_path / "long", articles))
    full = api.search_blog(index, QUERY, n=5)
    assert len(full.model_dump_json()) > 5000 and not full.truncated and full.note is None
    for budget in (1000, 1500, 4000):
        cut = api.search_blog(index, QUERY, n=5, max_chars=budget)
        assert len(cut.model_dump_json()) <= budget, budget
        assert cut.truncated and cut.count == len(cut.results) >= 1
        assert cut.omitted == 5 - cut.count
        assert any(h.passage_truncated for h in cut.results)
        assert "max_chars" in cut.note and ("shortened" in cut.note or "left out" in cut.note)
    roomy = api.search_blog(index, QUERY, n=5, max_chars=100_000)
    assert not roomy.truncated and roomy.results == full.results


def embedding_settings(fake: FakeEmbeddings, **extra) -> SearchSettings:
    return SearchSettings(embeddings=EmbeddingServer(base_url=fake.base_url, model=fake.model), **extra)


SEMANTIC = {
    # the query says "automobile"; only the dense model knows that "car" means the same
    "engine-shop": ("Engines", "2025-01-01", "", [("Shop", "An engine shop rebuilds the engine of a boat engine.")]),
    "car-care": ("Car care", "2025-01-01", "", [("Car", "Keep the car engine clean; a car lasts longer.")]),
    "filler-a": ARTICLES["filler-a"],
    "filler-b": ARTICLES["filler-b"],
}


def test_dense_rerank_over_a_real_embedding_server(tmp_path):
    corpus = write_corpus(tmp_path / "semantic", SEMANTIC)
    with FakeEmbeddings(synonyms={"automobile": "car", "automobiles": "car"}) as fake:
        lexical = index_of(corpus)
        assert lexical.search("automobile engine", n=1)[0].article.slug == "engine-shop"
        settings = embedding_settings(fake, dense_weight=0.6)
        dense = SearchIndex(load_corpus([corpus], min_passage_chars=800), settings, datetime.now(UTC),
                            OpenAIEmbedder(settings.embeddings))
        hits = dense.search("automobile engine", n=2, explain=True)
        assert [h.article.slug for h in hits] == ["car-care", "engine-shop"]
        assert hits[0].explain["dense"]["rank"] == 1 and hits[0].explain["lexical"]["rank"] == 2
        assert dense.vectors.dtype == "int8" and dense.vectors.shape == (len(dense.passages), fake.dims)
        indexed = [r for r in fake.requests if r["path"] == "/v1/embeddings"]
        assert indexed[0]["body"]["model"] == "fake-embed" and isinstance(indexed[0]["body"]["input"], list)
        assert indexed[-1]["body"]["input"] == ["automobile engine"]  # the query, embedded at search time
    # the server is gone: search stays lexical, no error reaches the caller
    assert dense.search("automobile engine", n=1)[0].article.slug == "engine-shop"


def test_embedding_server_errors_are_typed(tmp_path):
    with FakeEmbeddings() as fake:
        wrong_model = OpenAIEmbedder(EmbeddingServer(base_url=fake.base_url, model="nope"))
        with pytest.raises(EmbeddingError, match="404"):
            wrong_model.embed(["x"])
        url = fake.base_url
    with pytest.raises(EmbeddingError, match="ConnectError"):
        OpenAIEmbedder(EmbeddingServer(base_url=url, model="fake-embed", timeout=2)).embed(["x"])


def test_quantized_vectors_keep_cosine_order():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(50, 64)).astype("float32")
    vectors /= (vectors**2).sum(axis=1, keepdims=True) ** 0.5
    codes, scale = quantize(vectors)
    approx = codes.astype("float32") * scale.astype("float32")[:, None]
    assert codes.dtype == "int8" and scale.dtype == "float16"
    assert float(abs(approx - vectors).max()) < 0.01
    query = vectors[3]
    assert int((approx @ query).argmax()) == 3


def test_cached_index_keeps_vectors_and_reattaches_the_embedder(tmp_path, caplog):
    corpus = write_corpus(tmp_path / "semantic", SEMANTIC)
    with FakeEmbeddings(synonyms={"automobile": "car"}) as fake:
        embeddings = {"base_url": fake.base_url, "model": fake.model}
        settings = isolated_settings(tmp_path, data_dir=tmp_path / "data", corpus={"paths": [corpus], "watch": False},
                                     search={"embeddings": embeddings, "dense_weight": 0.6})
        built, cached = open_index(settings)
        assert not cached and built.embedder is not None and len(built.vectors) == len(built.passages)
        calls = len(fake.requests)
        again, cached = open_index(settings)
        assert cached and again.embedder is not None
        assert len(fake.requests) == calls  # nothing embedded again on a cache hit
        assert again.search("automobile engine", n=1)[0].article.slug == "car-care"
        # the vectors live beside the pickle and are mapped, not read into memory
        assert isinstance(again.vectors, np.memmap) and not again.vectors.flags.writeable
        assert (again.vectors == built.vectors).all()
        (sidecar,) = (tmp_path / "data" / "index").glob("*.vectors.npy")
        sidecar.unlink()  # an index without its vectors is rebuilt, not served half-dense
        rebuilt, cached = open_index(settings)
        assert not cached and len(rebuilt.vectors) == len(rebuilt.passages) and sidecar.is_file()
        assert len(fake.requests) > calls
    # a server that is down while indexing: lexical index served, not cached, error logged
    (corpus / "extra.md").write_text("---\ntitle: Extra\ndate: 2025-01-05\n---\n\nA new note about a car.\n")
    with caplog.at_level(logging.ERROR):
        index, cached = open_index(settings)
    assert not cached and index.embedder is None and len(index.vectors) == 0
    assert "embedding the passages failed" in caplog.text
    assert index.search("car", n=1)[0].article.slug in {"car-care", "extra"}


def test_wordllama_loads_from_the_installed_wheel():
    pytest.importorskip("wordllama")
    from sovereign_mcp.search.embeddings import WordLlamaEmbedder

    model = WordLlamaEmbedder()
    vectors = model.embed(["restart the GPU server", "reboot the graphics card service", "a recipe for soup"])
    assert vectors.shape == (3, 256)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    # the same vectors as wordllama's own inference (mean of token rows, normalised), long texts included
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    from sovereign_mcp.search.embeddings import WORDLLAMA_TOKENIZER, _wordllama_files

    texts = ["restart the GPU server", "cuda graph capture failed " * 200, "sm_121a --mem-fraction-static 0.8"]
    reference = WordLlamaInference(model._table, Tokenizer.from_file(str(_wordllama_files() / WORDLLAMA_TOKENIZER)))
    assert np.allclose(model.embed(texts), reference.embed(texts, norm=True), atol=1e-5)
    assert not model.embed([""]).any()  # no tokens: a zero row, never NaN


def test_search_settings_reject_a_bad_embedding_server():
    with pytest.raises(ValueError, match="http"):
        EmbeddingServer(base_url="ftp://x", model="m")
    assert json.loads(SearchSettings().model_dump_json())["embeddings"] == "off"


def test_the_citation_prefers_the_passage_with_the_words_rare_in_its_article(tmp_path):
    # "kettle" names the topic (every passage, densely in the introduction) and is rare in the blog;
    # "window" locates the answer (one passage of this article) but is common elsewhere
    articles = {
        "kettle": ("The kettle", "2025-01-03", "", [
            ("Intro", "Kettle notes: the kettle, my kettle, every kettle. A kettle post about a kettle at home."),
            ("Where", "The kettle sits by the window, next to the bread bin, the radio, the fruit bowl, a jar of "
                      "pens and a pile of old letters from friends abroad."),
            ("Scale", "Scale builds up in the kettle; boiled vinegar removes it."),
        ]),
        **{f"house-{k}": (f"House {k}", "2025-01-01", "", [("Room", f"Room {k} has a window and a window seat.")])
           for k in range(4)},
    }
    index = index_of(write_corpus(tmp_path / "c", articles), min_passage_chars=0)
    query = "kettle window"
    hit = index.search(query, n=1)[0]
    assert hit.article.slug == "kettle" and hit.passage.anchor == "where"
    # the test discriminates: by plain passage BM25 the introduction scores highest
    from collections import Counter

    plain = np.zeros(len(index.passages), dtype="float32")
    index.body.accumulate(plain, Counter(index.analyzer(query)))
    assert [p.anchor for p in index.passages][int(plain.argmax())] == "intro"
