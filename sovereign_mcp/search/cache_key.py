"""The cache key of a corpus as it is on disk (which index, and which gate facts, belong to it), and the
atomic write both caches use.

SHA-256 over the index format version, the settings that shape the index (ranking knobs, base URL,
extensions) and, per file, its root, relative path, modification time (nanoseconds) and bytes. Apart from
the settings models and the corpus file reader, this module imports only the standard library (no NumPy),
so ``sovereign-mcp gate`` can find its cached facts without loading the search engine. The atomic write and
the forgiving cache read are in :mod:`sovereign_mcp.files` (re-exported here).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.loader import read_corpus_files
from sovereign_mcp.files import load_pickle, write_atomically

FORMAT_VERSION = 4  # 2: compact sections/passages, FieldIndex without SciPy, analyzer with its stop words;
#                    3: whole-article field, passage vectors; 4: Lucene stop words, vectors in a mapped .npy


def settings_fingerprint(settings: Settings) -> bytes:
    """The settings that shape an index, as bytes: format version, ``[search]`` knobs, base URL, extensions."""
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


class CorpusHasher:
    """SHA-256 over the settings fingerprint and, per corpus file, its root, relative path,
    modification time (nanoseconds) and bytes (or an "unreadable" marker)."""

    def __init__(self, settings: Settings) -> None:
        self._digest = hashlib.sha256(settings_fingerprint(settings))

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
        """The key: the first 24 hex digits (96 bits) of the digest."""
        return self._digest.hexdigest()[:24]


def hash_corpus(roots: list[Path], settings: Settings) -> str:
    """The cache key of the corpus as it is on disk now. Files are read one at a time and not kept:
    on a cache hit their bytes are never needed, and a miss reads them again
    (:func:`sovereign_mcp.search.store.open_index`)."""
    hasher = CorpusHasher(settings)
    for root, path, raw in read_corpus_files(roots, settings.corpus.extensions):
        hasher.add(root, path, raw)
    return hasher.hexdigest()


def hashing_reader(roots: list[Path], settings: Settings, hasher: CorpusHasher
                   ) -> Iterator[tuple[Path, Path, bytes | OSError]]:
    """:func:`read_corpus_files`, hashing each file as it is handed on (so the key of a freshly built
    index matches the bytes it was built from, even if a file changed since :func:`hash_corpus`)."""
    for root, path, raw in read_corpus_files(roots, settings.corpus.extensions):
        hasher.add(root, path, raw)
        yield root, path, raw


def index_path(settings: Settings, roots: list[Path], corpus_hash: str) -> Path:
    """Where the index of this corpus state is (or would be) stored."""
    return settings.index_dir / f"{roots_key(roots)}-{corpus_hash}.pkl"


__all__ = ["CorpusHasher", "hash_corpus", "hashing_reader", "index_path", "load_pickle", "roots_key",
           "settings_fingerprint", "write_atomically"]
