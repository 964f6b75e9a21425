"""What a job about to be queued will meet, said in its ticket: a GPU service whose start breaker is open
(it failed to become ready, so it is not started again before a time), and no inference provider to fall
back on. Nothing here starts or waits for anything.

Readiness is probed (``GET /health`` and the like, ``PROBE_SECONDS`` each) only when it decides something:
with the SGLang service managed and startable, the worker will start it when the job's turn comes, so an
SGLang that is merely stopped (another service is loaded) is not a warning.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from sovereign_mcp.gpu.errors import GPUError
from sovereign_mcp.pipeline.deps import PipelineDeps
from sovereign_mcp.pipeline.models import KIND_STEPS

log = logging.getLogger(__name__)

PROBE_SECONDS = 1.0  # one readiness GET at submit time (loopback: an answer comes in milliseconds)


def clock_time(unix: float) -> str:
    """``unix`` (s) as ``HH:MM:SS UTC`` with the seconds left from now, for job messages."""
    at = datetime.fromtimestamp(unix, UTC).strftime("%H:%M:%S UTC")
    return f"{at} (in {max(0.0, unix - time.time()):.0f} s)"


def _retry_at(deps: PipelineDeps, name: str | None) -> float | None:
    if name is None:
        return None
    try:
        return deps.gpu.start_blocked(name)
    except GPUError:
        return None


def outlook(deps: PipelineDeps, kind: str) -> list[str]:
    """Warnings for a ``kind`` job queued now, one sentence each (empty: nothing known to be in the way).

    Raises nothing: a probe that fails is itself the warning, and a GPU state that cannot be read is logged
    and skipped.
    """
    roles = {spec.service for spec in KIND_STEPS[kind] if spec.service is not None}
    notes: list[str] = []
    try:
        for role in sorted(roles - {"sglang"}):
            name = deps.gpu_service_for(role)
            retry_at = _retry_at(deps, name)
            if retry_at is not None:
                notes.append(f"the {role} service {name} failed to start and is not tried again before "
                             f"{clock_time(retry_at)}; its steps wait until then")
        if "sglang" in roles:
            notes += _inference_outlook(deps)
    except Exception:  # advisory: the job is queued either way
        log.exception("pipeline: could not work out the outlook of a %s job", kind)
    return notes


def _inference_outlook(deps: PipelineDeps) -> list[str]:
    name = deps.gpu_service_for("sglang")
    retry_at = _retry_at(deps, name)
    if name is not None and retry_at is None:
        return []  # the worker starts SGLang when the job's turn comes
    skip = ("sglang",) if name is not None else ()  # a blocked SGLang service is not up: ask the fallbacks
    health = deps.chat.health(timeout=PROBE_SECONDS, skip_kinds=skip)
    ready = [provider for provider, reason in health.items() if reason is None]
    notes = []
    if retry_at is not None:
        fallback = f"text steps run on {ready[0]}" if ready else "text steps wait for a provider"
        notes.append(f"the SGLang service {name} failed to start and is not tried again before "
                     f"{clock_time(retry_at)}; {fallback}")
    if not ready:
        reasons = "; ".join(f"{provider}: {reason}" for provider, reason in health.items()) or "none configured"
        notes.append(f"no inference provider answers ({reasons}); the job waits until one does")
    return notes
