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

import contextlib
import gc
import hashlib
import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.loader import load_corpus, read_corpus_files, resolve_roots
from sovereign_mcp.search.embeddings import Embedder, EmbeddingError, embedder_for
from sovereign_mcp.search.index import SearchIndex

log = logging.getLogger(__name__)

FORMAT_VERSION = 4  # 2: compact sections/passages, FieldIndex without SciPy, analyzer with its stop words;
#                    3: whole-article field, passage vectors; 4: Lucene stop words, vectors in a mapped .npy


def _settings_fingerprint(settings: Settings) -> bytes:
    parts = [
        f"v{FORMAT_VERSION}",
        settings.search.model_dump_json(),
        str(settings.corpus.base_url),
        ",".join(settings.corpus.extensions),
    ]
    return "\n".join(parts).encode()


def roots_key(roots: list[Path]) -> str:
    """Short hash naming a set of roots (the prefix of their index files)."""
    return hashlib.sha256("\n".join(map(str, roots)).encode()).hexdigest()[:12]


class _CorpusHasher:
    """SHA-256 over the settings fingerprint and, per corpus file, its root, relative path,
    modification time (nanoseconds) and bytes (or an "unreadable" marker)."""

    def __init__(self, settings: Settings) -> None:
        self._digest = hashlib.sha256(_settings_fingerprint(settings))

    def add(self, root: Path, path: Path, raw: bytes | OSError) -> None:
        digest = self._digest
        digest.update(f"\0{root}\0{path.relative_to(root)}\0".encode())
        if isinstance(raw, OSError):
            digest.update(b"<unreadable>")
            return
        with contextlib.suppress(OSError):
            digest.update(str(path.stat().st_mtime_ns).encode())
        digest.update(hashlib.sha256(raw).digest())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:24]


def hash_corpus(roots: list[Path], settings: Settings) -> str:
    """The cache key of the corpus as it is on disk now. Files are read one at a time and not kept:
    on a cache hit their bytes are never needed, and a miss reads them again (see :func:`open_index`)."""
    hasher = _CorpusHasher(settings)
    for root, path, raw in read_corpus_files(roots, settings.corpus.extensions):
        hasher.add(root, path, raw)
    return hasher.hexdigest()


def _hashing_reader(roots: list[Path], settings: Settings, hasher: _CorpusHasher):
    """:func:`read_corpus_files`, hashing each file as it is handed on (so the key of a freshly built
    index matches the bytes it was built from, even if a file changed since :func:`hash_corpus`)."""
    for root, path, raw in read_corpus_files(roots, settings.corpus.extensions):
        hasher.add(root, path, raw)
        yield root, path, raw


def index_path(settings: Settings, roots: list[Path], corpus_hash: str) -> Path:
    """Where the index of this corpus state is (or would be) stored."""
    return settings.index_dir / f"{roots_key(roots)}-{corpus_hash}.pkl"


def _load_cached(path: Path, now: datetime) -> SearchIndex | None:
    # The index is a few large arrays and many small objects that hold no reference cycles: pausing
    # the cyclic garbage collector while unpickling saves its repeated passes over the growing heap.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with path.open("rb") as fh:
            index = pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt or incompatible cache is rebuilt, never fatal
        log.warning("index cache %s unusable (%s); rebuilding", path, exc)
        return None
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


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(path: Path, index: SearchIndex) -> None:
    """Write the index (pickle) and, with a dense stage, its vectors (``.npy``, written first: an index file
    whose vectors are missing is rebuilt) atomically; older caches of the same roots are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = index.vectors
    if index.embedding_model is not None:
        _write_atomically(vectors_path(path), lambda fh: np.save(fh, np.ascontiguousarray(vectors)))
    index.vectors = vectors[:0]  # the pickle carries no vectors
    try:
        _write_atomically(path, lambda fh: pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL))
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
    hasher = _CorpusHasher(settings)
    corpus = load_corpus(
        roots,
        base_url=settings.corpus.base_url,
        extensions=settings.corpus.extensions,
        min_passage_chars=settings.search.min_passage_chars,
        now=now,
        files=_hashing_reader(roots, settings, hasher),
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
