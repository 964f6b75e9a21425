"""The two waits before a GPU service starts: the cooldown after the last stop, and the memory guard.

Why (operator's stack article, "The Sequential-Services Rule"): after a stop the unified memory comes
back late, so the next service waits ``cooldown_seconds`` counted from the persisted stop time (it holds
across restarts); and ``MemAvailable`` must cover the service's ``memory_gb`` plus ``memory_margin_gb``
(llama-swap swaps model servers but never checks memory before loading). Both log their waits to the
event log of ``state``. Times are unix seconds from ``clock``; memory figures GB (10^9 bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sovereign_mcp.gpu.config import GPUServiceSettings
from sovereign_mcp.gpu.errors import MemoryGuardError
from sovereign_mcp.gpu.host import read_mem_available_gb
from sovereign_mcp.gpu.state import GPUState


def wait_cooldown(state: GPUState, config: GPUServiceSettings, clock: Callable[[], float],
                  sleep: Callable[[float], None], job_id: str | None) -> None:
    """Sleep until the cooldown after the last persisted stop is over (the longer of the stopped and the
    starting service's ``cooldown_seconds``; capped, so a wall clock set back cannot stretch it)."""
    with state.tx(write=False) as cur:
        last_at, last_service = state.last_stop(cur)
    if last_at is None:
        return
    needed = max(config.cooldown_seconds, state.cooldown_of(last_service))
    now = clock()
    remaining = min(needed, last_at + needed - now)
    if remaining <= 0:
        return
    stamp = datetime.fromtimestamp(last_at, UTC).isoformat(timespec="seconds")
    state.event(config.name, "cooldown_wait", f"{remaining:.2f} s left of the {needed:g} s cooldown after "
                f"{last_service} stopped at {stamp}", job_id)
    end = now + remaining
    while (left := end - clock()) > 0:
        sleep(left)


def memory_guard(state: GPUState, config: GPUServiceSettings, clock: Callable[[], float],
                 sleep: Callable[[float], None], job_id: str | None) -> None:
    """Wait (up to ``memory_wait_seconds``) until ``MemAvailable >= memory_gb + memory_margin_gb``.

    Raises:
        MemoryGuardError: still short at the deadline (or the meminfo file unreadable); logged ``failed``.
    """
    settings = state.settings
    margin = settings.memory_margin_gb
    need = config.memory_gb + margin
    path = settings.meminfo_path
    began = clock()
    deadline = began + settings.memory_wait_seconds
    logged_wait = False
    while True:
        try:
            available: float | None = read_mem_available_gb(path)
            seen = f"MemAvailable {available:.1f} GB"
        except (OSError, ValueError) as exc:
            available, seen = None, f"cannot read MemAvailable from {path}: {exc}"
        figures = f"{seen}, need {need:.1f} GB ({config.memory_gb:g} GB + {margin:g} GB margin)"
        if available is not None and available >= need:
            state.event(config.name, "memory_ok", figures, job_id)
            return
        now = clock()
        if now >= deadline:
            message = (f"memory guard refused to start {config.name}: {figures} after waiting "
                       f"{now - began:.1f} s; another process may still hold GPU memory "
                       "(check for leftover sglang::/vllm/ComfyUI processes or containers)")
            state.event(config.name, "failed", message, job_id)
            raise MemoryGuardError(config.name, message, available, need)
        if not logged_wait:
            state.event(config.name, "memory_wait", f"{figures}; waiting up to "
                        f"{settings.memory_wait_seconds:g} s", job_id)
            logged_wait = True
        sleep(min(settings.poll_interval, deadline - now))
