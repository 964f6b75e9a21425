"""One GPU service at a time: stop the others, wait out the cooldown, check free memory, start, wait
until ready, then hand out counted leases.

Why (operator's stack article, "The Sequential-Services Rule"): SGLang (~94 GB), Voxtral TTS (~111 GB)
and ComfyUI FLUX (~14 GB) share the GB10's 128 GB unified memory pool. Two of them loaded together do not
crash at load time: the out-of-memory shows on the first real request, after everything looked healthy.
The cooldown and memory guard are in :mod:`sovereign_mcp.gpu.guards`, the shared state in
:mod:`sovereign_mcp.gpu.state`.

Rules enforced by :meth:`GPUServiceManager.acquire`:

* Switching (stop others -> cooldown -> memory guard -> start -> readiness) happens only while holding an
  exclusive ``fcntl.flock`` on ``<state dir>/state.lock``, so threads and processes sharing a data dir
  never switch at the same time.
* A running service is stopped only when it has no live lease (checked and marked ``stopping`` in one
  SQLite transaction; a lease is granted only on a ``running`` service in one transaction).
* Jobs queue first come, first served: a job may share the running service only if no job that asked
  earlier wants another one, so a long run of SGLang jobs cannot starve a waiting Voxtral job.
* Leases and queue entries of a process that died are dropped (process id + start time from ``/proc``).
* Every step is appended to the event log (:meth:`GPUServiceManager.events`); :func:`find_overlaps`
  checks from it that no two services were ever up together.

A PostgreSQL job queue shared with other hosts is run by the one worker holding the queue's lock
(:mod:`sovereign_mcp.pipeline.lock`), with this host's manager. Times are unix seconds from the injected
clock; memory figures are GB (10^9 bytes). A lease does not stop its service when released: the next job
for another service does, or :meth:`GPUServiceManager.stop`. Do not acquire a second service while holding
a lease on another one in the same job: the second call waits for the first lease and ends in
:class:`ServiceBusyError`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from sovereign_mcp.db import Cursor
from sovereign_mcp.flock import try_lock, unlock
from sovereign_mcp.gpu.commands import CommandResult, Runner, run_command
from sovereign_mcp.gpu.config import GPUServiceSettings, GPUSettings
from sovereign_mcp.gpu.driver import ServiceDriver
from sovereign_mcp.gpu.errors import (
    GPUError,
    MemoryGuardError,
    ServiceBusyError,
    ServiceStartError,
    ServiceStopError,
    ServiceUnavailableError,
    UnknownServiceError,
)
from sovereign_mcp.gpu.guards import memory_guard, wait_cooldown
from sovereign_mcp.gpu.host import read_mem_available_gb
from sovereign_mcp.gpu.readiness import Poller, Probe, Readiness, http_probe
from sovereign_mcp.gpu.records import (
    EVENT_NAMES,
    SERVICE_STATES,
    EventName,
    GPUEvent,
    GPUStatus,
    Lease,
    LeaseInfo,
    ServiceState,
    ServiceStatus,
    find_overlaps,
)
from sovereign_mcp.gpu.state import Breaker, GPUState, Snapshot

__all__ = [  # the names this module always offered, now defined in the modules above
    "EVENT_NAMES", "SERVICE_STATES", "CommandResult", "EventName", "GPUError", "GPUEvent", "GPUServiceManager",
    "GPUStatus", "Lease", "LeaseInfo", "MemoryGuardError", "Probe", "Readiness", "Runner", "ServiceBusyError",
    "ServiceStartError", "ServiceState", "ServiceStatus", "ServiceStopError", "ServiceUnavailableError",
    "UnknownServiceError",
    "find_overlaps", "http_probe", "read_mem_available_gb", "run_command",
]


# -- the manager ----------------------------------------------------------------------------------
class GPUServiceManager:
    """Runs at most one of ``settings.services`` at a time; see the module docstring for the rules.

    Args:
        settings: the GPU pool settings.
        data_dir: where the state database and lock file live (``settings.state_path`` may override).
        clock: wall clock, unix seconds (stop times are persisted, so it must be wall time).
        sleep: ``sleep(seconds)``.
        runner: runs start/stop commands, default :func:`run_command`.
        probe: readiness check, default :func:`http_probe` with ``probe_connect_timeout``.
    """

    def __init__(self, settings: GPUSettings, data_dir: Path, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, runner: Runner = run_command,
                 probe: Probe | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        if probe is None:
            probe = functools.partial(http_probe, connect_timeout=settings.probe_connect_timeout)
        self._poll = Poller(probe, settings.http_timeout, settings.poll_interval, clock, sleep)
        self._state = GPUState(settings, data_dir, clock)
        self.state_path = self._state.path
        self.lock_path = self.state_path.with_suffix(".lock")
        self._driver = ServiceDriver(self._state, self._poll, runner, clock)

    # -- public API --------------------------------------------------------------------------------
    def acquire(self, name: str, job_id: str | None = None, *, timeout: float | None = None) -> Lease:
        """A lease on service ``name``, starting it first if needed (blocking).

        If ``name`` is running and answers 200 (or is already leased), the lease is granted at once and
        shared with the other jobs using it. Otherwise, holding the switch lock: every other service that
        is recorded up or answers its readiness URL is stopped (once its leases are released), the
        cooldown since the last stop is waited, ``MemAvailable`` must reach ``memory_gb +
        memory_margin_gb`` within ``memory_wait_seconds``, the start command runs and the readiness URL is
        polled for up to ``ready_timeout`` s.

        Args:
            name: a configured service name.
            job_id: free text recorded with the lease and its events.
            timeout: longest wait for other jobs' leases or switches, s (default ``busy_timeout_seconds``).
                Cooldown, memory wait and start-up of this job's own switch are not counted.

        Raises:
            UnknownServiceError: ``name`` is not configured.
            ServiceBusyError: other leases or switches outlasted ``timeout``.
            MemoryGuardError: not enough free memory (figures in GB in the message); nothing was started.
            ServiceStartError: start command failed or not ready in time; the service was stopped again.
            ServiceStopError: another service could not be stopped; nothing was started.
            ServiceUnavailableError: the start breaker of ``name`` is open (see :meth:`start_blocked`); raised
                at once, before any wait, or after the wait if another process's start failed meanwhile.
        """
        config = self._config(name)
        self._refuse_if_blocked(name)
        limit = self.settings.busy_timeout_seconds if timeout is None else max(0.0, timeout)
        began = self._clock()
        seq = self._state.enqueue(name, job_id)
        try:
            while True:
                lease = self._attempt(config, seq, job_id)
                if lease is not None:
                    return lease
                waited = self._clock() - began
                if waited >= limit:
                    reason = self._busy_reason(name, seq)
                    self._state.event(name, "failed", f"gave up after {waited:.1f} s: {reason}", job_id)
                    raise ServiceBusyError(name, f"{name} not available within {limit:g} s: {reason}")
                self._sleep(min(self.settings.poll_interval, limit - waited))
        finally:
            self._state.dequeue(seq)

    def stop(self, name: str, *, timeout: float | None = None) -> bool:
        """Stop service ``name`` once nobody holds a lease on it. Returns ``False`` if it was not up.

        Raises:
            UnknownServiceError, ServiceBusyError (leases outlasted ``timeout``), ServiceStopError.
        """
        config = self._config(name)
        limit = self.settings.busy_timeout_seconds if timeout is None else max(0.0, timeout)
        began = self._clock()
        while True:
            fd = self._lock(name, "stop")
            if fd is not None:
                try:
                    with self._state.tx() as cur:
                        snap = self._state.snapshot(cur, None)
                        free = snap.leases[name] == 0
                        state = snap.states.get(name, "stopped")
                    if free:
                        reason = f"requested (recorded {state})"
                        if state == "stopped":
                            answer = self._poll.check(config.readiness_url)
                            if not answer.reachable:
                                return False
                            reason = f"answers {config.readiness_url} ({answer.detail}) though recorded stopped"
                        if self._claim_stops([(config, reason)], None):
                            self._driver.stop(config, None)
                            return True
                finally:
                    self._unlock(fd)
            waited = self._clock() - began
            if waited >= limit:
                raise ServiceBusyError(name, f"{name} still leased or switching after {limit:g} s")
            self._sleep(min(self.settings.poll_interval, limit - waited))

    def report_failure(self, name: str, reason: str, job_id: str | None = None) -> None:
        """A client found ``name`` dead mid-use (its API stopped answering though it was granted): record it
        ``failed`` (event ``failed`` with ``reason``), so the next :meth:`acquire` stops and restarts it under
        the one-at-a-time rule instead of granting it as running.

        Raises:
            UnknownServiceError: ``name`` is not configured.
        """
        self._config(name)
        self._driver.fail(name, f"reported dead by its client: {reason}", job_id)

    def start_blocked(self, name: str) -> float | None:
        """When ``name`` may be started again (unix s) while its start breaker is open, else ``None``.

        The breaker opens when a start does not become ready (for ``start_backoff_seconds``, doubling per
        failure in a row up to ``start_backoff_max_seconds``) and closes when a start becomes ready; it is
        shared by every process on this data dir. While it is open :meth:`acquire` raises
        :class:`ServiceUnavailableError` at once, so a caller can pick a fallback before taking a lease.

        Raises:
            UnknownServiceError: ``name`` is not configured.
        """
        self._config(name)
        breaker = self._open_breaker(name)
        return breaker.retry_at if breaker is not None else None

    def stop_idle(self, now: float | None = None) -> list[str]:
        """Stop every running service that has had no lease and no queued job for its ``idle_stop_seconds``
        (``now``: unix s, default the clock); the names stopped. Each stop is logged ``stop_requested``
        with the idle time. Nothing is done while a switch holds the lock (the next call tries again); a
        stop that fails is logged and recorded ``failed``, not raised.
        """
        at = self._clock() if now is None else now
        limits = {s.name: s.idle_stop_seconds for s in self.settings.services if s.idle_stop_seconds is not None}
        if not limits:
            return []
        with self._state.tx() as cur:
            due = [n for n, idle in self._state.idle_for(cur, at).items() if n in limits and idle >= limits[n]]
        fd = self._lock(", ".join(due), "idle stop") if due else None
        if fd is None:
            return []
        stopped = []
        try:
            for name in due:
                with self._state.tx() as cur:  # checked again with the lock held: a job may have come
                    idle = self._state.idle_for(cur, at).get(name)
                    if idle is None or idle < limits[name]:
                        continue
                    why = f"idle for {idle:.0f} s (idle_stop_seconds = {limits[name]:g})"
                    self._state.set_state(cur, name, "stopping", why)
                    self._state.log(cur, name, "stop_requested", why)
                try:
                    self._driver.stop(self._config(name), None)
                    stopped.append(name)
                except ServiceStopError:
                    continue
        finally:
            self._unlock(fd)
        return stopped

    def status(self) -> GPUStatus:
        """What is recorded now (no HTTP checks); drops leases of dead processes first."""
        return self._state.status()

    def events(self, *, service: str | None = None, since_id: int = 0, since_ts: float | None = None,
               limit: int | None = None) -> list[GPUEvent]:
        """Event log rows with ``id > since_id`` (and ``ts >= since_ts``, unix s), oldest first (optionally one
        service, at most ``limit``)."""
        return self._state.events(service=service, since_id=since_id, since_ts=since_ts, limit=limit)

    def latest_events(self, limit: int, *, service: str | None = None, event: str | None = None) -> list[GPUEvent]:
        """The newest ``limit`` event log rows, newest first (optionally one service and one event name, e.g.
        ``"ready"`` for the last time a service became ready)."""
        return self._state.latest_events(limit, service=service, event=event)

    def close(self) -> None:
        """Close this thread's database connection."""
        self._state.close()

    # -- queue -----------------------------------------------------------------------------------------
    def _next_step(self, cur: Cursor, name: str, seq: int) -> tuple[str, Snapshot]:
        snap = self._state.snapshot(cur, seq)
        return snap.next_step(name), snap

    def _grant(self, cur: Cursor, name: str, seq: int, job_id: str | None) -> Lease:
        lease_id, granted_at = self._state.grant(cur, name, seq, job_id)
        return Lease(self._release, lease_id, name, job_id, granted_at)

    def _release(self, lease: Lease) -> None:
        self._state.release(lease.id, lease.service, lease.granted_at, lease.job_id)

    def _open_breaker(self, name: str) -> Breaker | None:
        with self._state.tx(write=False) as cur:
            breaker = self._state.breaker(cur, name)
        return breaker if breaker is not None and breaker.retry_at > self._clock() else None

    def _refuse_if_blocked(self, name: str) -> None:
        breaker = self._open_breaker(name)
        if breaker is not None:
            left = breaker.retry_at - self._clock()
            raise ServiceUnavailableError(name, f"{name} is not started again for {left:.0f} s (start breaker "
                                          f"open after {breaker.failures} failed start(s); last: {breaker.reason})",
                                          breaker.retry_at, breaker.reason)

    def _busy_reason(self, name: str, seq: int) -> str:
        with self._state.tx() as cur:
            reason = self._state.snapshot(cur, seq).busy_reason(name)
        if reason is not None:
            return reason
        try:
            holder = self.lock_path.read_text().strip()
        except OSError:
            holder = ""
        return f"another switch in progress ({holder or 'lock held'})"

    # -- switching -------------------------------------------------------------------------------------
    def _config(self, name: str) -> GPUServiceSettings:
        try:
            return self.settings.service(name)
        except KeyError as exc:
            raise UnknownServiceError(name, str(exc.args[0])) from None

    def _lock(self, name: str, job_id: str | None) -> int | None:
        """The switch lock (non-blocking ``flock``); an fd to pass to :meth:`_unlock`, or ``None`` if held."""
        return try_lock(self.lock_path, f"switching to {name} for job {job_id}")

    @staticmethod
    def _unlock(fd: int) -> None:
        unlock(fd)

    def _attempt(self, config: GPUServiceSettings, seq: int, job_id: str | None) -> Lease | None:
        name = config.name
        with self._state.tx() as cur:
            step, snap = self._next_step(cur, name, seq)
            if step == "grant" and snap.leases[name] > 0:
                return self._grant(cur, name, seq, job_id)
        if step == "wait":
            return None
        if step == "grant" and self._poll.check(config.readiness_url).ready:
            with self._state.tx() as cur:
                step, snap = self._next_step(cur, name, seq)
                return self._grant(cur, name, seq, job_id) if step == "grant" else None
        fd = self._lock(name, job_id)
        if fd is None:
            return None
        try:
            return self._switch(config, seq, job_id)
        finally:
            self._unlock(fd)

    def _switch(self, config: GPUServiceSettings, seq: int, job_id: str | None) -> Lease | None:
        """With the lock held: stop the others, cooldown, memory guard, start, readiness, grant."""
        name = config.name
        answer: Readiness | None = None
        with self._state.tx() as cur:
            step, snap = self._next_step(cur, name, seq)
            if step == "wait":
                return None
            if step == "grant" and snap.leases[name] > 0:
                return self._grant(cur, name, seq, job_id)
        if step == "grant":  # recorded running, nobody uses it: healthy -> grant, else restart it
            answer = self._poll.check(config.readiness_url)
            if answer.ready:
                with self._state.tx() as cur:
                    step, snap = self._next_step(cur, name, seq)
                    return self._grant(cur, name, seq, job_id) if step == "grant" else None
        self._refuse_if_blocked(name)  # another process's start may have failed while this one waited
        to_stop: list[tuple[GPUServiceSettings, str]] = []
        for service in self.settings.services:
            state = snap.states.get(service.name, "stopped")
            if state != "stopped":
                why = f"recorded {state}"
                if service.name == name:
                    why += f" but {answer.detail}" if answer is not None else " (left over)"
                to_stop.append((service, why))
                continue
            seen = self._poll.check(service.readiness_url)
            if seen.reachable:
                to_stop.append((service, f"answers {service.readiness_url} ({seen.detail}) though recorded stopped"))
        if to_stop and not self._claim_stops(to_stop, job_id):
            return None
        for service, _ in to_stop:
            self._driver.stop(service, job_id)
        wait_cooldown(self._state, config, self._clock, self._sleep, job_id)
        memory_guard(self._state, config, self._clock, self._sleep, job_id)
        self._driver.start(config, job_id)
        with self._state.tx() as cur:
            return self._grant(cur, name, seq, job_id)

    def _claim_stops(self, to_stop: list[tuple[GPUServiceSettings, str]], job_id: str | None) -> bool:
        """Mark services ``stopping`` if none has a lease (one transaction, so no lease can slip in)."""
        with self._state.tx() as cur:
            snap = self._state.snapshot(cur, None)
            if any(snap.leases[service.name] > 0 for service, _ in to_stop):
                return False
            for service, why in to_stop:
                self._state.set_state(cur, service.name, "stopping", why)
                self._state.log(cur, service.name, "stop_requested", why, job_id)
        return True
