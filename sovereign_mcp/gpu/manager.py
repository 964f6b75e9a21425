"""One GPU service at a time: stop the others, wait out the cooldown, check free memory, start, wait
until ready, then hand out counted leases.

Why (REFERENCE.md, "The operator and the product"; operator's stack article, "The Sequential-Services
Rule"): SGLang (~94 GB), Voxtral TTS (~111 GB) and ComfyUI FLUX (~14 GB) share the GB10's 128 GB
unified memory pool. Two of them loaded together do not crash at load time: the out-of-memory shows on
the first real request, after everything looked healthy. After a stop the memory comes back late, so the
next service waits ``cooldown_seconds`` (60 s) counted from the persisted stop time (it holds across
restarts of this process). llama-swap swaps model servers but never checks memory before loading; here a
memory guard reads ``MemAvailable`` from ``/proc/meminfo`` (``nvidia-smi`` shows ``[N/A]`` on GB10) and
refuses to start a service that would not fit.

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

State lives in SQLite (WAL) under the data dir, never in ``database_url``: the GPU is one physical box, so
its state (which service runs, leases held by local process ids, the ``flock``) is per host by nature.
Processes on that host share it through the data dir; a PostgreSQL job queue shared with other hosts is run
by the one worker holding the queue's lock (:mod:`sovereign_mcp.pipeline.lock`), with this host's
manager. Times are unix seconds from the injected clock; memory
figures are GB (10^9 bytes). A lease does not stop its service when released: the next job for another
service does, or :meth:`GPUServiceManager.stop`. Do not acquire a second service while holding a lease
on another one in the same job: the second call waits for the first lease and ends in
:class:`ServiceBusyError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from sovereign_mcp.flock import try_lock, unlock
from sovereign_mcp.gpu.config import GPUServiceSettings, GPUSettings, ServiceKind

logger = logging.getLogger(__name__)

ServiceState = Literal["stopped", "starting", "running", "stopping", "failed"]
EventName = Literal["stop_requested", "stopped", "cooldown_wait", "memory_ok", "memory_wait", "start_requested",
                    "ready", "lease_granted", "lease_released", "failed"]
EVENT_NAMES: tuple[str, ...] = ("stop_requested", "stopped", "cooldown_wait", "memory_ok", "memory_wait",
                                "start_requested", "ready", "lease_granted", "lease_released", "failed")

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
]


# -- errors ---------------------------------------------------------------------------------------
class GPUError(Exception):
    """Base of the manager's errors; ``service`` names the service concerned."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


class UnknownServiceError(GPUError):
    """The name is not one of the configured services."""


class MemoryGuardError(GPUError):
    """``MemAvailable`` stayed below ``memory_gb + memory_margin_gb`` for ``memory_wait_seconds``.

    ``available_gb`` is ``None`` when the meminfo file could not be read.
    """

    def __init__(self, service: str, message: str, available_gb: float | None, required_gb: float) -> None:
        super().__init__(service, message)
        self.available_gb = available_gb
        self.required_gb = required_gb


class ServiceStartError(GPUError):
    """The start command failed or the service was not ready within ``ready_timeout``; it was stopped again.

    ``last_status`` is the last readiness answer (``"HTTP 503"``, ``"connection refused"``, ...) or the
    command failure; ``last_http_status`` the last HTTP status seen, if any.
    """

    def __init__(self, service: str, message: str, last_status: str, last_http_status: int | None = None) -> None:
        super().__init__(service, message)
        self.last_status = last_status
        self.last_http_status = last_http_status


class ServiceStopError(GPUError):
    """A stop command failed or the service still answered ``stop_timeout`` s later (state ``failed``).
    Nothing else is started while it may still hold memory."""


class ServiceBusyError(GPUError):
    """The wait for other jobs' leases (or for another switch) exceeded the timeout."""


# -- commands and probes -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of one start or stop command: exit code (124 = timed out, 127 = not found) and output tail."""

    returncode: int
    output: str = ""


