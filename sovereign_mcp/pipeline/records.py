"""The pipeline's tables and the record access every part of the job store shares.

:class:`StoreBase` opens the database (SQLite under the data dir, or PostgreSQL with ``database_url``, both
through :mod:`sovereign_mcp.db`), creates and migrates the schema, reads job rows and checks the fence of a
step's result (see :mod:`sovereign_mcp.pipeline.store` for the fencing rule). The read-side reports live in
:mod:`~sovereign_mcp.pipeline.queries`, artifact files in :mod:`~sovereign_mcp.pipeline.artifacts`, the state
transitions in :mod:`~sovereign_mcp.pipeline.store`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sovereign_mcp.db import Cursor, Database
from sovereign_mcp.pipeline.lock import FileWorkerLock, PostgresWorkerLock, WorkerLock
from sovereign_mcp.pipeline.models import ACTIVE_STATES

log = logging.getLogger(__name__)

ACTIVE = ACTIVE_STATES  # as an SQL tuple literal in queries: ``state IN {ACTIVE}``
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

SCHEMA = [  # {serial} is the dialect's auto-numbered primary key (Database.serial_primary_key)
    """CREATE TABLE IF NOT EXISTS pipeline_jobs (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        topic TEXT NOT NULL,
        source_slugs TEXT NOT NULL DEFAULT '[]',
        sources TEXT NOT NULL DEFAULT '',
        options TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        error TEXT,
        attempts TEXT NOT NULL DEFAULT '{}',
        gate TEXT NOT NULL DEFAULT '[]',
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        current_step TEXT,
        current_service TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS pipeline_jobs_state ON pipeline_jobs (state)",
    """CREATE TABLE IF NOT EXISTS pipeline_steps (
        job_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        service TEXT,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        output TEXT,
        detail TEXT,
        error TEXT,
        claim_epoch BIGINT,
        PRIMARY KEY (job_id, name)
    )""",
    "CREATE TABLE IF NOT EXISTS pipeline_worker (id INTEGER PRIMARY KEY, epoch BIGINT NOT NULL)",
    "INSERT INTO pipeline_worker (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    """CREATE TABLE IF NOT EXISTS pipeline_artifacts (
        job_id TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        mime TEXT NOT NULL,
        step TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (job_id, name)
    )""",
]



class JobNotFound(KeyError):
    """No job with that id."""

    def __str__(self) -> str:
        return f"no pipeline job {self.args[0]!r}"


class JobNotRetriable(ValueError):
    """Only a failed or cancelled job can be retried (the message says its state)."""


class ArtifactNotFound(KeyError):
    """No artifact with that name for that job."""

    def __str__(self) -> str:
        return str(self.args[0])


class StaleClaim(Exception):
    """A step's partial result (detail, artifact) came from a worker whose claim is no longer current: the
    step was recovered by a newer lock holder or cancelled. The worker drops the step."""


class StoreBase:
    """Database, schema and row access of the job store. ``data_dir`` holds ``pipeline/`` and ``artifacts/``."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time,
                 database_url: str | None = None) -> None:
        """Open (and create) the store.

        Args:
            data_dir: holds ``pipeline/`` (SQLite file, worker lock file) and ``artifacts/``.
            clock: unix seconds.
            database_url: ``postgresql://...`` keeps the records there; else SQLite under ``data_dir``.

        Raises:
            DatabaseUnavailable: PostgreSQL cannot be reached.
        """
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "pipeline" / "jobs.sqlite3"
        self.artifacts_root = self.data_dir / "artifacts"
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.path, database_url)
        self.postgres = self.db.postgres
        self.db.create(s.replace("{serial}", self.db.serial_primary_key) for s in SCHEMA)
        self._for_update = " FOR UPDATE" if self.postgres else ""  # SQLite: BEGIN IMMEDIATE serialises writers
        with self._tx() as cur:  # stores created before fencing lack the column
            cur.execute("SELECT * FROM pipeline_steps LIMIT 0")
            if "claim_epoch" not in [c[0] for c in cur.description]:
                exists = "IF NOT EXISTS " if self.postgres else ""
                cur.execute(f"ALTER TABLE pipeline_steps ADD COLUMN {exists}claim_epoch BIGINT")

    # -- database -------------------------------------------------------------------------------------
    def _tx(self, write: bool = True) -> contextlib.AbstractContextManager[Cursor]:
        return self.db.tx(write)

    def close(self) -> None:
        """Close this thread's SQLite connection or the PostgreSQL pool (reopened on next use)."""
        self.db.close()

    def worker_lock(self) -> WorkerLock:
        """The lock that makes one worker run the queue: a ``flock`` on ``pipeline/worker.lock`` with SQLite
        (processes on this host share the file), a PostgreSQL session advisory lock with ``database_url``
        (every process and host sharing the database). Either is released by the OS or the server when the
        holder dies."""
        if self.postgres:
            return PostgresWorkerLock(self.db)
        return FileWorkerLock(self.path.with_name("worker.lock"))

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID_RE.match(job_id):
            raise JobNotFound(job_id)
        return self.artifacts_root / job_id

    def _row(self, cur: Cursor, job_id: str, lock: bool = False) -> dict[str, Any]:
        cur.execute("SELECT * FROM pipeline_jobs WHERE id = ?" + (self._for_update if lock else ""), [job_id])
        row = cur.fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return dict(zip([c[0] for c in cur.description], row, strict=True))

    def job_row(self, job_id: str) -> dict[str, Any]:
        """The raw job row (``sources``, ``options`` etc. decoded)."""
        with self._tx(write=False) as cur:
            row = self._row(cur, job_id)
        row["source_slugs"] = json.loads(row["source_slugs"])
        row["options"] = json.loads(row["options"])
        row["attempts"] = json.loads(row["attempts"])
        row["gate"] = json.loads(row["gate"])
        return row

    def _fenced(self, cur: Cursor, job_id: str, step: str, epoch: int | None, what: str) -> bool:
        """Whether a result of ``step`` claimed under ``epoch`` must be dropped: the step is no longer running
        under that epoch (recovered and possibly re-run by a newer lock holder, or cancelled). Locks the row."""
        if epoch is None:
            return False
        cur.execute("SELECT id FROM pipeline_jobs WHERE id = ?" + self._for_update, [job_id])  # job row, then step
        cur.execute("SELECT state, claim_epoch FROM pipeline_steps WHERE job_id = ? AND name = ?" + self._for_update,
                    [job_id, step])
        row = cur.fetchone()
        if row is not None and row[0] == "running" and row[1] == epoch:
            return False
        log.warning("pipeline job %s: dropping the %s of step %s from worker epoch %s: the step is now %s "
                    "(another worker took over)", job_id, what, step, epoch, row and f"{row[0]} (epoch {row[1]})")
        return True
