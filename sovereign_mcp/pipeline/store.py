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

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sovereign_mcp.db import Cursor
from sovereign_mcp.pipeline.artifacts import ArtifactRecords
from sovereign_mcp.pipeline.models import FINISHED, KIND_STEPS, RETRY_GROUPS, GateAttempt, spec_of
from sovereign_mcp.pipeline.queries import JobQueries
from sovereign_mcp.pipeline.records import (
    ACTIVE,
    JOB_ID_RE,
    ArtifactNotFound,
    JobNotFound,
    JobNotRetriable,
    StaleClaim,
)

__all__ = ["JOB_ID_RE", "ArtifactNotFound", "Candidate", "JobNotFound", "JobNotRetriable", "JobStore", "StaleClaim"]

log = logging.getLogger(__name__)

RESUMED_STATE = "CASE WHEN started_at IS NULL THEN 'queued' ELSE 'running' END"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pending step whose dependencies are done: the scheduler picks among these."""

    job_id: str
    seq: int
    step: str
    index: int
    service: str | None
    ready_since: float


class JobStore(JobQueries, ArtifactRecords):
    """The pipeline's persistent state: jobs and their steps move through their states here (records and
    schema: :class:`~sovereign_mcp.pipeline.records.StoreBase`; reports:
    :class:`~sovereign_mcp.pipeline.queries.JobQueries`; artifacts:
    :class:`~sovereign_mcp.pipeline.artifacts.ArtifactRecords`)."""

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

    def resume(self, job_id: str) -> list[str]:
        """Queue a failed or cancelled job again from its last finished step (the operator's retry): finished
        steps and artifacts are kept, failed and cancelled steps go back to ``pending``. A job that failed at
        a quality gate regenerates that track once more (the whole track, one attempt: its attempt count goes
        up by one). Returns the steps that will run again, in order.

        Raises:
            JobNotFound: no such job.
            JobNotRetriable: the job is queued, running, waiting or done.
        """
        now = self._clock()
        with self._tx() as cur:
            row = self._row(cur, job_id, lock=True)
            if row["state"] not in ("failed", "cancelled"):
                raise JobNotRetriable(f"job {job_id} is {row['state']}: only a failed or cancelled job can be retried")
            cur.execute("SELECT name, state FROM pipeline_steps WHERE job_id = ? ORDER BY idx", [job_id])
            states = dict(cur.fetchall())
            again = {name for name, state in states.items() if state in ("failed", "cancelled")}
            attempts = json.loads(row["attempts"])
            for gate in [name for name in again if name in RETRY_GROUPS and states[name] == "failed"]:
                track = spec_of(row["kind"], gate).track
                attempts[track] = attempts.get(track, 1) + 1
                again |= set(RETRY_GROUPS[gate])
            order = [name for name in states if name in again]
            cur.executemany("UPDATE pipeline_steps SET state = 'pending', attempt = ?, started_at = NULL, "
                            "finished_at = NULL, error = NULL WHERE job_id = ? AND name = ?",
                            [(attempts.get(spec_of(row["kind"], n).track, 1), job_id, n) for n in order])
            cur.execute("UPDATE pipeline_jobs SET state = 'queued', error = NULL, finished_at = NULL, "
                        "cancel_requested = 0, current_step = NULL, current_service = NULL, attempts = ?, "
                        "message = ?, updated_at = ? WHERE id = ?",
                        [json.dumps(attempts), f"retried: resumes at {order[0] if order else 'the end'}", now, job_id])
            return order

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
