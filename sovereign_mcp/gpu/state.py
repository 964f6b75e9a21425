"""The GPU manager's shared state: one SQLite file (WAL, through :class:`sovereign_mcp.db.Database`) per data
dir, so every thread and process of this host sees the same services, leases, queue and event log.

It lives under the data dir, never in ``database_url``: the GPU is one physical box, so its state (which
service runs, leases held by local process ids) is per host by nature. Tables:

* ``gpu_services``: recorded state of each configured service (:data:`~sovereign_mcp.gpu.records.SERVICE_STATES`),
  when it changed and when it last stopped.
* ``gpu_leases``: leases held, with the owner as ``pid:starttime`` (:func:`sovereign_mcp.gpu.host.owner_token`).
* ``gpu_waiters``: ``acquire()`` calls queued, first come first served (``seq``).
* ``gpu_meta``: the last stop of any service (``last_stop_at``, ``last_stop_service``) for the cooldown, and
  when each service was last leased or released (``used:<name>``) for the idle stop.
* ``gpu_events``: the append-only event log, trimmed to ``event_retention`` rows when a manager starts.
* ``gpu_breakers``: per-service start breaker: consecutive failed starts and when a start is allowed again.

Times are unix seconds from the injected clock.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sovereign_mcp.db import Cursor, Database
from sovereign_mcp.gpu.config import GPUServiceSettings, GPUSettings
from sovereign_mcp.gpu.host import mem_available_gb, owner_alive, owner_token, pid_of
from sovereign_mcp.gpu.records import (
    ACTIVE_STATES,
    EventName,
    GPUEvent,
    GPUStatus,
    LeaseInfo,
    ServiceState,
    ServiceStatus,
)

logger = logging.getLogger("sovereign_mcp.gpu.manager")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS gpu_services (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        changed_at REAL NOT NULL,
        last_stop_at REAL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS gpu_leases (
        id TEXT PRIMARY KEY, service TEXT NOT NULL, job_id TEXT, owner TEXT NOT NULL, granted_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS gpu_waiters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, job_id TEXT, owner TEXT NOT NULL,
        since REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS gpu_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS gpu_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, service TEXT NOT NULL, event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '', job_id TEXT, pid INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS gpu_breakers (
        service TEXT PRIMARY KEY, failures INTEGER NOT NULL, retry_at REAL NOT NULL, reason TEXT NOT NULL
    )""",
]


@dataclass(frozen=True, slots=True)
class Breaker:
    """An open start breaker: ``failures`` starts in a row did not become ready; no start before ``retry_at``
    (unix s); ``reason`` is the last failure."""

    failures: int
    retry_at: float
    reason: str


def backoff_seconds(config: GPUServiceSettings, failures: int) -> float:
    """The start backoff after ``failures`` failed starts in a row: ``start_backoff_seconds`` doubled per
    further failure, at most ``start_backoff_max_seconds`` (10 min, 20 min, 40 min, then 1 h by default)."""
    return min(config.start_backoff_max_seconds, config.start_backoff_seconds * 2.0 ** min(failures - 1, 64))


@dataclass(slots=True)
class Snapshot:
    """Recorded states, live lease counts per service, and the services wanted by jobs queued earlier."""

    states: dict[str, str]
    leases: Counter[str]
    earlier: list[str] = field(default_factory=list)

    def next_step(self, name: str) -> str:
        """For a job queued for ``name``: ``grant`` (running: share it), ``switch`` (needs the lock) or ``wait``
        (an earlier job wants another service, or another service is leased)."""
        if any(other != name for other in self.earlier):
            return "wait"
        if self.states.get(name) == "running":
            return "grant"
        if any(count > 0 for service, count in self.leases.items() if service != name):
            return "wait"
        return "switch"

    def busy_reason(self, name: str) -> str | None:
        """Why a job for ``name`` waits (earlier jobs, other leases), ``None`` if neither."""
        if any(other != name for other in self.earlier):
            ahead = sorted({s for s in self.earlier if s != name})
            return f"queued behind earlier jobs for {', '.join(ahead)}"
        others = {s: n for s, n in self.leases.items() if s != name and n > 0}
        if others:
            return "held by " + ", ".join(f"{n} lease(s) on {s}" for s, n in sorted(others.items()))
        return None


