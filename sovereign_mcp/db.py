"""One SQL layer for the stores that several threads and processes share (L402 tokens, operator tokens,
pipeline jobs): SQLite in WAL mode by default, PostgreSQL (psycopg 3 with a psycopg_pool connection
pool) when a ``postgresql://`` URL is configured (``Settings.database_url``).

SQL is written once with ``?`` placeholders; on PostgreSQL they become ``%s`` (a ``?`` or ``%`` inside a
quoted literal, a quoted identifier or a ``--`` comment is left as text). Portable SQL only: ``INSERT ...
ON CONFLICT (...) DO UPDATE SET col = excluded.col`` instead of ``INSERT OR REPLACE``, ``CASE WHEN``
instead of summing booleans, ``BIGINT`` / ``DOUBLE PRECISION`` types, and :attr:`Database.serial_primary_key`
for an auto-numbered key.

Writers on SQLite take the write lock up front (``BEGIN IMMEDIATE``), so two writers never deadlock
upgrading a read lock; each thread (and each forked process) has its own SQLite connection. On
PostgreSQL every transaction borrows a pooled connection; one that the server dropped (a restart, an
idle timeout) is discarded, and if it fails on the first statement of a transaction the statement is
retried once on a fresh connection, since nothing of that transaction has run yet. A transaction waits
at most ``pool_timeout`` seconds (5 by default) for a pooled connection; when the server is down (no
connection in time, or the connection broke mid-transaction) it raises :class:`DatabaseUnavailable`, which
the HTTP and MCP surfaces answer as "503, retry in a few seconds".
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

POSTGRES_SCHEMES = ("postgres://", "postgresql://")
# A quoted literal, a quoted identifier or a line comment (kept as is), or one placeholder/percent sign.
_SQL_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|[?%]")
# Serialises CREATE TABLE IF NOT EXISTS between processes starting at once (it races on PostgreSQL's
# catalog: "duplicate key value violates unique constraint pg_type_typname_nsp_index").
_SCHEMA_LOCK_KEY = 0x50564D435053  # any constant bigint; "SVMCPS"


class DatabaseUnavailable(ConnectionError):
    """The configured PostgreSQL server cannot be reached (down, restarting, out of connections); the message
    names it (password hidden). Transient: callers answer "retry in a few seconds" (HTTP 503)."""

    retry_after = 5  # seconds a client should wait before retrying


# SQLSTATE classes of a server that is gone or refusing sessions (PostgreSQL manual, Appendix A):
# 08 connection exception, 57P01-57P03 admin/crash shutdown and "cannot connect now", 53300 too many connections.
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def _is_outage(exc: BaseException, conn: Any = None) -> bool:
    """Whether ``exc`` means the PostgreSQL server is unreachable (not a bad query or a lock conflict)."""
    from psycopg import OperationalError
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    state = exc.sqlstate
    if state is None or state.startswith(_OUTAGE_SQLSTATES):
        return True
    return bool(conn is not None and conn.broken)


def is_postgres(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return bool(url and url.startswith(POSTGRES_SCHEMES))


def redact_url(url: str) -> str:
    """``url`` without its password, for error messages and logs."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders -> psycopg's ``%s``; a literal ``%`` -> ``%%`` (psycopg reads every ``%`` when
    parameters are passed, even inside quotes); a ``?`` inside quotes or a comment is left alone."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        return token.replace("%", "%%")

    return _SQL_TOKENS.sub(swap, sql)


