"""The pipeline worker lock: exactly one worker runs the job queue at a time.

* SQLite job store: ``fcntl.flock`` on ``<data_dir>/pipeline/worker.lock``, shared by every process on this
  host that uses the same data dir; the kernel releases it when the holder dies.
* PostgreSQL job store: a session-level advisory lock (``pg_try_advisory_lock``, PostgreSQL manual
  "Advisory Locks", section 13.3.5) held on a dedicated connection, shared by every process and host using
  the database; the server releases it when the holder's connection ends (the process died or the network
  dropped). A holder re-checks its connection before each scheduling round and stands down if it is gone,
  since another worker may then have taken the lock.

Only the holder may put steps an earlier holder left ``running`` back to ``pending``
(:meth:`~sovereign_mcp.pipeline.store.JobStore.recover`). A PostgreSQL holder can lose its lock without
noticing at once (its session dropped mid-step) while another worker takes over; the store's worker epoch
fences it: its results for the recovered step are dropped (see :mod:`sovereign_mcp.pipeline.store`), and it
gives the step up at its next lock check.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol

from sovereign_mcp.db import Database
from sovereign_mcp.flock import try_lock, unlock

log = logging.getLogger(__name__)

ADVISORY_KEY = 0x50564D43504A  # any constant bigint naming "the sovereign-mcp pipeline worker"


class WorkerLock(Protocol):
    """Held by at most one worker of a queue."""

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (as of the last :meth:`acquire`)."""
        ...

    def acquire(self) -> bool:
        """Take the lock without waiting, or confirm it is still held; ``True`` when held now."""
        ...

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        ...


class FileWorkerLock:
    """``flock`` on ``path``; the file records the holder's pid for operators."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is None:
            self._fd = try_lock(self.path, "runs the pipeline queue")
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            unlock(fd)


class PostgresWorkerLock:
    """``pg_try_advisory_lock(ADVISORY_KEY)`` on a connection of its own (autocommit, outside the pool)."""

    def __init__(self, db: Database, key: int = ADVISORY_KEY) -> None:
        self.db = db
        self.key = key
        self._conn: Any = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._held = False
                self._conn = psycopg.connect(self.db.url, autocommit=True, connect_timeout=10)
            if self._held:
                self._conn.execute("SELECT 1")  # the lock lives as long as this connection
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
            self._held = bool(row and row[0])
            return self._held
        except psycopg.Error as exc:
            if self._held:
                log.warning("pipeline worker: lost the PostgreSQL worker lock (%s); standing by", exc)
            self.release()
            return False

    def release(self) -> None:
        conn, held, self._conn, self._held = self._conn, self._held, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                if held:  # at once; closing alone frees it too, but only once the server notices
                    conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            with contextlib.suppress(Exception):
                conn.close()  # ends the session: the server releases the advisory lock
