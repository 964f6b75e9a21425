"""Jobs, steps and artifacts in SQLite (WAL) under the data dir, or in PostgreSQL when ``database_url`` is a
``postgresql://`` URL (several server processes or hosts then share the queue); artifact files under the
data dir either way.

Layout: ``<data_dir>/pipeline/jobs.sqlite3`` (SQLite only) and ``<data_dir>/artifacts/<job_id>/<name>``. Every
finished
step keeps its output (text in the database, files as artifacts with their sha256), so a worker that
died resumes a job after its last finished step: :meth:`JobStore.recover` puts steps left ``running``
back to ``pending`` and nothing else is redone.

Thread- and process-safe through :mod:`sovereign_mcp.db` (SQLite: ``BEGIN IMMEDIATE`` for every write;
PostgreSQL: pooled connections). Every state change that two workers could race for is one conditional
``UPDATE ... WHERE state = ...`` whose row count says who won (:meth:`JobStore.claim`); :meth:`JobStore.claim`
and :meth:`JobStore.cancel` lock the job row first (``SELECT ... FOR UPDATE`` on PostgreSQL), so a cancel never
acts on a stale read. Only the worker holding :meth:`JobStore.worker_lock` runs steps and may
:meth:`JobStore.recover`. Times are unix seconds from the injected clock.

Fencing (a lock holder that lost its lock without noticing, e.g. its PostgreSQL session dropped mid-step,
must not overwrite its successor's work; the "fencing token" of Kleppmann, "How to do distributed
locking", 2016): ``pipeline_worker.epoch`` is bumped by every new lock holder in :meth:`JobStore.recover`,
each claimed step records the claimer's epoch (``pipeline_steps.claim_epoch``), a claim under an epoch that
is no longer current is refused, and a worker's results (:meth:`JobStore.finish_step`, :meth:`~JobStore.fail`,
:meth:`~JobStore.retry`, :meth:`~JobStore.requeue`, :meth:`~JobStore.record_gate`) apply only while its step
is still ``running`` under the epoch it was claimed with; a stale worker's result is dropped and logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovereign_mcp.db import Cursor, Database
from sovereign_mcp.pipeline.lock import FileWorkerLock, PostgresWorkerLock, WorkerLock
from sovereign_mcp.pipeline.models import (
    ARTIFACT_MIME,
    FINISHED,
    KIND_STEPS,
    ArtifactOut,
    GateAttempt,
    JobStatus,
    JobSummary,
    StepOut,
    spec_of,
)

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running", "waiting")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESUMED_STATE = "CASE WHEN started_at IS NULL THEN 'queued' ELSE 'running' END"

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


class ArtifactNotFound(KeyError):
    """No artifact with that name for that job."""

    def __str__(self) -> str:
        return str(self.args[0])


class StaleClaim(Exception):
    """A step's partial result (detail, artifact) came from a worker whose claim is no longer current: the
    step was recovered by a newer lock holder or cancelled. The worker drops the step."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pending step whose dependencies are done: the scheduler picks among these."""

    job_id: str
    seq: int
    step: str
    index: int
    service: str | None
    ready_since: float


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no half-written artifacts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class JobStore:
    """The pipeline's persistent state. ``data_dir`` holds ``pipeline/`` and ``artifacts/``."""

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

    # -- jobs -----------------------------------------------------------------------------------------
    def create(self, kind: str, topic: str, source_slugs: list[str], sources: str, options: dict[str, Any]) -> str:
        """A new queued job with all its steps pending; returns its id (128 random bits, hex: whoever holds
        the id can read the job's status and artifacts, so it must not be guessable)."""
        steps = KIND_STEPS[kind]
        job_id = secrets.token_hex(16)
        now = self._clock()
        tracks = sorted({s.track for s in steps if s.service == "sglang"})
        with self._tx() as cur:
            cur.execute("INSERT INTO pipeline_jobs (id, kind, topic, source_slugs, sources, options, state, message, "
                        "attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                        [job_id, kind, topic, json.dumps(source_slugs), sources, json.dumps(options),
                         f"queued: {len(steps)} steps", json.dumps(dict.fromkeys(tracks, 1)), now, now])
            cur.executemany("INSERT INTO pipeline_steps (job_id, idx, name, service, state) "
                            "VALUES (?, ?, ?, ?, 'pending')",
                            [(job_id, i, s.name, s.service) for i, s in enumerate(steps)])
        return job_id

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

    def status(self, job_id: str, uri: Callable[[str, str], str]) -> JobStatus:
        """Everything about one job; ``uri(job_id, name)`` names its artifacts."""
        with self._tx(write=False) as cur:
            row = self._row(cur, job_id)
            cur.execute("SELECT idx, name, service, state, attempt, started_at, finished_at, error, detail "
                        "FROM pipeline_steps WHERE job_id = ? ORDER BY idx", [job_id])
            steps = cur.fetchall()
            cur.execute("SELECT name, sha256, bytes, mime, step, created_at FROM pipeline_artifacts "
                        "WHERE job_id = ? ORDER BY created_at, name", [job_id])
            artifacts = cur.fetchall()
        outs = [StepOut(index=s[0], name=s[1], title=spec_of(row["kind"], s[1]).title, service=s[2], state=s[3],
                        attempt=s[4], started_at=s[5], finished_at=s[6], error=s[7],
                        detail=_public_detail(s[8])) for s in steps]
        done = sum(1 for s in outs if s.state == "done")
        return JobStatus(
            job_id=row["id"], kind=row["kind"], topic=row["topic"], source_slugs=json.loads(row["source_slugs"]),
            state=row["state"], message=row["message"], error=row["error"], current_step=row["current_step"],
            current_service=row["current_service"], done_steps=done, total_steps=len(outs),
            progress=round(done / len(outs), 4) if outs else 0.0, created_at=row["created_at"],
            updated_at=row["updated_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            cancel_requested=bool(row["cancel_requested"]), attempts=json.loads(row["attempts"]),
            gate=[GateAttempt.model_validate(g) for g in json.loads(row["gate"])], steps=outs,
            artifacts=[ArtifactOut(name=a[0], uri=uri(job_id, a[0]), mime_type=a[3], bytes=a[2], sha256=a[1],
                                   step=a[4], created_at=a[5]) for a in artifacts])

    def summaries(self, state: str | None = None, limit: int = 50) -> list[JobSummary]:
        """Newest jobs first, optionally of one state."""
        query = ("SELECT j.id, j.kind, j.topic, j.state, j.message, j.current_service, j.created_at, j.updated_at, "
                 "(SELECT COUNT(*) FROM pipeline_steps s WHERE s.job_id = j.id AND s.state = 'done'), "
                 "(SELECT COUNT(*) FROM pipeline_steps s WHERE s.job_id = j.id) FROM pipeline_jobs j")
        params: list[Any] = []
        if state:
            query += " WHERE j.state = ?"
            params.append(state)
        query += " ORDER BY j.seq DESC LIMIT ?"
        params.append(limit)
        with self._tx(write=False) as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        return [JobSummary(job_id=r[0], kind=r[1], topic=r[2], state=r[3], message=r[4], current_service=r[5],
                           created_at=r[6], updated_at=r[7], done_steps=r[8], total_steps=r[9]) for r in rows]

    def active_count(self) -> int:
        with self._tx(write=False) as cur:
            cur.execute(f"SELECT COUNT(*) FROM pipeline_jobs WHERE state IN {ACTIVE}")
            return int(cur.fetchone()[0])

    def count_by_state(self) -> dict[str, int]:
        """Number of jobs per state (only states that have jobs), e.g. ``{"queued": 2, "done": 7}``."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT state, COUNT(*) FROM pipeline_jobs GROUP BY state")
            return {str(state): int(n) for state, n in cur.fetchall()}

    def pending_by_service(self) -> dict[str, int]:
        """Pending steps of active jobs per GPU role (``cpu`` for none)."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT COALESCE(s.service, 'cpu'), COUNT(*) FROM pipeline_steps s JOIN pipeline_jobs j "
                        f"ON j.id = s.job_id WHERE j.state IN {ACTIVE} AND s.state = 'pending' GROUP BY 1")
            return dict(cur.fetchall())

    # -- scheduling -----------------------------------------------------------------------------------
    def candidates(self) -> list[Candidate]:
        """Pending steps of active, not cancelling jobs whose dependencies are all done (queue order)."""
        with self._tx(write=False) as cur:
            cur.execute(f"SELECT id, seq, kind, created_at FROM pipeline_jobs WHERE state IN {ACTIVE} "
                        "AND cancel_requested = 0 ORDER BY seq")
            jobs = cur.fetchall()
            out: list[Candidate] = []
            for job_id, seq, kind, created_at in jobs:
                cur.execute("SELECT name, idx, service, state, finished_at FROM pipeline_steps WHERE job_id = ?",
                            [job_id])
                steps = {r[0]: r for r in cur.fetchall()}
                if any(r[3] == "running" for r in steps.values()):
                    continue  # one step of a job at a time
                for spec in KIND_STEPS[kind]:
                    row = steps.get(spec.name)
                    if row is None or row[3] != "pending":
                        continue
                    deps = [steps[d] for d in spec.after if d in steps]
                    if all(d[3] == "done" for d in deps):
                        since = max([d[4] or created_at for d in deps], default=created_at)
                        out.append(Candidate(job_id, seq, spec.name, row[1], spec.service, since))
            return out

    def claim(self, job_id: str, step: str, service: str | None, message: str, *, epoch: int | None = None) -> bool:
        """Mark ``step`` running if its job is still active and not cancelling; ``False`` otherwise.

        ``epoch`` (the claiming worker's, from :meth:`recover`) is recorded on the step; the claim is refused
        when another worker has taken the lock since (a newer epoch). ``None``: no fencing (tests, tools).
        """
        now = self._clock()
        with self._tx() as cur:
            if epoch is not None:  # worker row before job row, the order recover() locks them in
                cur.execute("SELECT epoch FROM pipeline_worker WHERE id = 1" + (" FOR SHARE" if self.postgres else ""))
                current = cur.fetchone()[0]
                if current != epoch:
                    log.warning("pipeline: not claiming %s of job %s: worker epoch %s is stale (now %s); another "
                                "worker holds the lock", step, job_id, epoch, current)
                    return False
            cur.execute("SELECT state FROM pipeline_jobs WHERE id = ?" + self._for_update, [job_id])
            # one conditional UPDATE: of two workers racing for the step, exactly one changes a row
            cur.execute("UPDATE pipeline_steps SET state = 'running', started_at = ?, finished_at = NULL, "
                        "error = NULL, claim_epoch = ? WHERE job_id = ? AND name = ? AND state = 'pending' AND "
                        f"EXISTS (SELECT 1 FROM pipeline_jobs j WHERE j.id = ? AND j.state IN {ACTIVE} "
                        "AND j.cancel_requested = 0)",
                        [now, epoch, job_id, step, job_id])
            if cur.rowcount != 1:
                return False
            cur.execute("UPDATE pipeline_jobs SET state = 'running', started_at = COALESCE(started_at, ?), "
                        "current_step = ?, current_service = ?, message = ?, updated_at = ? WHERE id = ?",
                        [now, step, service, message, now, job_id])
        return True

    def outputs(self, job_id: str) -> dict[str, str]:
        """Text outputs of the job's finished steps."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT name, output FROM pipeline_steps WHERE job_id = ? AND state = 'done'", [job_id])
            return {name: output or "" for name, output in cur.fetchall()}

    def step_detail(self, job_id: str, step: str) -> dict[str, Any]:
        """The step's detail (also partial progress of an interrupted run, e.g. a ComfyUI prompt id)."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT detail FROM pipeline_steps WHERE job_id = ? AND name = ?", [job_id, step])
            row = cur.fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def set_step_detail(self, job_id: str, step: str, detail: dict[str, Any], message: str | None = None, *,
                        epoch: int | None = None) -> None:
        """Record partial progress of a running step.

        Raises:
            StaleClaim: ``epoch`` is given and the step no longer runs under it (nothing is written).
        """
        now = self._clock()
        with self._tx() as cur:
            if self._fenced(cur, job_id, step, epoch, "detail"):
                raise StaleClaim(f"step {step} of job {job_id} is no longer claimed by worker epoch {epoch}")
            cur.execute("UPDATE pipeline_steps SET detail = ? WHERE job_id = ? AND name = ?",
                        [json.dumps(detail), job_id, step])
            if message is not None:
                cur.execute("UPDATE pipeline_jobs SET message = ?, updated_at = ? WHERE id = ?", [message, now, job_id])

    def set_message(self, job_id: str, message: str) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE pipeline_jobs SET message = ?, updated_at = ? WHERE id = ?",
                        [message, self._clock(), job_id])

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

    def finish_step(self, job_id: str, step: str, output: str, detail: dict[str, Any] | None = None, *,
                    epoch: int | None = None) -> bool:
        """Record the running step done with its output; the job is done when every step is. Returns whether it
        is. Nothing is recorded (``False``) when the step is no longer running (under ``epoch``, if given)."""
        now = self._clock()
        with self._tx() as cur:
            if self._fenced(cur, job_id, step, epoch, "result"):
                return False
            cur.execute("UPDATE pipeline_steps SET state = 'done', finished_at = ?, output = ?, detail = COALESCE(?, "
                        "detail), error = NULL WHERE job_id = ? AND name = ? AND state = 'running'",
                        [now, output, json.dumps(detail) if detail is not None else None, job_id, step])
            if cur.rowcount != 1:
                log.warning("pipeline job %s: dropping the result of step %s: it is no longer running", job_id, step)
                return False
            return self._after_step(cur, job_id, now, f"finished {step}")

    def _after_step(self, cur: Cursor, job_id: str, now: float, message: str) -> bool:
        cur.execute("SELECT COUNT(*), SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END) FROM pipeline_steps "
                    "WHERE job_id = ?", [job_id])
        total, done = cur.fetchone()
        if done == total:  # a job already failed or cancelled stays so
            cur.execute("UPDATE pipeline_jobs SET state = 'done', finished_at = ?, updated_at = ?, "
                        f"current_step = NULL, current_service = NULL, message = ? WHERE id = ? AND state IN {ACTIVE}",
                        [now, now, f"done: {total} of {total} steps", job_id])
            return cur.rowcount == 1
        cur.execute("UPDATE pipeline_jobs SET current_step = NULL, current_service = NULL, updated_at = ?, message = ? "
                    f"WHERE id = ? AND state IN {ACTIVE}", [now, f"{message} ({done} of {total} steps done)", job_id])
        return False

    def record_gate(self, job_id: str, attempt: GateAttempt, *, step: str | None = None,
                    epoch: int | None = None) -> None:
        """Append a quality-gate attempt to the job's history (dropped if ``step`` is fenced, see module doc)."""
        with self._tx() as cur:
            if step is not None and self._fenced(cur, job_id, step, epoch, "gate result"):
                return
            row = self._row(cur, job_id)
            history = json.loads(row["gate"])
            history.append(attempt.model_dump())
            cur.execute("UPDATE pipeline_jobs SET gate = ?, updated_at = ? WHERE id = ?",
                        [json.dumps(history), self._clock(), job_id])

    def retry(self, job_id: str, track: str, steps: tuple[str, ...], message: str, *, step: str | None = None,
              epoch: int | None = None) -> int:
        """Put ``steps`` back to pending for another generation attempt of ``track``; returns the new attempt,
        or 0 when ``step`` (the gate that asked for it) is fenced (see the module doc) and nothing changed."""
        now = self._clock()
        with self._tx() as cur:
            if step is not None and self._fenced(cur, job_id, step, epoch, "retry"):
                return 0
            row = self._row(cur, job_id)
            attempts = json.loads(row["attempts"])
            attempts[track] = attempts.get(track, 1) + 1
            cur.executemany("UPDATE pipeline_steps SET state = 'pending', attempt = ?, started_at = NULL, "
                            "finished_at = NULL, output = NULL, detail = NULL, error = NULL "
                            "WHERE job_id = ? AND name = ?", [(attempts[track], job_id, s) for s in steps])
            cur.execute("UPDATE pipeline_jobs SET attempts = ?, current_step = NULL, current_service = NULL, "
                        "message = ?, updated_at = ? WHERE id = ?", [json.dumps(attempts), message, now, job_id])
            return int(attempts[track])

    def fail(self, job_id: str, step: str | None, error: str, *, epoch: int | None = None) -> None:
        """The job failed at ``step``: that step ``failed``, the pending ones ``cancelled`` (nothing changes when
        ``step`` is fenced, see the module doc)."""
        now = self._clock()
        with self._tx() as cur:
            if step is not None and self._fenced(cur, job_id, step, epoch, "failure"):
                return
            if step is not None:
                cur.execute("UPDATE pipeline_steps SET state = 'failed', finished_at = ?, error = ? "
                            "WHERE job_id = ? AND name = ?", [now, error, job_id, step])
            cur.execute("UPDATE pipeline_steps SET state = 'cancelled' WHERE job_id = ? AND state IN ('pending', "
                        "'running')", [job_id])
            cur.execute("UPDATE pipeline_jobs SET state = 'failed', error = ?, message = ?, finished_at = ?, "
                        "updated_at = ?, current_step = NULL, current_service = NULL WHERE id = ?",
                        [error, f"failed at {step}: {error}" if step else f"failed: {error}", now, now, job_id])

    def requeue(self, job_id: str, step: str, message: str, *, epoch: int | None = None) -> None:
        """Give an interrupted step back (it runs again from scratch) and mark the job ``waiting`` (nothing
        changes when ``step`` is fenced, see the module doc)."""
        with self._tx() as cur:
            if self._fenced(cur, job_id, step, epoch, "requeue"):
                return
            cur.execute("UPDATE pipeline_steps SET state = 'pending', started_at = NULL WHERE job_id = ? AND name = ? "
                        "AND state = 'running'", [job_id, step])
            cur.execute("UPDATE pipeline_jobs SET state = 'waiting', current_step = NULL, current_service = NULL, "
                        "message = ?, updated_at = ? WHERE id = ? AND state IN ('running', 'queued', 'waiting')",
                        [message, self._clock(), job_id])

    def mark_waiting(self, job_ids: list[str], message: str) -> None:
        with self._tx() as cur:
            cur.executemany("UPDATE pipeline_jobs SET state = 'waiting', message = ?, updated_at = ? "
                            "WHERE id = ? AND state IN ('queued', 'running')",
                            [(message, self._clock(), j) for j in job_ids])

    def resume_waiting(self, message: str) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE pipeline_jobs SET state = " + RESUMED_STATE + ", "
                        "message = ?, updated_at = ? WHERE state = 'waiting'", [message, self._clock()])

    # -- cancel and recovery ----------------------------------------------------------------------------
    def cancel(self, job_id: str) -> str:
        """Cancel now if no step runs, else at the next step boundary. Returns the resulting state."""
        now = self._clock()
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)  # a worker's claim() waits for this cancel, or it waits for it
            if row["state"] in FINISHED:
                return str(row["state"])
            cur.execute("SELECT name FROM pipeline_steps WHERE job_id = ? AND state = 'running'", [job_id])
            running = cur.fetchone()
            if running is not None:
                cur.execute("UPDATE pipeline_jobs SET cancel_requested = 1, message = ?, updated_at = ? WHERE id = ?",
                            [f"cancel requested: stops after step {running[0]}", now, job_id])
                return str(row["state"])
            self._cancel(cur, job_id, now)
            return "cancelled"

    def _cancel(self, cur: Cursor, job_id: str, now: float) -> None:
        if self._for_update:  # rows are locked job first, then steps, everywhere (no deadlocks)
            cur.execute("SELECT id FROM pipeline_jobs WHERE id = ? FOR UPDATE", [job_id])
        cur.execute("UPDATE pipeline_steps SET state = 'cancelled' WHERE job_id = ? "
                    "AND state IN ('pending', 'running')", [job_id])
        cur.execute("UPDATE pipeline_jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ?, "
                    "updated_at = ?, current_step = NULL, current_service = NULL, message = 'cancelled' WHERE id = ?",
                    [now, now, job_id])

    def apply_cancellations(self) -> list[str]:
        """Cancel jobs whose cancel was requested and that have no running step (a step boundary)."""
        now = self._clock()
        with self._tx() as cur:
            cur.execute(f"SELECT id FROM pipeline_jobs WHERE cancel_requested = 1 AND state IN {ACTIVE} AND NOT EXISTS "
                        "(SELECT 1 FROM pipeline_steps s WHERE s.job_id = pipeline_jobs.id AND s.state = 'running')")
            ids = [r[0] for r in cur.fetchall()]
            for job_id in ids:
                self._cancel(cur, job_id, now)
        return ids

    def recover(self) -> tuple[int, list[str]]:
        """Take over the queue: start a new worker epoch, and put steps left ``running`` by an earlier holder
        (a dead worker, or one that lost the lock) back to ``pending``; their jobs are queued again.

        Only the worker that just took the worker lock may call this. Returns ``(epoch, resumed job ids)``:
        pass the epoch to :meth:`claim` and the result methods (fencing, see the module doc).
        """
        now = self._clock()
        with self._tx() as cur:
            # locks the worker row until commit: a claim under the old epoch either committed before this
            # (and its step is recovered below) or waits and is then refused
            cur.execute("UPDATE pipeline_worker SET epoch = epoch + 1 WHERE id = 1")
            cur.execute("SELECT epoch FROM pipeline_worker WHERE id = 1")
            epoch = int(cur.fetchone()[0])
            stale = "state = 'running' AND (claim_epoch IS NULL OR claim_epoch < ?)"
            if self._for_update:  # job rows before step rows, as everywhere
                cur.execute(f"SELECT id FROM pipeline_jobs WHERE state IN {ACTIVE} ORDER BY id FOR UPDATE")
            cur.execute(f"SELECT DISTINCT job_id FROM pipeline_steps WHERE {stale}", [epoch])
            ids = [r[0] for r in cur.fetchall()]
            cur.execute(f"UPDATE pipeline_steps SET state = 'pending', started_at = NULL WHERE {stale}", [epoch])
            cur.executemany("UPDATE pipeline_jobs SET message = 'resumed after a restart', updated_at = ? "
                            "WHERE id = ?", [(now, j) for j in ids])
            cur.execute("UPDATE pipeline_jobs SET state = " + RESUMED_STATE + ", "
                        "current_step = NULL, current_service = NULL WHERE state IN ('running', 'waiting')")
        return epoch, ids

    # -- artifacts ------------------------------------------------------------------------------------
    def add_artifact(self, job_id: str, name: str, data: bytes | Path, step: str, *,
                     epoch: int | None = None) -> ArtifactOut:
        """Store ``data`` (bytes, or a finished file to move in) as artifact ``name`` with its sha256.

        With ``epoch``, the claim is checked before the file is written and again with the record, so a worker
        that lost the queue neither replaces its successor's file nor its record.

        Raises:
            ValueError: a name that is not a plain file name.
            StaleClaim: the step no longer runs under ``epoch``.
        """
        if not NAME_RE.match(name):
            raise ValueError(f"bad artifact name {name!r}")
        stale = StaleClaim(f"step {step} of job {job_id} is no longer claimed by worker epoch {epoch}")
        if epoch is not None:
            with self._tx() as cur:
                if self._fenced(cur, job_id, step, epoch, f"artifact {name}"):
                    raise stale
        path = self.job_dir(job_id) / name
        if isinstance(data, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
            data.replace(path)
        else:
            write_atomic(path, data)
        digest = sha256_file(path)
        size = path.stat().st_size
        mime = ARTIFACT_MIME.get(path.suffix.lower(), "application/octet-stream")
        now = self._clock()
        with self._tx() as cur:
            if self._fenced(cur, job_id, step, epoch, f"artifact {name}"):
                raise stale
            cur.execute("INSERT INTO pipeline_artifacts (job_id, name, path, sha256, bytes, mime, step, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, name) DO UPDATE SET "
                        "path = excluded.path, sha256 = excluded.sha256, bytes = excluded.bytes, "
                        "mime = excluded.mime, step = excluded.step, created_at = excluded.created_at",
                        [job_id, name, str(path.relative_to(self.artifacts_root)), digest, size, mime, step, now])
        return ArtifactOut(name=name, uri="", mime_type=mime, bytes=size, sha256=digest, step=step, created_at=now)

    def artifact(self, job_id: str, name: str) -> tuple[Path, str, str]:
        """``(path, mime type, sha256)`` of one artifact.

        Raises:
            ArtifactNotFound: unknown job or name, or the file is gone.
        """
        with self._tx(write=False) as cur:
            cur.execute("SELECT path, mime, sha256 FROM pipeline_artifacts WHERE job_id = ? AND name = ?",
                        [job_id, name])
            row = cur.fetchone()
        if row is None:
            raise ArtifactNotFound(f"job {job_id!r} has no artifact {name!r}")
        path = (self.artifacts_root / row[0]).resolve()
        if not path.is_relative_to(self.artifacts_root.resolve()) or not path.is_file():
            raise ArtifactNotFound(f"artifact {name!r} of job {job_id!r} is missing on disk")
        return path, row[1], row[2]


def _public_detail(raw: str | None) -> dict | None:
    if not raw:
        return None
    detail = json.loads(raw)
    return {k: v for k, v in detail.items() if not k.startswith("_")} or None