class GPUState:
    """The state file of ``settings`` under ``data_dir`` (``settings.state_path`` may override it).

    Creates the tables, records every configured service (``stopped`` if new) and trims the event log.
    Methods taking a ``cur`` run inside the caller's :meth:`tx`.
    """

    def __init__(self, settings: GPUSettings, data_dir: Path, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.path = settings.resolved_state_path(Path(data_dir))
        self._clock = clock
        self.db = Database(path=self.path, busy_timeout=30.0)
        now = clock()
        with self.tx() as cur:
            for statement in SCHEMA:
                cur.execute(statement)
            for service in settings.services:
                cur.execute("INSERT OR IGNORE INTO gpu_services (name, state, changed_at) VALUES (?, 'stopped', ?)",
                            [service.name, now])
            cur.execute("DELETE FROM gpu_events WHERE id <= (SELECT MAX(id) FROM gpu_events) - ?",
                        [settings.event_retention])

    @contextmanager
    def tx(self, write: bool = True) -> Iterator[Cursor]:
        """A transaction (``BEGIN IMMEDIATE`` for writers, so two switches never interleave their checks)."""
        with self.db.tx(write) as cur:
            yield cur

    def close(self) -> None:
        """Close this thread's connection."""
        self.db.close()

    # -- event log ----------------------------------------------------------------------------------
    def log(self, cur: Cursor, service: str, event: EventName, detail: str = "", job_id: str | None = None,
            ts: float | None = None) -> None:
        """Append one event (and log it: ``failed`` at WARNING, the rest at INFO)."""
        cur.execute("INSERT INTO gpu_events (ts, service, event, detail, job_id, pid) VALUES (?, ?, ?, ?, ?, ?)",
                    [self._clock() if ts is None else ts, service, event, detail, job_id, os.getpid()])
        logger.log(logging.WARNING if event == "failed" else logging.INFO, "gpu %s %s%s%s", service, event,
                   f" [{job_id}]" if job_id else "", f": {detail}" if detail else "")

    def event(self, service: str, event: EventName, detail: str = "", job_id: str | None = None) -> None:
        """:meth:`log` in a transaction of its own."""
        with self.tx() as cur:
            self.log(cur, service, event, detail, job_id)

    def events(self, *, service: str | None = None, since_id: int = 0, since_ts: float | None = None,
               limit: int | None = None) -> list[GPUEvent]:
        """Event rows with ``id > since_id`` (and ``ts >= since_ts``), oldest first."""
        return self._events([("id > ?", since_id), ("ts >= ?", since_ts), ("service = ?", service)], "id", limit)

    def latest_events(self, limit: int, *, service: str | None = None, event: str | None = None) -> list[GPUEvent]:
        """The newest ``limit`` event rows (optionally of one service and one event name), newest first."""
        return self._events([("service = ?", service), ("event = ?", event)], "id DESC", max(int(limit), 0))

    def _events(self, where: list[tuple[str, Any]], order: str, limit: int | None) -> list[GPUEvent]:
        """Rows matching every ``(clause, value)`` whose value is not ``None``, in ``order``."""
        used = [(clause, value) for clause, value in where if value is not None]
        query = "SELECT id, ts, service, event, detail, job_id, pid FROM gpu_events WHERE 1 = 1"
        query += "".join(f" AND {clause}" for clause, _ in used) + f" ORDER BY {order}"
        params: list[Any] = [value for _, value in used]
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self.tx(write=False) as cur:
            cur.execute(query, params)
            return [GPUEvent(id=r[0], ts=r[1], service=r[2], event=r[3], detail=r[4], job_id=r[5], pid=r[6])
                    for r in cur.fetchall()]

    # -- services -----------------------------------------------------------------------------------
    def set_state(self, cur: Cursor, name: str, state: ServiceState, detail: str = "") -> None:
        """Record ``name`` as ``state`` now."""
        cur.execute("UPDATE gpu_services SET state = ?, changed_at = ?, detail = ? WHERE name = ?",
                    [state, self._clock(), detail, name])

    def record_stopped(self, cur: Cursor, name: str, gone_at: float, now: float) -> None:
        """Record ``name`` stopped at ``now``, gone at ``gone_at`` (the start of the next cooldown)."""
        cur.execute("UPDATE gpu_services SET state = 'stopped', changed_at = ?, last_stop_at = ?, detail = '' "
                    "WHERE name = ?", [now, gone_at, name])
        cur.executemany("INSERT OR REPLACE INTO gpu_meta (key, value) VALUES (?, ?)",
                        [("last_stop_at", repr(gone_at)), ("last_stop_service", name)])

    def last_stop(self, cur: Cursor) -> tuple[float | None, str | None]:
        """When the last stop of any service was (unix s) and which service it was."""
        cur.execute("SELECT key, value FROM gpu_meta WHERE key IN ('last_stop_at', 'last_stop_service')")
        meta = dict(cur.fetchall())
        at = meta.get("last_stop_at")
        return (float(at) if at is not None else None), meta.get("last_stop_service")

    # -- queue and leases ---------------------------------------------------------------------------
    def enqueue(self, name: str, job_id: str | None) -> int:
        """Queue an ``acquire()`` of ``name``; its sequence number."""
        with self.tx() as cur:
            cur.execute("INSERT INTO gpu_waiters (service, job_id, owner, since) VALUES (?, ?, ?, ?)",
                        [name, job_id, owner_token(), self._clock()])
            cur.execute("SELECT last_insert_rowid()")
            return int(cur.fetchone()[0] or 0)

    def dequeue(self, seq: int) -> None:
        """Drop queue entry ``seq`` (granted or given up)."""
        with self.tx() as cur:
            cur.execute("DELETE FROM gpu_waiters WHERE seq = ?", [seq])

    def reap(self, cur: Cursor) -> None:
        """Drop leases and queue entries whose process is gone."""
        alive: dict[str, bool] = {}

        def check(owner: str) -> bool:
            if owner not in alive:
                alive[owner] = owner_alive(owner)
            return alive[owner]

        cur.execute("SELECT id, service, job_id, owner FROM gpu_leases")
        for lease_id, service, job_id, owner in cur.fetchall():
            if not check(owner):
                cur.execute("DELETE FROM gpu_leases WHERE id = ?", [lease_id])
                self.log(cur, service, "lease_released", f"owner process {pid_of(owner)} is gone", job_id)
        cur.execute("SELECT seq, owner FROM gpu_waiters")
        for seq, owner in cur.fetchall():
            if not check(owner):
                cur.execute("DELETE FROM gpu_waiters WHERE seq = ?", [seq])

    def snapshot(self, cur: Cursor, seq: int | None) -> Snapshot:
        """States and live leases (dead owners reaped first); with ``seq``, the services queued before it."""
        self.reap(cur)
        cur.execute("SELECT name, state FROM gpu_services")
        states = dict(cur.fetchall())
        cur.execute("SELECT service, COUNT(*) FROM gpu_leases GROUP BY service")
        leases: Counter[str] = Counter(dict(cur.fetchall()))
        earlier: list[str] = []
        if seq is not None:
            cur.execute("SELECT service FROM gpu_waiters WHERE seq < ? ORDER BY seq", [seq])
            earlier = [r[0] for r in cur.fetchall()]
        return Snapshot(states, leases, earlier)

    def grant(self, cur: Cursor, name: str, seq: int, job_id: str | None) -> tuple[str, float]:
        """Record a lease on ``name`` for queue entry ``seq`` (removed); ``(lease id, granted at)``."""
        lease_id = uuid.uuid4().hex[:16]
        now = self._clock()
        cur.execute("INSERT INTO gpu_leases (id, service, job_id, owner, granted_at) VALUES (?, ?, ?, ?, ?)",
                    [lease_id, name, job_id, owner_token(), now])
        cur.execute("DELETE FROM gpu_waiters WHERE seq = ?", [seq])
        self._mark_used(cur, name, now)
        cur.execute("SELECT COUNT(*) FROM gpu_leases WHERE service = ?", [name])
        self.log(cur, name, "lease_granted", f"{cur.fetchone()[0]} lease(s) held", job_id)
        return lease_id, now

    def release(self, lease_id: str, service: str, granted_at: float, job_id: str | None) -> None:
        """Drop a lease (nothing if already gone) and log how long it was held."""
        with self.tx() as cur:
            cur.execute("DELETE FROM gpu_leases WHERE id = ?", [lease_id])
            if cur.rowcount:
                cur.execute("SELECT COUNT(*) FROM gpu_leases WHERE service = ?", [service])
                left = cur.fetchone()[0]
                now = self._clock()
                held = now - granted_at
                self._mark_used(cur, service, now)
                self.log(cur, service, "lease_released", f"held {held:.2f} s; {left} lease(s) left", job_id)

    def _mark_used(self, cur: Cursor, name: str, at: float) -> None:
        cur.execute("INSERT OR REPLACE INTO gpu_meta (key, value) VALUES (?, ?)", [f"used:{name}", repr(at)])

    def idle_for(self, cur: Cursor, now: float) -> dict[str, float]:
        """Services recorded ``running`` with no lease and no queued job: seconds since they were last used
        (leased, released, or became ready). Leases of dead processes are reaped first."""
        snap = self.snapshot(cur, None)
        cur.execute("SELECT DISTINCT service FROM gpu_waiters")
        wanted = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT key, value FROM gpu_meta WHERE key LIKE 'used:%'")
        used = {key.removeprefix("used:"): float(value) for key, value in cur.fetchall()}
        cur.execute("SELECT name, changed_at FROM gpu_services WHERE state = 'running'")
        return {name: now - max(changed_at, used.get(name, changed_at)) for name, changed_at in cur.fetchall()
                if snap.leases[name] == 0 and name not in wanted}

    # -- start breaker ------------------------------------------------------------------------------
    def breaker(self, cur: Cursor, name: str) -> Breaker | None:
        """The start breaker of ``name`` if a start failed since its last successful one (open or expired)."""
        cur.execute("SELECT failures, retry_at, reason FROM gpu_breakers WHERE service = ?", [name])
        row = cur.fetchone()
        return Breaker(int(row[0]), float(row[1]), row[2]) if row else None

    def open_breaker(self, cur: Cursor, config: GPUServiceSettings, reason: str, now: float) -> str:
        """Count one more failed start of ``config`` and block starts for the next backoff; a sentence
        saying until when (for the failure's event and error message)."""
        previous = self.breaker(cur, config.name)
        failures = (previous.failures if previous else 0) + 1
        window = backoff_seconds(config, failures)
        cur.execute("INSERT OR REPLACE INTO gpu_breakers (service, failures, retry_at, reason) VALUES (?, ?, ?, ?)",
                    [config.name, failures, now + window, reason])
        stamp = datetime.fromtimestamp(now + window, UTC).isoformat(timespec="seconds")
        return f"no new start before {stamp} ({window:g} s backoff after {failures} failed start(s) in a row)"

    def close_breaker(self, cur: Cursor, name: str) -> int:
        """Forget failed starts of ``name`` (it became ready); how many there were."""
        previous = self.breaker(cur, name)
        cur.execute("DELETE FROM gpu_breakers WHERE service = ?", [name])
        return previous.failures if previous else 0

    # -- status -------------------------------------------------------------------------------------
    def status(self) -> GPUStatus:
        """What is recorded now (no HTTP checks); drops leases of dead processes first."""
        with self.tx() as cur:
            self.reap(cur)
            cur.execute("SELECT name, state, changed_at, last_stop_at, detail FROM gpu_services")
            rows = {r[0]: r for r in cur.fetchall()}
            cur.execute("SELECT id, service, job_id, owner, granted_at FROM gpu_leases ORDER BY granted_at")
            leases = [LeaseInfo(id=r[0], service=r[1], job_id=r[2], pid=pid_of(r[3]), granted_at=r[4])
                      for r in cur.fetchall()]
            cur.execute("SELECT COUNT(*) FROM gpu_waiters")
            waiting = cur.fetchone()[0]
            last_at, last_service = self.last_stop(cur)
        services = []
        for config in self.settings.services:
            row = rows.get(config.name)
            mine = [lease for lease in leases if lease.service == config.name]
            services.append(ServiceStatus(
                name=config.name, kind=config.kind, state=row[1] if row else "stopped", memory_gb=config.memory_gb,
                leases=len(mine), jobs=[lease.job_id for lease in mine], changed_at=row[2] if row else 0.0,
                last_stop_at=row[3] if row else None, detail=row[4] if row else ""))
        cooldown_until = None
        if last_at is not None:
            cooldown_until = last_at + self.cooldown_of(last_service)
        return GPUStatus(services=services, active=[s.name for s in services if s.state in ACTIVE_STATES],
                         leases=leases, waiting=waiting, last_stop_at=last_at, last_stop_service=last_service,
                         cooldown_until=cooldown_until, mem_available_gb=mem_available_gb(self.settings.meminfo_path))

    def cooldown_of(self, name: str | None) -> float:
        """``cooldown_seconds`` of service ``name`` (0 if none or no longer configured)."""
        try:
            return self.settings.service(name).cooldown_seconds if name else 0.0
        except KeyError:
            return 0.0
