"""Faults of the job store and its PostgreSQL layer: a worker that lost its lock mid-step (fencing by worker
epoch), a cancel racing a claim, a failing recovery, a database outage (no pool leak, a quick
``DatabaseUnavailable``, and 503 / a clear tool error from a real server instead of a 30 s hang and a 500).

An outage is made real on the test server: the test database stops accepting connections
(``ALTER DATABASE ... ALLOW_CONNECTIONS false``) and its sessions are terminated.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from fastmcp import Client

import sovereign_mcp.pipeline.worker as worker_module
from sovereign_mcp.db import Database, DatabaseUnavailable
from sovereign_mcp.pipeline.service import PipelineService
from sovereign_mcp.pipeline.store import JobStore, StaleClaim
from tests.e2e.test_workers import clean_env
from tests.fakes.pg_harness import fresh_database, postgres_url, terminate_connections
from tests.helpers import running_server
from tests.pipeline.test_pipeline import World

FINISHED = ("done", "failed", "cancelled")


@pytest.fixture
def pg() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobStore, JobStore]]:
    """Two job stores sharing one queue, as two processes would (same data dir, or same database)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            one, two = JobStore(tmp_path), JobStore(tmp_path)
        else:
            url = stack.enter_context(fresh_database())
            one, two = JobStore(tmp_path / "a", database_url=url), JobStore(tmp_path / "b", database_url=url)
        yield one, two
        one.close()
        two.close()


