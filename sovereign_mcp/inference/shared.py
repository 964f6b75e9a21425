"""Open circuits shared by every process on one data dir (the server's workers and ``pipeline run --wait``).

Each process keeps its own :class:`~sovereign_mcp.inference.breaker.CircuitBreaker`; when one opens (a
provider failed ``failure_threshold`` times, or timed out once) the process also writes ``open until <unix s>``
and the reason here, and every process skips that provider until then instead of paying the same timeouts
again. A success anywhere clears it. SQLite from the standard library (WAL, one small table,
``<data_dir>/inference-breakers.sqlite3``); a file that cannot be used only logs: the breaker then works per
process, as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = ("CREATE TABLE IF NOT EXISTS open_circuits (provider TEXT PRIMARY KEY, open_until REAL NOT NULL, "
          "reason TEXT NOT NULL, opened_by INTEGER NOT NULL)")


class SharedBreakers:
    """``provider name -> (open until, reason)`` in a SQLite file; ``clock`` is unix seconds."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            log.warning("shared inference breakers off (%s: %s); each process keeps its own", path, exc)

    def open_until(self, provider: str) -> tuple[float, str] | None:
        """``(unix s, reason)`` while another (or this) process holds ``provider``'s circuit open, else ``None``."""
        row = self._run("SELECT open_until, reason FROM open_circuits WHERE provider = ?", (provider,))
        if row is None or row[0] <= self._clock():
            return None
        return float(row[0]), str(row[1])

    def trip(self, provider: str, seconds: float, reason: str) -> None:
        """Hold ``provider`` open for ``seconds`` from now, for every process."""
        self._run("INSERT INTO open_circuits (provider, open_until, reason, opened_by) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (provider) DO UPDATE SET open_until = excluded.open_until, reason = excluded.reason, "
                  "opened_by = excluded.opened_by", (provider, self._clock() + seconds, reason, _pid()))

    def clear(self, provider: str) -> None:
        """``provider`` answered: nobody needs to skip it."""
        self._run("DELETE FROM open_circuits WHERE provider = ?", (provider,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _run(self, sql: str, args: tuple[object, ...]) -> tuple[object, ...] | None:
        with self._lock:
            if self._db is None:
                return None
            try:
                return self._db.execute(sql, args).fetchone()
            except sqlite3.Error as exc:
                log.warning("shared inference breakers: %s", exc)
                return None


def _pid() -> int:
    import os

    return os.getpid()
