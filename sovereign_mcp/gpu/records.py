"""Records of the GPU service manager: service states and event names (declared once, here), the event
log rows, status snapshots, the lease handle, and the overlap check over an event log.

Times are unix seconds; memory figures GB (10^9 bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal, get_args

from pydantic import BaseModel, Field

from sovereign_mcp.gpu.config import ServiceKind

ServiceState = Literal["stopped", "starting", "running", "stopping", "failed"]
SERVICE_STATES: tuple[ServiceState, ...] = get_args(ServiceState)
"""Every state a service can be recorded in (``sovereign_mcp_gpu_service_state`` label values)."""
ACTIVE_STATES: tuple[ServiceState, ...] = ("starting", "running", "stopping")
"""States in which a service may hold GPU memory."""

EventName = Literal["stop_requested", "stopped", "cooldown_wait", "memory_ok", "memory_wait", "start_requested",
                    "ready", "lease_granted", "lease_released", "failed"]
EVENT_NAMES: tuple[EventName, ...] = get_args(EventName)
"""Every event name of the event log."""


class GPUEvent(BaseModel):
    """One row of the event log; ``ts`` in unix seconds, ``pid`` of the process that acted."""

    id: int
    ts: float
    service: str
    event: str
    detail: str = ""
    job_id: str | None = None
    pid: int


class LeaseInfo(BaseModel):
    """A lease currently held (from any process)."""

    id: str
    service: str
    job_id: str | None = None
    pid: int
    granted_at: float


class ServiceStatus(BaseModel):
    """One service as recorded: ``state`` is one of :data:`SERVICE_STATES`."""

    name: str
    kind: ServiceKind
    state: str
    memory_gb: float
    leases: int
    jobs: list[str | None] = Field(default_factory=list)
    changed_at: float
    last_stop_at: float | None = None
    detail: str = ""


class GPUStatus(BaseModel):
    """The pool: services, leases held, jobs queued, last stop (any service) and free memory (GB)."""

    services: list[ServiceStatus]
    active: list[str] = Field(description="Services recorded starting, running or stopping.")
    leases: list[LeaseInfo]
    waiting: int = Field(description="acquire() calls queued")
    last_stop_at: float | None = None
    last_stop_service: str | None = None
    cooldown_until: float | None = None
    mem_available_gb: float | None = None


class Lease:
    """A job's right to use ``service`` until :meth:`release` (or the end of a ``with`` block).

    ``on_release(lease)`` is called once, by the first :meth:`release` (the manager drops the record).
    """

    def __init__(self, on_release: Callable[[Lease], None], lease_id: str, service: str, job_id: str | None,
                 granted_at: float) -> None:
        self._on_release = on_release
        self.id = lease_id
        self.service = service
        self.job_id = job_id
        self.granted_at = granted_at
        self.released = False

    def release(self) -> None:
        """Give the lease back (idempotent). The service keeps running."""
        if not self.released:
            self.released = True
            self._on_release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"Lease({self.service!r}, job_id={self.job_id!r}, id={self.id!r}, {state})"


def find_overlaps(events: Iterable[GPUEvent], *, after_id: int = 0) -> list[str]:
    """Violations of the one-service rule in an event log (empty list = none).

    A service counts as holding memory from its ``start_requested`` until its ``stopped``; a
    ``start_requested`` while another service holds memory is a violation. Only violations at events with
    ``id > after_id`` are reported (earlier events still count for what is up).
    """
    up: set[str] = set()
    problems = []
    for event in sorted(events, key=lambda e: e.id):
        if event.event == "start_requested":
            others = up - {event.service}
            if others and event.id > after_id:
                problems.append(f"event {event.id}: {event.service} start requested while {sorted(others)} up")
            up.add(event.service)
        elif event.event == "stopped":
            up.discard(event.service)
    return problems
