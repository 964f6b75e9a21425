"""Read-side reports of the job store: one job's status, job lists, counts per state and per GPU role."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sovereign_mcp.pipeline.models import ArtifactOut, GateAttempt, JobStatus, JobSummary, StepOut, spec_of
from sovereign_mcp.pipeline.records import ACTIVE, StoreBase


class JobQueries(StoreBase):
    """What the MCP tools, the CLI, the metrics and the steps read (no state changes)."""

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

    def step_durations(self, limit: int = 500) -> list[tuple[str, float]]:
        """``(step name, seconds)`` of the newest ``limit`` finished (``done``) steps, newest first: the recorded
        durations the dashboard's ETA is estimated from (``finished_at - started_at`` of the last attempt)."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT name, finished_at - started_at FROM pipeline_steps WHERE state = 'done' AND "
                        "started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
                        [limit])
            return [(str(name), max(float(seconds), 0.0)) for name, seconds in cur.fetchall()]

    def finished_since(self, since: float) -> list[tuple[str, float]]:
        """``(state, finished_at)`` of every job finished at or after ``since`` (unix s), for jobs per day."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT state, finished_at FROM pipeline_jobs WHERE finished_at IS NOT NULL AND "
                        "finished_at >= ?", [since])
            return [(str(state), float(at)) for state, at in cur.fetchall()]

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


def _public_detail(raw: str | None) -> dict | None:
    if not raw:
        return None
    detail = json.loads(raw)
    return {k: v for k, v in detail.items() if not k.startswith("_")} or None
