"""Which ready step runs next: group steps by GPU service across the whole queue to minimise switches.

A switch between GPU services on the DGX Spark costs a stop, a 60 s cooldown and a model load (Voxtral
60-90 s), so the worker stays on the running service while any job has a ready step for it (e.g. every
pending SGLang step of the queue before Voxtral starts). Rules, in order:

1. CPU-only steps (quality gate, ffmpeg mix) run first: they are cheap and unblock GPU steps.
2. Fairness: once the current service has been loaded for ``switch_after`` seconds while another
   service's steps wait, the step that has waited longest is served next (the new service then gets its
   own batch window, so a long queue cannot ping-pong between services).
3. Stay on the current service while it has ready steps (oldest job first).
4. Otherwise switch to the service of the oldest job's ready step.

Pure functions over :class:`~sovereign_mcp.pipeline.store.Candidate`, shared with the benchmark.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sovereign_mcp.pipeline.store import Candidate


def _order(c: Candidate) -> tuple[int, int]:
    return c.seq, c.index


def choose(candidates: Sequence[Candidate], current: str | None, *, now: float, current_since: float | None = None,
           switch_after: float = 0.0, exclude: Collection[str | None] = ()) -> Candidate | None:
    """The step to run next, or ``None`` when every candidate's service is excluded.

    Args:
        candidates: ready steps (dependencies done), any order.
        current: the GPU role now loaded (``None`` = none).
        now: current time, s.
        current_since: when ``current`` was loaded, s (``None`` = unknown: no fairness switch).
        switch_after: fairness bound, s (0 = off).
        exclude: roles not to schedule now (e.g. ``"sglang"`` while every inference provider is down).
    """
    usable = [c for c in candidates if c.service not in exclude]
    if not usable:
        return None
    cpu = [c for c in usable if c.service is None]
    if cpu:
        return min(cpu, key=_order)
    if current is not None and current_since is not None and switch_after > 0 and now - current_since >= switch_after:
        others = [c for c in usable if c.service != current]
        if others:
            return min(others, key=lambda c: (c.ready_since, *_order(c)))
    same = [c for c in usable if c.service == current]
    if same:
        return min(same, key=_order)
    return min(usable, key=_order)


def choose_naive(candidates: Sequence[Candidate]) -> Candidate | None:
    """First come, first served: the oldest job's next step, whatever service it needs (for comparison)."""
    return min(candidates, key=_order) if candidates else None