@contextlib.contextmanager
def outage(url: str) -> Iterator[None]:
    """The database of ``url`` refuses new connections and has lost its sessions, until the block ends."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    try:
        terminate_connections(url)
        yield
    finally:
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def backends(url: str) -> int:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()[0]


# -- fencing ---------------------------------------------------------------------------------------------
def test_a_worker_that_lost_the_queue_cannot_overwrite_its_successor(stores: tuple[JobStore, JobStore]) -> None:
    old, new = stores
    job_id = old.create("hero_image", "fenced", [], "", {})
    old_epoch, _ = old.recover()
    (step,) = old.candidates()
    assert old.claim(job_id, step.step, step.service, "the old worker runs it", epoch=old_epoch)

    new_epoch, resumed = new.recover()  # the other process took the lock: the step goes back to pending
    assert new_epoch > old_epoch and resumed == [job_id]
    assert new.claim(job_id, step.step, step.service, "the new worker runs it", epoch=new_epoch)
    # the old worker, still running its copy of the step, reports: every result is dropped
    assert old.finish_step(job_id, step.step, "old output", epoch=old_epoch) is False
    old.fail(job_id, step.step, "old failure", epoch=old_epoch)
    old.requeue(job_id, step.step, "old requeue", epoch=old_epoch)
    assert old.retry(job_id, "image", (step.step,), "old retry", step=step.step, epoch=old_epoch) == 0
    status = new.status(job_id, lambda j, n: n)
    assert status.state == "running" and status.steps[0].state == "running" and status.error is None
    assert new.finish_step(job_id, step.step, "new output", epoch=new_epoch) is False  # the alt text step is next
    assert new.status(job_id, lambda j, n: n).steps[0].state == "done"
    assert old.outputs(job_id) == {step.step: "new output"}

    other = new.create("hero_image", "queued later", [], "", {})
    assert old.claim(other, step.step, step.service, "stale", epoch=old_epoch) is False  # a stale epoch claims nothing
    assert new.claim(other, step.step, step.service, "current", epoch=new_epoch) is True


def test_a_worker_that_lost_the_queue_cannot_replace_its_successors_artifact_or_detail(
        stores: tuple[JobStore, JobStore]) -> None:
    old, new = stores
    job_id = old.create("hero_image", "fenced files", [], "", {})
    old_epoch, _ = old.recover()
    (step,) = old.candidates()
    assert old.claim(job_id, step.step, step.service, "old", epoch=old_epoch)
    new_epoch, _ = new.recover()
    assert new.claim(job_id, step.step, step.service, "new", epoch=new_epoch)
    new.set_step_detail(job_id, step.step, {"prompt_id": "new"}, epoch=new_epoch)
    mine = new.add_artifact(job_id, "hero.png", b"new png", step.step, epoch=new_epoch)

    with pytest.raises(StaleClaim):
        old.set_step_detail(job_id, step.step, {"prompt_id": "old"}, epoch=old_epoch)
    with pytest.raises(StaleClaim):
        old.add_artifact(job_id, "hero.png", b"old png", step.step, epoch=old_epoch)
    assert new.step_detail(job_id, step.step) == {"prompt_id": "new"}
    path, _, digest = new.artifact(job_id, "hero.png")
    assert path.read_bytes() == b"new png" and digest == mine.sha256


def test_the_postgres_worker_gives_a_step_up_when_its_lock_session_drops(
        pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(tmp_path)
    try:
        service = PipelineService(world.settings().model_copy(update={"database_url": pg}))
        world.services.append(service)
        worker = service.worker
        monkeypatch.setattr(worker_module, "LOCK_CHECK_SECONDS", 0.0)
        assert worker._take_lock() and not worker._should_stop()
        with psycopg.connect(postgres_url(), autocommit=True) as admin:  # the lock's session is dropped
            admin.execute("SELECT pg_terminate_backend(%s)", [worker._lock._conn.info.backend_pid])
        assert worker._should_stop() is True  # the running step sees it at its next check
        assert not worker.active
    finally:
        world.close()


# -- cancel --------------------------------------------------------------------------------------------------
def test_a_cancel_racing_a_claim_on_postgres_leaves_the_job_cancelled(pg: str, tmp_path: Path) -> None:
    server, worker = JobStore(tmp_path / "a", database_url=pg), JobStore(tmp_path / "b", database_url=pg)
    job_id = server.create("hero_image", "t", [], "", {})
    (step,) = worker.candidates()
    claimed: list[bool] = []
    original = server._cancel

    def claim_between_read_and_write(cur, job_id: str, now: float) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=lambda: claimed.append(worker.claim(job_id, step.step, step.service, "x")))
        thread.start()
        # until the claim either finished or waits for the job row this cancel has locked
        with psycopg.connect(pg, autocommit=True) as watcher:
            while thread.is_alive() and not watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'").fetchone()[0]:
                time.sleep(0.01)
        original(cur, job_id, now)
        server._thread = thread  # type: ignore[attr-defined]

    server._cancel = claim_between_read_and_write  # type: ignore[method-assign]
    assert server.cancel(job_id) == "cancelled"
    server._thread.join(30)  # type: ignore[attr-defined]
    assert claimed == [False]  # it waited for the cancel and then found the job cancelled
    assert worker.finish_step(job_id, step.step, "out") is False
    status = server.status(job_id, lambda j, n: n)
    assert status.state == "cancelled" and {s.state for s in status.steps} == {"cancelled"}
    server.close()
    worker.close()


def test_a_finished_step_never_turns_a_cancelled_job_done(stores: tuple[JobStore, JobStore]) -> None:
    store, _ = stores
    job_id = store.create("hero_image", "t", [], "", {})
    (step,) = store.candidates()
    assert store.claim(job_id, step.step, step.service, "runs")
    with store.db.tx() as cur:  # cancelled while the step ran (what a lost race used to leave behind)
        cur.execute("UPDATE pipeline_jobs SET state = 'cancelled' WHERE id = ?", [job_id])
    assert store.finish_step(job_id, step.step, "out") is False
    assert store.status(job_id, lambda j, n: n).state == "cancelled"


# -- the worker thread ---------------------------------------------------------------------------------------
def test_the_worker_thread_survives_a_failing_recovery(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.sglang.start()
    (tmp_path / "corpus").mkdir()
    try:
        service = world.service()
        calls: list[int] = []
        recover = service.store.recover

        def flaky() -> tuple[int, list[str]]:
            calls.append(1)
            if len(calls) == 1:
                raise DatabaseUnavailable("the database is unavailable (test); retry in a few seconds")
            return recover()

        service.store.recover = flaky  # type: ignore[method-assign]
        job_id = service.submit("hero_image", "after a failed recovery").job_id
        service.start_worker()
        deadline = time.monotonic() + 60
        while service.store.job_row(job_id)["state"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.store.job_row(job_id)["state"] == "done"
        assert len(calls) >= 2
    finally:
        world.close()


# -- an outage -----------------------------------------------------------------------------------------------
def test_an_outage_fails_fast_and_leaks_no_pooled_connection(pg: str) -> None:
    parts = urlsplit(pg)
    secret_url = urlunsplit(parts._replace(netloc=f"{parts.username}:s3cret-pw@{parts.hostname}:{parts.port}"))
    db = Database(url=secret_url, pool_size=2, pool_timeout=1.0)  # the test server trusts loopback: any password

    def hold(_: int) -> None:
        with db.tx() as cur:
            cur.execute("SELECT pg_sleep(0.2)")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(hold, range(2)))  # both pooled connections open
    for _ in range(3):
        with outage(pg):
            for _ in range(2):
                with pytest.raises(DatabaseUnavailable) as caught, db.tx() as cur:
                    cur.execute("SELECT 1")
                assert "unavailable" in str(caught.value) and "s3cret-pw" not in str(caught.value)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the pool reconnects in the background
            with contextlib.suppress(DatabaseUnavailable):
                with db.tx() as cur:
                    cur.execute("SELECT 1")
                break
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(hold, range(6)))  # demand beyond the pool: it must not open more than pool_size
        assert backends(pg) <= db.pool_size
    db.close()


@pytest.mark.e2e
async def test_a_server_answers_503_and_clear_tool_errors_while_postgres_is_down(pg: str, tmp_path: Path) -> None:
    world = World(tmp_path)
    world.sglang.start()
    (tmp_path / "corpus").mkdir()
    env = clean_env(**world.env(), SOVEREIGN_MCP_DATABASE_URL=pg,
                    SOVEREIGN_MCP_PAYMENTS__PRICES=json.dumps({"validate_quality": {"sats": 21, "calls": 1}}))
    try:
        with running_server(env=env) as url:
            async with Client(f"{url}/mcp") as client:
                ticket = (await client.call_tool("trigger_pipeline", {"kind": "hero_image", "topic": "t"})).data
                with outage(pg):
                    async with httpx.AsyncClient(timeout=60) as http:
                        api = await http.get(f"{url}/api/validate", params={"text": "# a\n\nb\n"})
                    paid = await client.call_tool("validate_quality", {"text": "# a\n\nb\n", "kind": "article"},
                                                  raise_on_error=False)
                    result = await client.call_tool("pipeline_status", {"job_id": ticket.job_id},
                                                    raise_on_error=False)
                assert api.status_code == 503, api.text
                assert int(api.headers["retry-after"]) > 0
                assert "database is unavailable" in api.json()["error"]
                # over MCP the paid tool answers in-band (payments.mcp_http_402 is off): a tool error, no 402
                for answer in (paid, result):
                    assert answer.is_error and "database is unavailable" in answer.content[0].text
                    assert "retry" in answer.content[0].text
                assert "payment_required" not in paid.content[0].text
                # and it serves again once the database is back
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    result = await client.call_tool("pipeline_status", {"job_id": ticket.job_id},
                                                    raise_on_error=False)
                    if not result.is_error:
                        break
                assert not result.is_error, result.content
    finally:
        world.close()