class Cursor:
    """Runs ``?``-style SQL on either driver; the subset of DB-API the stores use."""

    def __init__(self, cursor: Any, postgres: bool, session: _PgSession | None = None) -> None:
        self._cursor = cursor
        self.postgres = postgres
        self._session = session

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement; ``params`` fill the ``?`` placeholders in order."""
        if not self.postgres:
            self._cursor.execute(sql, params)
            return
        query = to_pyformat(sql)
        if self._session is None:
            self._cursor.execute(query, params)
            return
        try:
            self._cursor.execute(query, params)
        except Exception as exc:
            if not self._session.may_retry(exc):
                raise
            self._cursor = self._session.reconnect()
            self._cursor.execute(query, params)
        self._session.started = True

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        rows = list(rows)
        if not rows:
            return
        if self.postgres:
            self.execute(sql, rows[0])  # first statement: may reconnect
            if len(rows) > 1:
                self._cursor.executemany(to_pyformat(sql), rows[1:])
        else:
            self._cursor.executemany(sql, rows)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        """Rows changed by the last ``UPDATE``/``DELETE``/``INSERT`` (the atomic-claim check)."""
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        """Column descriptions of the last ``SELECT``; ``description[i][0]`` is the column name."""
        return self._cursor.description


class _PgSession:
    """One PostgreSQL transaction's connection, replaceable until its first statement has succeeded."""

    def __init__(self, pool: Any, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout
        self.conn: Any = pool.getconn(timeout=timeout)
        self.cursor = self.conn.cursor()
        self.started = False

    def may_retry(self, exc: Exception) -> bool:
        import psycopg

        return not self.started and isinstance(exc, psycopg.OperationalError) and self.conn.broken

    def reconnect(self) -> Any:
        """Give the broken connection back (the pool drops it), check the idle ones, take a fresh one.

        Raises:
            psycopg_pool.PoolTimeout: no connection within the pool timeout (the server is still down).
        """
        conn, self.conn = self.conn, None  # given back once: end() must not return it again
        with suppress(Exception):
            self.pool.putconn(conn)
        self.pool.check()  # every idle connection from before a server restart is broken too
        self.conn = self.pool.getconn(timeout=self.timeout)
        self.cursor = self.conn.cursor()
        return self.cursor

    def end(self, commit: bool) -> None:
        """Commit or roll back, then give the connection back to the pool (nothing if it already was)."""
        if self.conn is None:  # reconnect() gave the broken one back and could not get another
            return
        try:
            if commit:
                self.conn.commit()
            else:
                with suppress(Exception):  # a broken connection cannot roll back; the pool drops it
                    self.conn.rollback()
        finally:
            with suppress(Exception):
                self.cursor.close()
            self.pool.putconn(self.conn)


class Database:
    """A SQLite file (``path``) or a PostgreSQL database (``url``).

    Args:
        path: SQLite file, created with its folder; used when ``url`` is not a PostgreSQL URL.
        url: ``postgresql://user:password@host:port/dbname``; needs the ``psycopg`` and ``psycopg_pool``
            packages (dependencies of sovereign-mcp).
        busy_timeout: how long a SQLite writer waits for the lock, seconds.
        pool_size: most PostgreSQL connections this process opens for this database.
        pool_timeout: how long a PostgreSQL transaction waits for a pooled connection before raising
            :class:`DatabaseUnavailable`, seconds (short: a request should fail fast while the server is down).

    Raises:
        ValueError: neither a SQLite path nor a PostgreSQL URL.
        DatabaseUnavailable: the PostgreSQL server cannot be reached (raised by the first transaction).
    """

    def __init__(self, path: Path | None = None, url: str | None = None, busy_timeout: float = 30.0,
                 pool_size: int = 10, pool_timeout: float = 5.0) -> None:
        self.postgres = is_postgres(url)
        self.url = url if self.postgres else None
        self.path = path
        self.busy_timeout = busy_timeout
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self._local = threading.local()
        self._pool: Any = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        if not self.postgres:
            if path is None:
                raise ValueError("a SQLite path is needed when no PostgreSQL database_url is given")
            path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def serial_primary_key(self) -> str:
        """Column type of an auto-numbered integer primary key in this dialect."""
        if self.postgres:
            return "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        return "INTEGER PRIMARY KEY AUTOINCREMENT"

    # -- connections ------------------------------------------------------------------------------
    def _sqlite(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _postgres_pool(self) -> Any:
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                return self._pool
            from psycopg_pool import ConnectionPool, PoolTimeout

            pool = ConnectionPool(self.url, min_size=1, max_size=self.pool_size, timeout=self.pool_timeout,
                                  kwargs={"autocommit": False}, name="sovereign-mcp", open=False)
            pool.open()
            try:
                pool.wait(timeout=min(self.busy_timeout, 10.0))
            except PoolTimeout:
                pool.close()
                raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {redact_url(self.url or '')}: check "
                                          "database_url, that the server runs and accepts this user") from None
            self._pool, self._pool_pid = pool, os.getpid()
            return pool

    @contextmanager
    def tx(self, write: bool = True) -> Iterator[Cursor]:
        """A transaction: committed on exit, rolled back on any exception.

        ``write`` (SQLite) takes the write lock at ``BEGIN``; PostgreSQL locks rows as statements touch them.

        Raises:
            DatabaseUnavailable: PostgreSQL is down or not answering (no pooled connection within
                ``pool_timeout`` s, or the connection broke); nothing of the transaction was committed, unless
                the connection broke during the commit itself (then the outcome is unknown).
        """
        if self.postgres:
            pool = self._postgres_pool()
            try:
                session = _PgSession(pool, self.pool_timeout)
            except Exception as exc:
                if _is_outage(exc):
                    raise self._unavailable(exc) from exc
                raise
            try:
                yield Cursor(session.cursor, True, session)
            except BaseException as exc:
                session.end(commit=False)
                if _is_outage(exc, session.conn):
                    raise self._unavailable(exc) from exc
                raise
            try:
                session.end(commit=True)
            except Exception as exc:
                if _is_outage(exc, session.conn):
                    raise self._unavailable(exc) from exc
                raise
            return
        cur = self._sqlite().cursor()
        try:
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield Cursor(cur, False)
            cur.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(f"the database is unavailable (PostgreSQL at {redact_url(self.url or '')} is "
                                   f"not answering: {type(exc).__name__}); retry in a few seconds")

    def create(self, schema: Iterable[str]) -> None:
        """Run ``CREATE ... IF NOT EXISTS`` statements (portable SQL: TEXT, INTEGER, BIGINT, DOUBLE PRECISION),
        serialised between processes on PostgreSQL."""
        with self.tx() as cur:
            if self.postgres:
                cur.execute("SELECT pg_advisory_xact_lock(?)", [_SCHEMA_LOCK_KEY])
            for statement in schema:
                cur.execute(statement)

    def close(self) -> None:
        """Close this thread's SQLite connection, or the PostgreSQL pool (a later transaction reopens it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.close()