Runner = Callable[[str, float], CommandResult]
"""``runner(command, timeout_seconds) -> CommandResult``."""


def run_command(command: str, timeout: float) -> CommandResult:
    """Run ``command`` without a shell (split by :func:`shlex.split`), at most ``timeout`` seconds.

    Output goes to a temporary file, not a pipe: a start command that leaves a daemon behind holding
    the pipe would otherwise block until the daemon exits. Never raises for a failing command.
    """
    argv = shlex.split(command)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
            code = proc.returncode
        except FileNotFoundError:
            return CommandResult(127, f"command not found: {argv[0]}")
        except PermissionError as exc:
            return CommandResult(126, f"cannot run {argv[0]}: {exc}")
        except subprocess.TimeoutExpired:
            code = 124
        out.seek(0)
        text = out.read()[-4000:].decode("utf-8", errors="replace").strip()
    if code == 124 and not text:
        text = f"timed out after {timeout:g} s"
    return CommandResult(code, text)


@dataclass(frozen=True, slots=True)
class Readiness:
    """One readiness check: HTTP ``status`` (``None`` = nothing answered) and a human-readable ``detail``."""

    status: int | None
    detail: str

    @property
    def ready(self) -> bool:
        return self.status == 200

    @property
    def reachable(self) -> bool:
        return self.status is not None


Probe = Callable[[str, float], Readiness]
"""``probe(url, timeout_seconds) -> Readiness``."""


_probe_client: httpx.Client | None = None
_probe_client_lock = threading.Lock()


def _shared_client() -> httpx.Client:
    """One client for all probes (building one costs ~30 ms: TLS context); no keep-alive, so a restarted
    service is never asked over a connection to its previous process."""
    global _probe_client
    with _probe_client_lock:
        if _probe_client is None:
            _probe_client = httpx.Client(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))
        return _probe_client


