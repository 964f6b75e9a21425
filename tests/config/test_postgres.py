"""The stores on PostgreSQL (``sovereign_mcp.db`` with a ``postgresql://`` URL): placeholder translation,
the L402 token store and the pipeline job store shared by several store objects (as several processes
would), atomic claims and spends, the worker lock held by one process at a time and released when its
holder dies, reconnection after the server dropped every connection, and a whole article job run with its
records in PostgreSQL. Each test gets a fresh database on the server ``SOVEREIGN_MCP_TEST_POSTGRES_URL``
names (see ``tests/fakes/pg_harness.py``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sovereign_mcp.db import Database, to_pyformat
from sovereign_mcp.payments.store import TokenRecord, TokenStore
from sovereign_mcp.pipeline.lock import PostgresWorkerLock
from sovereign_mcp.pipeline.service import PipelineService
from sovereign_mcp.pipeline.store import JobStore
from tests.fakes.pg_harness import fresh_database, terminate_connections
from tests.pipeline.test_pipeline import World

NOW = int(time.time())


@pytest.fixture
def pg() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` for ``i`` in ``range(n)`` on ``n`` threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def token(max_calls: int = 1) -> TokenRecord:
    return TokenRecord(token_id=secrets.token_hex(32), payment_hash=secrets.token_hex(32),
                       root_key=secrets.token_bytes(32), bolt11="lnbcrt210n1test", tools="validate_quality",
                       price_sat=21, max_calls=max_calls, state="pending", created_at=NOW, expires_at=NOW + 600,
                       valid_until=NOW + 86_400)


# -- SQL translation (no server needed) -----------------------------------------------------------------
def test_placeholders_become_pyformat_outside_quotes_only() -> None:
    sql = "SELECT '?', \"a?b\", x FROM t WHERE y = ? AND z LIKE 'a%' -- why?\nAND w = ?"
    assert to_pyformat(sql) == "SELECT '?', \"a?b\", x FROM t WHERE y = %s AND z LIKE 'a%%' -- why?\nAND w = %s"
    assert to_pyformat("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', %s"
    assert to_pyformat("SELECT 5 % 2") == "SELECT 5 %% 2"


def test_question_marks_and_percent_signs_in_literals_reach_postgres_as_text(pg: str) -> None:
    db = Database(url=pg)
    with db.tx() as cur:
        cur.execute("SELECT '100% sure?', ?, 7 % 4", ["param?"])
        assert cur.fetchone() == ("100% sure?", "param?", 3)
    db.close()


# -- the L402 token store ----------------------------------------------------------------------------------
def test_a_token_paid_through_one_store_is_spent_once_across_many(pg: str) -> None:
    first = TokenStore(database_url=pg)
    others = [TokenStore(database_url=pg) for _ in range(4)]  # as four other processes would
    single, bundle = token(1), token(5)
    first.add(single)
    first.add(bundle)
    assert others[0].get(single.token_id).state == "pending"
    assert others[1].mark_paid(single.token_id, NOW) and others[1].mark_paid(bundle.token_id, NOW)
    assert first.get(single.token_id).state == "paid"

    stores = [first, *others]
    results = race(20, lambda i: stores[i % len(stores)].consume(single.token_id))
    assert results.count(True) == 1
    results = race(20, lambda i: stores[i % len(stores)].consume(bundle.token_id))
    assert results.count(True) == 5
    assert first.get(bundle.token_id).calls_used == 5
    assert race(10, lambda i: stores[i % len(stores)].take_free("10.0.0.0/24", "2026-11-21", 3)).count(True) == 3
    stats = others[2].stats()
    assert stats["sats_total"] == 42 and stats["outstanding"] == 0
    for store in stores:
        store.close()


# -- the job store -------------------------------------------------------------------------------------------
def test_job_records_are_shared_and_a_step_is_claimed_exactly_once(pg: str, tmp_path: Path) -> None:
    one = JobStore(tmp_path / "host-a", database_url=pg)
    two = JobStore(tmp_path / "host-b", database_url=pg)
    assert one.postgres and not (tmp_path / "host-a" / "pipeline" / "jobs.sqlite3").exists()
    job_id = one.create("article", "shared? 100% shared", ["a-slug"], "", {"seed": 7})
    assert two.job_row(job_id)["options"] == {"seed": 7}
    assert two.summaries()[0].topic == "shared? 100% shared"
    (first,) = two.candidates()

    stores = [one, two]
    won = race(16, lambda i: stores[i % 2].claim(job_id, first.step, first.service, f"claim {i}"))
    assert won.count(True) == 1
    assert two.candidates() == []  # one step of a job at a time
    assert one.finish_step(job_id, first.step, "part one") is False
    assert two.outputs(job_id) == {first.step: "part one"}
    assert [c.step for c in two.candidates()] == ["article_part2"]

    one.add_artifact(job_id, "draft.md", b"first", first.step)
    two.add_artifact(job_id, "draft.md", b"second version", first.step)  # ON CONFLICT DO UPDATE
    status = one.status(job_id, lambda j, n: f"pipeline://jobs/{j}/artifacts/{n}")
    assert [(a.name, a.bytes) for a in status.artifacts] == [("draft.md", 14)]
    assert status.done_steps == 1 and status.total_steps == 4 and status.state == "running"

    assert two.cancel(job_id) == "cancelled"
    assert one.status(job_id, lambda j, n: "").state == "cancelled"
    assert one.claim(job_id, "article_part2", "sglang", "too late") is False
    one.close()
    two.close()


def test_the_worker_lock_has_one_holder_and_is_freed_when_it_dies(pg: str) -> None:
    db = Database(url=pg)
    here = PostgresWorkerLock(db)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from sovereign_mcp.db import Database\nfrom sovereign_mcp.pipeline.lock import PostgresWorkerLock\n"
         "lock = PostgresWorkerLock(Database(url=sys.argv[1]))\nprint(lock.acquire(), flush=True)\ntime.sleep(600)",
         pg], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "True"
        assert here.acquire() is False and not here.held
        child.kill()  # no clean release: the server ends the session and frees the lock
        child.wait()
        deadline = time.monotonic() + 30
        while not here.acquire() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert here.held
        other = PostgresWorkerLock(db)
        assert other.acquire() is False
        here.release()
        assert other.acquire() is True
        other.release()
        db.close()
    finally:
        child.kill()
        child.wait()
        if child.stdout:
            child.stdout.close()


def test_stores_reconnect_after_the_server_dropped_every_connection(pg: str, tmp_path: Path) -> None:
    tokens = TokenStore(database_url=pg)
    jobs = JobStore(tmp_path, database_url=pg)
    record = token()
    tokens.add(record)
    job_id = jobs.create("hero_image", "before the restart", [], "", {})
    lock = jobs.worker_lock()
    assert lock.acquire()
    assert terminate_connections(pg) >= 3  # the pools' connections and the lock's
    assert tokens.get(record.token_id).token_id == record.token_id  # no error: a fresh connection
    assert jobs.job_row(job_id)["topic"] == "before the restart"
    assert lock.acquire() is False and not lock.held  # lost with its session: the worker stands down
    assert lock.acquire() is True  # and takes it again on a new session at its next try
    lock.release()
    tokens.close()
    jobs.close()


def test_an_article_job_runs_to_done_with_its_records_in_postgres(pg: str, tmp_path: Path) -> None:
    world = World(tmp_path)
    world.sglang.start()
    (tmp_path / "corpus").mkdir()
    try:
        settings = world.settings().model_copy(update={"database_url": pg})
        service = PipelineService(settings)
        world.services.append(service)
        assert service.store.postgres
        status = service.run_until_finished(service.submit("article", "one GPU service at a time").job_id)
        assert status.state == "done", status.error
        assert [s.state for s in status.steps] == ["done"] * 4
        observer = JobStore(tmp_path / "elsewhere", database_url=pg)  # another host reading the records
        seen = observer.status(status.job_id, lambda j, n: n)
        assert seen.state == "done" and {a.name for a in seen.artifacts} >= {"article.md"}
        assert not (world.data_dir / "pipeline" / "jobs.sqlite3").exists()
    finally:
        world.close()
