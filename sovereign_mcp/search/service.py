"""The live blog index: serves one :class:`SearchIndex` snapshot while a newer one is built.

Readers take :attr:`BlogService.index` (a plain attribute read, atomic under the GIL) and keep using
that snapshot for the whole request; :meth:`BlogService.reload` builds a replacement off to the
side and swaps the reference only when it is complete, so a reload never blocks or breaks queries
and a failed rebuild keeps the old index serving. Changes are picked up by a watchfiles watcher
thread (``corpus.watch``), by ``SIGHUP`` (see ``sovereign-mcp index --signal``), or by calling
:meth:`reload`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.loader import resolve_roots
from sovereign_mcp.search.index import SearchIndex
from sovereign_mcp.search.store import open_index

log = logging.getLogger(__name__)


class BlogService:
    """Owns the current index snapshot and its reloading."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        started = time.perf_counter()
        self.index, self.from_cache = open_index(settings)
        self.load_seconds = time.perf_counter() - started
        self.loaded_at = datetime.now(UTC)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.reloads = 0
        self.last_error: str | None = None

    def reload(self) -> bool:
        """Rebuild (or load from cache) the index for the current corpus state and swap it in.

        Returns ``True`` when a new snapshot was installed; on failure the old one keeps serving
        and :attr:`last_error` says why. Concurrent calls are serialised.
        """
        with self._reload_lock:
            try:
                index, from_cache = open_index(self.settings)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("index reload failed, keeping the previous index: %s", self.last_error)
                return False
            self.index, self.from_cache = index, from_cache
            self.loaded_at = datetime.now(UTC)
            self.reloads += 1
            self.last_error = None
            log.info(
                "index reloaded: %d articles, %d passages", len(index.articles), len(index.passages)
            )
            return True

    def start_watching(self) -> None:
        """Watch the corpus folders in a daemon thread and reload after changes settle."""
        if self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch, name="corpus-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        from watchfiles import watch

        roots = [str(r) for r in resolve_roots(self.settings.corpus.paths)]
        try:
            for _changes in watch(*roots, stop_event=self._stop, debounce=800, step=100):
                self.reload()
        except Exception as exc:  # watching is a convenience; serving goes on without it
            log.warning("corpus watcher stopped: %s", exc)

    def close(self) -> None:
        """Stop the watcher thread (if any)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    def health(self) -> dict[str, object]:
        """Figures for ``GET /health``: counts, index age in seconds, warnings, last reload error."""
        index: SearchIndex = self.index
        return {
            "articles": len(index.articles),
            "passages": len(index.passages),
            "index_built_at": index.built_at.isoformat(),
            "index_age_seconds": round((datetime.now(UTC) - index.built_at).total_seconds(), 1),
            "index_from_cache": self.from_cache,
            "corpus_roots": index.corpus.roots,
            "corpus_warnings": [str(w) for w in index.corpus.warnings],
            "dense_rerank": {"model": index.embedding_model, "passages_embedded": len(index.vectors),
                             "active": index.embedder is not None},
            "reload_error": self.last_error,
        }
