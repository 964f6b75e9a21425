"""One SQL layer for the stores that several threads and processes share (L402 tokens, operator tokens,
pipeline jobs): SQLite in WAL mode by default, PostgreSQL (psycopg 3) when a ``postgresql://`` URL is
configured (``Settings.database_url``).

SQL is written once with ``?`` placeholders; on PostgreSQL they become ``%s``. Writers on SQLite take
the write lock up front (``BEGIN IMMEDIATE``), so two writers never deadlock upgrading a read lock.
Each thread has its own connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def is_postgres(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return bool(url and url.startswith(POSTGRES_SCHEMES))


class Cursor:
    """Runs ``?``-style SQL on either driver (psycopg uses ``%s``); the subset of DB-API the stores use."""

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self._cursor = cursor
        self.postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self.postgres:
            sql = sql.replace("?", "%s")
        self._cursor.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.postgres:
            sql = sql.replace("?", "%s")
        self._cursor.executemany(sql, list(rows))

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class Database:
    """A SQLite file (``path``) or a PostgreSQL database (``url``), one connection per thread.

    Args:
        path: SQLite file, created with its folder; used when ``url`` is not a PostgreSQL URL.
        url: ``postgresql://user:password@host:port/dbname``; needs the ``psycopg`` package.
        busy_timeout: how long a SQLite writer waits for the lock, seconds.

    Raises:
        ValueError: neither a SQLite path nor a PostgreSQL URL.
    """

    def __init__(self, path: Path | None = None, url: str | None = None, busy_timeout: float = 30.0) -> None:
        self.postgres = is_postgres(url)
        self.url = url if self.postgres else None
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        if not self.postgres:
            if path is None:
                raise ValueError("a SQLite path is needed when no PostgreSQL database_url is given")
            path.parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=False)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def tx(self, write: bool = True) -> Iterator[Cursor]:
        """A transaction on this thread's connection: committed on exit, rolled back on any exception."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        cur = conn.cursor()
        try:
            if not self.postgres:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield Cursor(cur, self.postgres)
            conn.commit() if self.postgres else cur.execute("COMMIT")
        except BaseException:
            try:
                conn.rollback() if self.postgres else cur.execute("ROLLBACK")
            finally:
                if self.postgres and conn.closed:  # a dropped server connection: reconnect next time
                    self._local.conn = None
            raise
        finally:
            cur.close()

    def create(self, schema: Iterable[str]) -> None:
        """Run ``CREATE ... IF NOT EXISTS`` statements (portable SQL: TEXT, INTEGER, BIGINT, DOUBLE PRECISION)."""
        with self.tx() as cur:
            for statement in schema:
                cur.execute(statement)

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
