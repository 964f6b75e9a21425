"""Facts of the published corpus for a one-shot gate (``sovereign-mcp gate``), cached per corpus state.

The server takes its facts from the live blog index; a command that checks one file does not need the
index, only the claim strings of the published articles. They are kept in
``<data_dir>/facts/<roots-hash>-<corpus-hash>.pkl``, keyed like the index cache
(:mod:`sovereign_mcp.search.cache_key`: settings, and per file its path, modification time and bytes),
so an unchanged corpus costs one hashing pass and one small unpickle, and the command never imports the
search engine or NumPy. A future-dated post that falls due, a changed file or a corrupt cache file
rebuilds the facts from the Markdown (:func:`sovereign_mcp.corpus.loader.load_corpus`). The file is a
pickle private to the operator's data directory, like the index cache.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.loader import load_corpus, resolve_roots
from sovereign_mcp.gate.facts import KnownFacts
from sovereign_mcp.gate.service import article_facts
from sovereign_mcp.search.cache_key import (
    CorpusHasher,
    hash_corpus,
    hashing_reader,
    load_pickle,
    roots_key,
    write_atomically,
)

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class _Cached:
    facts: KnownFacts
    next_publish_at: datetime | None  # the earliest future-dated post: the facts expire then


def facts_dir(settings: Settings) -> Path:
    """Where the cached facts of every corpus state live: ``<data_dir>/facts``."""
    return settings.data_dir / "facts"


def published_facts(settings: Settings) -> KnownFacts:
    """Claim strings of the articles published now under ``settings.corpus.paths`` (cached; see module).

    A cache that cannot be written (read-only data dir) is logged and skipped.

    Raises:
        FileNotFoundError: a corpus root does not exist.
    """
    return published_facts_until(settings)[0]


def published_facts_until(settings: Settings) -> tuple[KnownFacts, datetime | None]:
    """:func:`published_facts` and when they expire: the publication time of the earliest future-dated
    post (``None``: never, until a file changes).

    Raises:
        FileNotFoundError: a corpus root does not exist.
    """
    roots = resolve_roots(settings.corpus.paths)
    now = datetime.now(UTC)
    folder = facts_dir(settings)
    prefix = f"{roots_key(roots)}-"
    cached = _load(folder / f"{prefix}{hash_corpus(roots, settings)}.pkl", now)
    if cached is not None:
        return cached.facts, cached.next_publish_at
    hasher = CorpusHasher(settings)
    corpus = load_corpus(roots, base_url=settings.corpus.base_url, extensions=settings.corpus.extensions,
                         min_passage_chars=settings.search.min_passage_chars, now=now,
                         files=hashing_reader(roots, settings, hasher))
    facts = article_facts(corpus.articles)
    path = folder / f"{prefix}{hasher.hexdigest()}.pkl"
    try:
        _save(path, _Cached(facts, corpus.next_publish_at), prefix)
    except OSError as exc:
        log.warning("could not write gate facts cache %s: %s", path, exc)
    return facts, corpus.next_publish_at


def _load(path: Path, now: datetime) -> _Cached | None:
    cached = load_pickle(path, "gate facts cache", log)
    if not isinstance(cached, _Cached):
        return None
    if cached.next_publish_at is not None and cached.next_publish_at <= now:
        return None
    return cached


def _save(path: Path, cached: _Cached, prefix: str) -> None:
    """Write ``cached`` to ``path`` atomically; older states of the same roots are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda fh: pickle.dump(cached, fh, protocol=pickle.HIGHEST_PROTOCOL))
    for old in path.parent.glob(f"{prefix}*.pkl"):
        if old != path:
            old.unlink(missing_ok=True)