def http_probe(url: str, timeout: float) -> Readiness:
    """``GET url``: 200 = ready, 503 = still warming (SGLang ``/health``, llama-server), connection refused
    = not listening yet (or gone). Proxy variables are ignored: these are local services."""
    try:
        response = _shared_client().get(url, timeout=timeout)
    except httpx.ConnectError as exc:
        return Readiness(None, "connection refused" if "refused" in str(exc).lower() else f"cannot connect: {exc}")
    except httpx.TimeoutException:
        return Readiness(None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Readiness(None, str(exc) or type(exc).__name__)
    suffix = " (warming up)" if response.status_code == 503 else ""
    return Readiness(response.status_code, f"HTTP {response.status_code}{suffix}")


def read_mem_available_gb(path: Path) -> float:
    """``MemAvailable`` from a ``/proc/meminfo``-format file, GB (the file gives kB = KiB).

    Raises:
        OSError: unreadable file. ValueError: no parsable ``MemAvailable`` line.
    """
    for line in path.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise ValueError(f"no MemAvailable line in {path}")


# -- process identity ---------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def _owner_token() -> str:
    """``pid:starttime`` of this process (starttime guards against pid reuse, e.g. after a reboot)."""
    pid = os.getpid()
    fields = _proc_stat(pid)
    return f"{pid}:{fields[19] if fields and len(fields) > 19 else ''}"


def _owner_alive(owner: str) -> bool:
    pid_text, _, start = owner.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if Path("/proc/self/stat").exists():
        fields = _proc_stat(pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return not start or (len(fields) > 19 and fields[19] == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_of(owner: str) -> int:
    try:
        return int(owner.partition(":")[0])
    except ValueError:
        return 0


# -- public records -------------------------------------------------------------------------------
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
    """One service as recorded: ``state`` is stopped/starting/running/stopping/failed."""

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
    """A job's right to use ``service`` until :meth:`release` (or the end of a ``with`` block)."""

    def __init__(self, manager: GPUServiceManager, lease_id: str, service: str, job_id: str | None,
                 granted_at: float) -> None:
        self._manager = manager
        self.id = lease_id
        self.service = service
        self.job_id = job_id
        self.granted_at = granted_at
        self.released = False

    def release(self) -> None:
        """Give the lease back (idempotent). The service keeps running."""
        if not self.released:
            self.released = True
            self._manager._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"Lease({self.service!r}, job_id={self.job_id!r}, id={self.id!r}, {state})"


def find_overlaps(events: Iterable[GPUEvent]) -> list[str]:
    """Violations of the one-service rule in an event log (empty list = none).

    A service counts as holding memory from its ``start_requested`` until its ``stopped``; a
    ``start_requested`` while another service holds memory is a violation.
    """
    up: set[str] = set()
    problems = []
    for event in sorted(events, key=lambda e: e.id):
        if event.event == "start_requested":
            others = up - {event.service}
            if others:
                problems.append(f"event {event.id}: {event.service} start requested while {sorted(others)} up")
            up.add(event.service)
        elif event.event == "stopped":
            up.discard(event.service)
    return problems


@dataclass(slots=True)
class _Snapshot:
    states: dict[str, str]
    leases: Counter[str]
    earlier: list[str] = field(default_factory=list)  # services wanted by jobs queued before this one


class _Failure(Exception):
    def __init__(self, message: str, last: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.last = last
        self.http_status = http_status


# -- the manager ----------------------------------------------------------------------------------
class GPUServiceManager:
    """Runs at most one of ``settings.services`` at a time; see the module docstring for the rules.

    Args:
        settings: the GPU pool settings.
        data_dir: where the state database and lock file live (``settings.state_path`` may override).
        clock: wall clock, unix seconds (stop times are persisted, so it must be wall time).
        sleep: ``sleep(seconds)``.
        runner: runs start/stop commands, default :func:`run_command`.
        probe: readiness check, default :func:`http_probe`.
    """

    def __init__(self, settings: GPUSettings, data_dir: Path, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, runner: Runner = run_command,
                 probe: Probe = http_probe) -> None:
        self.settings = settings
        self.state_path = settings.resolved_state_path(Path(data_dir))
        self.lock_path = self.state_path.with_suffix(".lock")
        self._clock = clock
        self._sleep = sleep
        self._runner = runner
        self._probe = probe
        self._local = threading.local()
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        now = clock()
        with self._tx() as cur:
            for statement in SCHEMA:
                cur.execute(statement)
            for service in settings.services:
                cur.execute("INSERT OR IGNORE INTO gpu_services (name, state, changed_at) VALUES (?, 'stopped', ?)",
                            [service.name, now])
            cur.execute("DELETE FROM gpu_events WHERE id <= (SELECT MAX(id) FROM gpu_events) - ?",
                        [settings.event_retention])

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
        """
        config = self._config(name)
        limit = self.settings.busy_timeout_seconds if timeout is None else max(0.0, timeout)
        began = self._clock()
        seq = self._enqueue(name, job_id)
        try:
            while True:
                lease = self._attempt(config, seq, job_id)
                if lease is not None:
                    return lease
                waited = self._clock() - began
                if waited >= limit:
                    reason = self._busy_reason(name, seq)
                    self._event(name, "failed", f"gave up after {waited:.1f} s: {reason}", job_id)
                    raise ServiceBusyError(name, f"{name} not available within {limit:g} s: {reason}")
                self._sleep(min(self.settings.poll_interval, limit - waited))
        finally:
            with self._tx() as cur:
                cur.execute("DELETE FROM gpu_waiters WHERE seq = ?", [seq])

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
                    with self._tx() as cur:
                        snap = self._snapshot(cur, None)
                        free = snap.leases[name] == 0
                        state = snap.states.get(name, "stopped")
                    if free:
                        reason = f"requested (recorded {state})"
                        if state == "stopped":
                            answer = self._probe(config.readiness_url, self.settings.http_timeout)
                            if not answer.reachable:
                                return False
                            reason = f"answers {config.readiness_url} ({answer.detail}) though recorded stopped"
                        if self._claim_stops([(config, reason)], None):
                            self._stop(config, None)
                            return True
                finally:
                    self._unlock(fd)
            waited = self._clock() - began
            if waited >= limit:
                raise ServiceBusyError(name, f"{name} still leased or switching after {limit:g} s")
            self._sleep(min(self.settings.poll_interval, limit - waited))

    def status(self) -> GPUStatus:
        """What is recorded now (no HTTP checks); drops leases of dead processes first."""
        with self._tx() as cur:
            self._reap(cur)
            cur.execute("SELECT name, state, changed_at, last_stop_at, detail FROM gpu_services")
            rows = {r[0]: r for r in cur.fetchall()}
            cur.execute("SELECT id, service, job_id, owner, granted_at FROM gpu_leases ORDER BY granted_at")
            leases = [LeaseInfo(id=r[0], service=r[1], job_id=r[2], pid=_pid_of(r[3]), granted_at=r[4])
                      for r in cur.fetchall()]
            cur.execute("SELECT COUNT(*) FROM gpu_waiters")
            waiting = cur.fetchone()[0]
            last_at, last_service = self._last_stop(cur)
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
            cooldown_until = last_at + self._cooldown_of(last_service)
        try:
            mem = round(read_mem_available_gb(self.settings.meminfo_path), 2)
        except (OSError, ValueError):
            mem = None
        return GPUStatus(services=services, active=[s.name for s in services if s.state in
                                                    ("starting", "running", "stopping")],
                         leases=leases, waiting=waiting, last_stop_at=last_at, last_stop_service=last_service,
                         cooldown_until=cooldown_until, mem_available_gb=mem)

    def events(self, *, service: str | None = None, since_id: int = 0, limit: int | None = None) -> list[GPUEvent]:
        """Event log rows with ``id > since_id``, oldest first (optionally one service, at most ``limit``)."""
        query = "SELECT id, ts, service, event, detail, job_id, pid FROM gpu_events WHERE id > ?"
        params: list[Any] = [since_id]
        if service is not None:
            query += " AND service = ?"
            params.append(service)
        query += " ORDER BY id"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._tx(write=False) as cur:
            cur.execute(query, params)
            return [GPUEvent(id=r[0], ts=r[1], service=r[2], event=r[3], detail=r[4], job_id=r[5], pid=r[6])
                    for r in cur.fetchall()]

    def close(self) -> None:
        """Close this thread's database connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- database ------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.state_path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Cursor]:
        """A transaction on this thread's connection (``BEGIN IMMEDIATE`` for writers, as in the L402 store)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # no connection reuse across fork
            conn = self._local.conn = self._connect()
            self._local.pid = os.getpid()
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def _log(self, cur: sqlite3.Cursor, service: str, event: EventName, detail: str = "",
             job_id: str | None = None, ts: float | None = None) -> None:
        cur.execute("INSERT INTO gpu_events (ts, service, event, detail, job_id, pid) VALUES (?, ?, ?, ?, ?, ?)",
                    [self._clock() if ts is None else ts, service, event, detail, job_id, os.getpid()])
        logger.log(logging.WARNING if event == "failed" else logging.INFO, "gpu %s %s%s%s", service, event,
                   f" [{job_id}]" if job_id else "", f": {detail}" if detail else "")

    def _event(self, service: str, event: EventName, detail: str = "", job_id: str | None = None) -> None:
        with self._tx() as cur:
            self._log(cur, service, event, detail, job_id)

    def _set_state(self, cur: sqlite3.Cursor, name: str, state: ServiceState, detail: str = "") -> None:
        cur.execute("UPDATE gpu_services SET state = ?, changed_at = ?, detail = ? WHERE name = ?",
                    [state, self._clock(), detail, name])

    def _enqueue(self, name: str, job_id: str | None) -> int:
        with self._tx() as cur:
            cur.execute("INSERT INTO gpu_waiters (service, job_id, owner, since) VALUES (?, ?, ?, ?)",
                        [name, job_id, _owner_token(), self._clock()])
            return int(cur.lastrowid or 0)

    def _reap(self, cur: sqlite3.Cursor) -> None:
        """Drop leases and queue entries whose process is gone."""
        alive: dict[str, bool] = {}

        def check(owner: str) -> bool:
            if owner not in alive:
                alive[owner] = _owner_alive(owner)
            return alive[owner]

        cur.execute("SELECT id, service, job_id, owner FROM gpu_leases")
        for lease_id, service, job_id, owner in cur.fetchall():
            if not check(owner):
                cur.execute("DELETE FROM gpu_leases WHERE id = ?", [lease_id])
                self._log(cur, service, "lease_released", f"owner process {_pid_of(owner)} is gone", job_id)
        cur.execute("SELECT seq, owner FROM gpu_waiters")
        for seq, owner in cur.fetchall():
            if not check(owner):
                cur.execute("DELETE FROM gpu_waiters WHERE seq = ?", [seq])

    def _snapshot(self, cur: sqlite3.Cursor, seq: int | None) -> _Snapshot:
        self._reap(cur)
        cur.execute("SELECT name, state FROM gpu_services")
        states = dict(cur.fetchall())
        cur.execute("SELECT service, COUNT(*) FROM gpu_leases GROUP BY service")
        leases: Counter[str] = Counter(dict(cur.fetchall()))
        earlier: list[str] = []
        if seq is not None:
            cur.execute("SELECT service FROM gpu_waiters WHERE seq < ? ORDER BY seq", [seq])
            earlier = [r[0] for r in cur.fetchall()]
        return _Snapshot(states, leases, earlier)

    def _next_step(self, cur: sqlite3.Cursor, name: str, seq: int) -> tuple[str, _Snapshot]:
        """``grant`` (running: share it), ``switch`` (needs the lock) or ``wait``."""
        snap = self._snapshot(cur, seq)
        if any(other != name for other in snap.earlier):
            return "wait", snap
        if snap.states.get(name) == "running":
            return "grant", snap
        if any(count > 0 for service, count in snap.leases.items() if service != name):
            return "wait", snap
        return "switch", snap

    def _grant(self, cur: sqlite3.Cursor, name: str, seq: int, job_id: str | None) -> Lease:
        lease_id = uuid.uuid4().hex[:16]
        now = self._clock()
        cur.execute("INSERT INTO gpu_leases (id, service, job_id, owner, granted_at) VALUES (?, ?, ?, ?, ?)",
                    [lease_id, name, job_id, _owner_token(), now])
        cur.execute("DELETE FROM gpu_waiters WHERE seq = ?", [seq])
        cur.execute("SELECT COUNT(*) FROM gpu_leases WHERE service = ?", [name])
        self._log(cur, name, "lease_granted", f"{cur.fetchone()[0]} lease(s) held", job_id)
        return Lease(self, lease_id, name, job_id, now)

    def _release(self, lease: Lease) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM gpu_leases WHERE id = ?", [lease.id])
            if cur.rowcount:
                cur.execute("SELECT COUNT(*) FROM gpu_leases WHERE service = ?", [lease.service])
                left = cur.fetchone()[0]
                held = self._clock() - lease.granted_at
                self._log(cur, lease.service, "lease_released", f"held {held:.2f} s; {left} lease(s) left",
                          lease.job_id)

    def _last_stop(self, cur: sqlite3.Cursor) -> tuple[float | None, str | None]:
        cur.execute("SELECT key, value FROM gpu_meta WHERE key IN ('last_stop_at', 'last_stop_service')")
        meta = dict(cur.fetchall())
        at = meta.get("last_stop_at")
        return (float(at) if at is not None else None), meta.get("last_stop_service")

    def _busy_reason(self, name: str, seq: int) -> str:
        with self._tx() as cur:
            snap = self._snapshot(cur, seq)
        others = {s: n for s, n in snap.leases.items() if s != name and n > 0}
        if any(other != name for other in snap.earlier):
            ahead = sorted({s for s in snap.earlier if s != name})
            return f"queued behind earlier jobs for {', '.join(ahead)}"
        if others:
            return "held by " + ", ".join(f"{n} lease(s) on {s}" for s, n in sorted(others.items()))
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

    def _cooldown_of(self, name: str | None) -> float:
        try:
            return self.settings.service(name).cooldown_seconds if name else 0.0
        except KeyError:
            return 0.0

    def _lock(self, name: str, job_id: str | None) -> int | None:
        """The switch lock (non-blocking ``flock``); an fd to pass to :meth:`_unlock`, or ``None`` if held."""
        return try_lock(self.lock_path, f"switching to {name} for job {job_id}")

    @staticmethod
    def _unlock(fd: int) -> None:
        unlock(fd)

    def _attempt(self, config: GPUServiceSettings, seq: int, job_id: str | None) -> Lease | None:
        name = config.name
        with self._tx() as cur:
            step, snap = self._next_step(cur, name, seq)
            if step == "grant" and snap.leases[name] > 0:
                return self._grant(cur, name, seq, job_id)
        if step == "wait":
            return None
        if step == "grant" and self._probe(config.readiness_url, self.settings.http_timeout).ready:
            with self._tx() as cur:
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
        with self._tx() as cur:
            step, snap = self._next_step(cur, name, seq)
            if step == "wait":
                return None
            if step == "grant" and snap.leases[name] > 0:
                return self._grant(cur, name, seq, job_id)
        if step == "grant":  # recorded running, nobody uses it: healthy -> grant, else restart it
            answer = self._probe(config.readiness_url, self.settings.http_timeout)
            if answer.ready:
                with self._tx() as cur:
                    step, snap = self._next_step(cur, name, seq)
                    return self._grant(cur, name, seq, job_id) if step == "grant" else None
        to_stop: list[tuple[GPUServiceSettings, str]] = []
        for service in self.settings.services:
            state = snap.states.get(service.name, "stopped")
            if state != "stopped":
                why = f"recorded {state}"
                if service.name == name:
                    why += f" but {answer.detail}" if answer is not None else " (left over)"
                to_stop.append((service, why))
                continue
            seen = self._probe(service.readiness_url, self.settings.http_timeout)
            if seen.reachable:
                to_stop.append((service, f"answers {service.readiness_url} ({seen.detail}) though recorded stopped"))
        if to_stop and not self._claim_stops(to_stop, job_id):
            return None
        for service, _ in to_stop:
            self._stop(service, job_id)
        self._wait_cooldown(config, job_id)
        self._memory_guard(config, job_id)
        self._start(config, job_id)
        with self._tx() as cur:
            return self._grant(cur, name, seq, job_id)

    def _claim_stops(self, to_stop: list[tuple[GPUServiceSettings, str]], job_id: str | None) -> bool:
        """Mark services ``stopping`` if none has a lease (one transaction, so no lease can slip in)."""
        with self._tx() as cur:
            snap = self._snapshot(cur, None)
            if any(snap.leases[service.name] > 0 for service, _ in to_stop):
                return False
            for service, why in to_stop:
                self._set_state(cur, service.name, "stopping", why)
                self._log(cur, service.name, "stop_requested", why, job_id)
        return True

    def _run(self, command: str, timeout: float) -> CommandResult:
        try:
            return self._runner(command, timeout)
        except Exception as exc:  # a custom runner failing counts as a failed command
            return CommandResult(1, f"{type(exc).__name__}: {exc}")

    def _fail(self, service: str, reason: str, job_id: str | None) -> None:
        with self._tx() as cur:
            self._set_state(cur, service, "failed", reason)
            self._log(cur, service, "failed", reason, job_id)

    def _stop(self, config: GPUServiceSettings, job_id: str | None) -> None:
        """Run the stop command and wait until the readiness URL stops answering; persist the stop time.

        The readiness URL is polled while the stop command runs, and the persisted stop time is the first
        moment it no longer answered (the process is gone, its memory is on its way back). A stop command
        that itself waits (``systemctl stop`` on the shipped units, whose ``ExecStopPost=/bin/sleep 60``
        runs inside the stop job) therefore counts towards the cooldown instead of doubling it.

        Raises:
            ServiceStopError: command failed or the service still answers after ``stop_timeout`` (``failed``).
        """
        began = self._clock()
        outcome: list[CommandResult] = []
        command = threading.Thread(target=lambda: outcome.append(self._run(config.stop_command,
                                                                           config.command_timeout)),
                                   name=f"stop-{config.name}", daemon=True)
        command.start()
        gone_at: float | None = None
        while command.is_alive():
            if gone_at is None and not self._probe(config.readiness_url, self.settings.http_timeout).reachable:
                gone_at = self._clock()
            command.join(self.settings.poll_interval)
        result = outcome[0] if outcome else CommandResult(1, "stop command thread ended without a result")
        if result.returncode != 0:
            reason = f"stop command exited with {result.returncode}: {_tail(result.output)}"
            self._fail(config.name, reason, job_id)
            raise ServiceStopError(config.name, f"cannot stop {config.name}: {reason}")
        deadline = self._clock() + config.stop_timeout
        while gone_at is None:
            answer = self._probe(config.readiness_url, self.settings.http_timeout)
            now = self._clock()
            if not answer.reachable:
                gone_at = now
                break
            if now >= deadline:
                reason = f"still answers {config.readiness_url} ({answer.detail}) {config.stop_timeout:g} s after stop"
                self._fail(config.name, reason, job_id)
                raise ServiceStopError(config.name, f"cannot stop {config.name}: {reason}")
            self._sleep(min(self.settings.poll_interval, deadline - now))
        now = self._clock()
        with self._tx() as cur:
            cur.execute("UPDATE gpu_services SET state = 'stopped', changed_at = ?, last_stop_at = ?, detail = '' "
                        "WHERE name = ?", [now, gone_at, config.name])
            cur.executemany("INSERT OR REPLACE INTO gpu_meta (key, value) VALUES (?, ?)",
                            [("last_stop_at", repr(gone_at)), ("last_stop_service", config.name)])
            self._log(cur, config.name, "stopped", f"gone {gone_at - began:.2f} s after the stop request, "
                      f"command done after {now - began:.2f} s", job_id, ts=gone_at)

    def _wait_cooldown(self, config: GPUServiceSettings, job_id: str | None) -> None:
        """Sleep until the cooldown after the last persisted stop is over (the longer of the stopped and the
        starting service's ``cooldown_seconds``; capped, so a wall clock set back cannot stretch it)."""
        with self._tx(write=False) as cur:
            last_at, last_service = self._last_stop(cur)
        if last_at is None:
            return
        needed = max(config.cooldown_seconds, self._cooldown_of(last_service))
        now = self._clock()
        remaining = min(needed, last_at + needed - now)
        if remaining <= 0:
            return
        stamp = datetime.fromtimestamp(last_at, UTC).isoformat(timespec="seconds")
        self._event(config.name, "cooldown_wait", f"{remaining:.2f} s left of the {needed:g} s cooldown after "
                    f"{last_service} stopped at {stamp}", job_id)
        end = now + remaining
        while (left := end - self._clock()) > 0:
            self._sleep(left)

    def _memory_guard(self, config: GPUServiceSettings, job_id: str | None) -> None:
        """Wait (up to ``memory_wait_seconds``) until ``MemAvailable >= memory_gb + memory_margin_gb``.

        Raises:
            MemoryGuardError: still short at the deadline (or the meminfo file unreadable); logged ``failed``.
        """
        margin = self.settings.memory_margin_gb
        need = config.memory_gb + margin
        path = self.settings.meminfo_path
        began = self._clock()
        deadline = began + self.settings.memory_wait_seconds
        logged_wait = False
        while True:
            try:
                available: float | None = read_mem_available_gb(path)
                seen = f"MemAvailable {available:.1f} GB"
            except (OSError, ValueError) as exc:
                available, seen = None, f"cannot read MemAvailable from {path}: {exc}"
            figures = f"{seen}, need {need:.1f} GB ({config.memory_gb:g} GB + {margin:g} GB margin)"
            if available is not None and available >= need:
                self._event(config.name, "memory_ok", figures, job_id)
                return
            now = self._clock()
            if now >= deadline:
                message = (f"memory guard refused to start {config.name}: {figures} after waiting "
                           f"{now - began:.1f} s; another process may still hold GPU memory "
                           "(check for leftover sglang::/vllm/ComfyUI processes or containers)")
                self._event(config.name, "failed", message, job_id)
                raise MemoryGuardError(config.name, message, available, need)
            if not logged_wait:
                self._event(config.name, "memory_wait", f"{figures}; waiting up to "
                            f"{self.settings.memory_wait_seconds:g} s", job_id)
                logged_wait = True
            self._sleep(min(self.settings.poll_interval, deadline - now))

    def _start(self, config: GPUServiceSettings, job_id: str | None) -> None:
        """Run the start command and poll readiness; on failure stop the service again and raise.

        Raises:
            ServiceStartError: command failed or no HTTP 200 within ``ready_timeout`` s of the start request.
        """
        name = config.name
        with self._tx() as cur:
            self._set_state(cur, name, "starting", "")
            self._log(cur, name, "start_requested", config.start_command, job_id)
        began = self._clock()
        deadline = began + config.ready_timeout
        try:
            result = self._run(config.start_command, config.command_timeout)
            if result.returncode != 0:
                raise _Failure(f"start command exited with {result.returncode}: {_tail(result.output)}",
                               f"exit {result.returncode}")
            last: Readiness | None = None
            last_http: int | None = None
            while True:
                answer = self._probe(config.readiness_url, self.settings.http_timeout)
                if answer.ready:
                    break
                last = answer
                last_http = answer.status if answer.status is not None else last_http
                now = self._clock()
                if now >= deadline:
                    raise _Failure(f"not ready within {config.ready_timeout:g} s (last answer from "
                                   f"{config.readiness_url}: {last.detail})", last.detail, last_http)
                self._sleep(min(self.settings.poll_interval, deadline - now))
        except _Failure as failure:
            self._abort_start(config, str(failure), job_id)
            raise ServiceStartError(name, f"{name} failed to start: {failure}; it was stopped again",
                                    failure.last, failure.http_status) from None
        except BaseException:
            self._abort_start(config, "start interrupted", job_id)
            raise
        with self._tx() as cur:
            self._set_state(cur, name, "running", "")
            self._log(cur, name, "ready", f"HTTP 200 after {self._clock() - began:.2f} s", job_id)

    def _abort_start(self, config: GPUServiceSettings, reason: str, job_id: str | None) -> None:
        """Log the failure, stop the service (cleanup) and leave it recorded ``failed``."""
        with self._tx() as cur:
            self._log(cur, config.name, "failed", reason, job_id)
            self._set_state(cur, config.name, "stopping", reason)
            self._log(cur, config.name, "stop_requested", "cleanup after failed start", job_id)
        try:
            self._stop(config, job_id)
        except ServiceStopError as exc:
            with self._tx() as cur:
                self._set_state(cur, config.name, "failed", f"{reason}; {exc}")
            return
        with self._tx() as cur:
            self._set_state(cur, config.name, "failed", reason)


def _tail(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "..." + text[-limit:]
