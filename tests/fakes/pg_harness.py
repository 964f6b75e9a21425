"""PostgreSQL for the tests: the server named by ``SOVEREIGN_MCP_TEST_POSTGRES_URL`` (``.ci/run`` starts a
throwaway cluster with ``.ci/postgres.sh`` and exports it), and a fresh database per test on it.

Locally::

    eval "$(.ci/postgres.sh start /tmp/sovereign-pg)"    # PostgreSQL from Debian packages; root is fine
    python -m pytest -q tests/config/test_postgres.py tests/e2e/test_workers.py
    .ci/postgres.sh stop /tmp/sovereign-pg

Without the variable the tests that need PostgreSQL are skipped, except under CI (``CI`` set), where they
fail: CI must not pass by silently skipping them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV = "SOVEREIGN_MCP_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The test server's URL; skips the test (fails it under CI) when none is configured."""
    url = os.environ.get(ENV)
    if url:
        return url
    message = f"{ENV} is not set: start a cluster with eval \"$(.ci/postgres.sh start /tmp/sovereign-pg)\""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run the PostgreSQL tests; .ci/run does this)")
    pytest.skip(message)
    raise AssertionError("unreachable")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards, connections and all); yields its URL."""
    import psycopg

    admin = postgres_url()
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_connections(url: str) -> int:
    """Kill every other session on ``url``'s database (a server restart as clients see it); returns how many."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(postgres_url(), autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                            "AND pid <> pg_backend_pid()", [name]).fetchall()
    return sum(1 for (killed,) in rows if killed)
