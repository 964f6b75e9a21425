"""Facts of the published corpus for ``sovereign-mcp gate``: built from the Markdown once, then read from
``<data_dir>/facts`` until a corpus file changes, a cache file is corrupt or a future-dated post falls due."""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sovereign_mcp.config import Settings
from sovereign_mcp.gate import published
from sovereign_mcp.gate.facts import KnownFacts
from sovereign_mcp.gate.published import facts_dir, published_facts
from tests.helpers import isolate


def _post(root: Path, slug: str, title: str, date: str = "2025-01-01") -> None:
    (root / f"{slug}.md").write_text(f"---\ntitle: {title}\ndate: {date}\n---\n\nSee /etc/sglang/{slug}.conf.\n",
                                     encoding="utf-8")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    isolate(monkeypatch, tmp_path, chdir=False)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _post(corpus, "first", "The First Post")
    return Settings(corpus={"paths": [corpus]}, data_dir=tmp_path / "data")


def _cache_files(settings: Settings) -> list[Path]:
    return sorted(facts_dir(settings).glob("*.pkl"))


def test_facts_name_the_published_articles(settings: Settings) -> None:
    facts = published_facts(settings)
    assert facts.knows("title", "The First Post")
    assert facts.knows("path", "/etc/sglang/first.conf")
    assert facts.knows("path", "/first/")  # the article's own URL path
    assert not facts.knows("title", "A Post Nobody Wrote")
    assert len(_cache_files(settings)) == 1


def test_an_unchanged_corpus_is_read_from_the_cache(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    first = published_facts(settings)

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the corpus was parsed again")

    monkeypatch.setattr(published, "load_corpus", no_parsing)
    assert published_facts(settings).by_kind == first.by_kind


def test_a_changed_corpus_rebuilds_and_replaces_the_cache(settings: Settings) -> None:
    published_facts(settings)
    _post(settings.corpus.paths[0], "second", "The Second Post")
    facts = published_facts(settings)
    assert facts.knows("title", "The Second Post") and facts.knows("title", "The First Post")
    assert len(_cache_files(settings)) == 1  # the older state's file is gone


def test_a_corrupt_cache_is_rebuilt(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    published_facts(settings)
    (path,) = _cache_files(settings)
    path.write_bytes(b"not a pickle")
    with caplog.at_level(logging.WARNING, logger="sovereign_mcp.gate.published"):
        facts = published_facts(settings)
    assert facts.knows("title", "The First Post")
    assert "unusable" in caplog.text
    assert pickle.loads(path.read_bytes()).facts.by_kind == facts.by_kind


def test_a_post_that_falls_due_expires_the_cache(settings: Settings) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    _post(settings.corpus.paths[0], "later", "A Post For Tomorrow", date=tomorrow)
    facts = published_facts(settings)
    assert not facts.knows("title", "A Post For Tomorrow")  # not published yet
    (path,) = _cache_files(settings)
    cached = pickle.loads(path.read_bytes())
    assert cached.next_publish_at is not None
    # Let the cached state's publication time pass, with a marker to see whether the cache is used.
    marker = KnownFacts().union(cached.facts)
    marker.by_kind["title"].add("marker")
    path.write_bytes(pickle.dumps(replace(cached, facts=marker, next_publish_at=datetime.now(UTC) - timedelta(1))))
    assert not published_facts(settings).knows("title", "marker")


def test_an_unwritable_data_dir_still_gives_facts(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    settings.data_dir.mkdir()
    (settings.data_dir / "facts").write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="sovereign_mcp.gate.published"):
        facts = published_facts(settings)
    assert facts.knows("title", "The First Post")
    assert "could not write" in caplog.text


def test_a_missing_corpus_root_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, tmp_path, chdir=False)
    with pytest.raises(FileNotFoundError):
        published_facts(Settings(corpus={"paths": [tmp_path / "nowhere"]}, data_dir=tmp_path / "data"))
