"""Persisting a built :class:`SearchIndex` on disk, keyed by a hash of the corpus.

The key is SHA-256 over the index format version, the settings that shape the index (ranking
knobs, base URL, extensions) and, per file, its root, relative path, modification time (nanoseconds)
and bytes. A restart with an unchanged corpus therefore unpickles the index instead of re-parsing
and re-fitting; checking the key reads the files one at a time without keeping them, and a miss
reads them again to build. Index files live in ``<data_dir>/index/<roots-hash>-<corpus-hash>.pkl``; older files
for the same roots are removed once a new one is written. With a dense stage, the passage vectors are a
``.npy`` beside the pickle (same name, ``.vectors.npy``), mapped read-only when the index is loaded.
Files are written to a temporary name and renamed, so a crash never leaves a half-written index.
The cache is private to the operator's data
directory; it is a pickle, so never point ``data_dir`` at a folder others can write to.
"""

from __future__ import annotations

import gc
import logging
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.loader import load_corpus, resolve_roots
from sovereign_mcp.search.cache_key import (
    CorpusHasher,
    hash_corpus,
    hashing_reader,
    index_path,
    load_pickle,
    write_atomically,
)
from sovereign_mcp.search.embeddings import Embedder, EmbeddingError, embedder_for
from sovereign_mcp.search.index import SearchIndex

log = logging.getLogger(__name__)

def _load_cached(path: Path, now: datetime) -> SearchIndex | None:
    # The index is a few large arrays and many small objects that hold no reference cycles: pausing
    # the cyclic garbage collector while unpickling saves its repeated passes over the growing heap.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        index = load_pickle(path, "index cache", log)
    finally:
        if gc_was_enabled:
            gc.enable()
    if not isinstance(index, SearchIndex):
        return None
    if index.embedding_model is not None:
        try:  # mapped read-only: a query touches only its candidates' rows
            index.vectors = np.load(vectors_path(path), mmap_mode="r")
        except (OSError, ValueError) as exc:
            log.warning("index vectors %s unusable (%s); rebuilding", vectors_path(path), exc)
            return None
        if index.vectors.shape[0] != len(index.vector_scale):
            log.warning("index vectors %s do not match the index; rebuilding", vectors_path(path))
            return None
    due = index.corpus.next_publish_at
    if due is not None and due <= now:
        log.info("a future-dated post is now due (%s); rebuilding", due.isoformat())
        return None
    return index


def vectors_path(path: Path) -> Path:
    """The ``.npy`` file beside index cache ``path`` that holds its int8 passage vectors."""
    return path.with_suffix(".vectors.npy")


def _save(path: Path, index: SearchIndex) -> None:
    """Write the index (pickle) and, with a dense stage, its vectors (``.npy``, written first: an index file
    whose vectors are missing is rebuilt) atomically; older caches of the same roots are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = index.vectors
    if index.embedding_model is not None:
        write_atomically(vectors_path(path), lambda fh: np.save(fh, np.ascontiguousarray(vectors)))
    index.vectors = vectors[:0]  # the pickle carries no vectors
    try:
        write_atomically(path, lambda fh: pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        index.vectors = vectors
    prefix = path.name.split("-", 1)[0] + "-"
    keep = {path, vectors_path(path)}
    for old in [*path.parent.glob(f"{prefix}*.pkl"), *path.parent.glob(f"{prefix}*.vectors.npy")]:
        if old not in keep:
            old.unlink(missing_ok=True)


def _embedder(settings: Settings) -> Embedder | None:
    """The dense backend of ``settings.search``; ``None`` (logged) when it is off or cannot be loaded."""
    try:
        return embedder_for(settings.search)
    except EmbeddingError as exc:
        log.error("dense re-rank off: %s", exc)
        return None


def _progress(done: int, total: int) -> None:
    log.info("embedding passages: %d / %d", done, total)


def open_index(settings: Settings, *, use_cache: bool = True) -> tuple[SearchIndex, bool]:
    """Load the index for ``settings.corpus.paths`` from the cache, or build and cache it.

    Returns ``(index, from_cache)``. A cache that cannot be written (read-only data dir) only logs a
    warning: the server still serves the freshly built index.

    Raises:
        FileNotFoundError: a corpus root does not exist.
    """
    roots = resolve_roots(settings.corpus.paths)
    now = datetime.now(UTC)
    embedder = _embedder(settings)
    if use_cache:
        cached = _load_cached(index_path(settings, roots, hash_corpus(roots, settings)), now)
        if cached is not None:
            cached.attach_embedder(embedder)
            return cached, True
    hasher = CorpusHasher(settings)
    corpus = load_corpus(
        roots,
        base_url=settings.corpus.base_url,
        extensions=settings.corpus.extensions,
        min_passage_chars=settings.search.min_passage_chars,
        now=now,
        files=hashing_reader(roots, settings, hasher),
    )
    try:
        index = SearchIndex(corpus, settings.search, built_at=now, embedder=embedder, progress=_progress)
    except EmbeddingError as exc:  # lexical search still works; not cached, so the next start tries again
        log.error("embedding the passages failed, serving lexical search only: %s", exc)
        return SearchIndex(corpus, settings.search, built_at=now), False
    path = index_path(settings, roots, hasher.hexdigest())
    try:
        _save(path, index)
    except OSError as exc:
        log.warning("could not write index cache %s: %s", path, exc)
    return index, False
