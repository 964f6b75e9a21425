"""How long a job still needs, from the recorded durations of the same steps in earlier jobs.

Rule: each step's expected duration is the median of its last :data:`SAMPLES` recorded runs (``finished_at -
started_at`` of ``done`` steps, :meth:`~sovereign_mcp.pipeline.queries.JobQueries.step_durations`); the
median, not the mean, so one run that waited out a GPU switch or an outage does not skew it. A job's ETA is
the sum over its steps still ``pending``, plus what is left of the running step (its expectation minus the
time it has run, at least 0). Steps never recorded yet make the estimate a lower bound (``unknown_steps``).
Only this job's own work is counted, not jobs ahead of it in the queue. Durations are seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import median

from pydantic import BaseModel, Field

from sovereign_mcp.pipeline.models import JobStatus

SAMPLES = 20
"""Recorded runs per step name that the median is taken over (newest first)."""


class Eta(BaseModel):
    """A job's estimated remaining time."""

    seconds: float | None = Field(description="Work left, s (null: finished, or nothing known yet).")
    exact: bool = Field(description="Every step left has a recorded duration (false: seconds is a lower bound).")
    unknown_steps: list[str] = Field(default_factory=list, description="Steps left that never ran before.")


def expected_durations(samples: Iterable[tuple[str, float]], per_step: int = SAMPLES) -> dict[str, float]:
    """Median seconds per step name over the first ``per_step`` samples of each (give them newest first)."""
    kept: dict[str, list[float]] = {}
    for name, seconds in samples:
        runs = kept.setdefault(name, [])
        if len(runs) < per_step:
            runs.append(seconds)
    return {name: float(median(runs)) for name, runs in kept.items() if runs}


def estimate(job: JobStatus, expected: Mapping[str, float], now: float) -> Eta:
    """The ETA of ``job`` at unix time ``now`` given :func:`expected_durations`."""
    if job.state in ("done", "failed", "cancelled"):
        return Eta(seconds=None, exact=True)
    total, unknown = 0.0, []
    for step in job.steps:
        if step.state not in ("pending", "running"):
            continue
        guess = expected.get(step.name)
        if guess is None:
            unknown.append(step.name)
            continue
        if step.state == "running" and step.started_at is not None:
            guess = max(guess - (now - step.started_at), 0.0)
        total += guess
    left = [s for s in job.steps if s.state in ("pending", "running")]
    if left and len(unknown) == len(left):
        return Eta(seconds=None, exact=False, unknown_steps=unknown)
    return Eta(seconds=round(total, 1), exact=not unknown, unknown_steps=unknown)
