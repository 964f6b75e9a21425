"""The dashboard's controls, each through the engine the MCP tools and the CLI use, never around it.

* GPU start: ``GPUServiceManager.acquire(name)`` then an immediate ``release()`` of the lease (a pure start:
  the one-at-a-time rule, the FIFO queue, cooldown, memory guard and start breaker all apply); stop:
  ``GPUServiceManager.stop(name)`` (waits for leases). Both may take minutes, so they run in a background
  thread and are recorded in the :class:`ActionLog` the page shows; the request answers 202 at once.
* index rebuild: ``BlogService.reload()`` (what SIGHUP / ``index --signal`` triggers), in the background.
* job cancel / retry: ``PipelineService.cancel`` / ``.retry`` (synchronous, they only change job records).
* token revoke: ``TokenStore.revoke`` of the L402 store (what ``sovereign-mcp l402 revoke`` does).

Errors a caller can fix are :class:`ControlError` with an HTTP status (404 unknown, 409 not possible now).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from sovereign_mcp.dashboard.views import Sources
from sovereign_mcp.gpu.errors import GPUError, UnknownServiceError
from sovereign_mcp.pipeline.models import JobStatus
from sovereign_mcp.pipeline.records import JobNotFound, JobNotRetriable

log = logging.getLogger(__name__)

ActionState = Literal["running", "done", "failed"]
LEASE_JOB = "dashboard"
"""The ``job_id`` recorded with the lease and events of a start from the dashboard."""


class ControlError(Exception):
    """A control that cannot run: ``status`` is the HTTP status (404 unknown target, 409 refused now)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Action(BaseModel):
    """One background control and its outcome; times unix s."""

    id: int
    action: str
    target: str
    state: ActionState
    message: str
    started_at: float
    finished_at: float | None = None


class ActionLog:
    """The newest background actions (thread-safe), and the threads that run them.

    Args:
        keep: actions remembered.
        clock: unix seconds.
    """

    def __init__(self, keep: int = 30, clock: Callable[[], float] = time.time) -> None:
        self._items: deque[Action] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._clock = clock
        self._busy: set[tuple[str, str]] = set()

    def run(self, action: str, target: str, work: Callable[[], str]) -> Action:
        """Start ``work`` (returns a success message; raises on failure) in a daemon thread.

        Raises:
            ControlError: 409 when the same action on the same target is still running.
        """
        key = (action, target)
        with self._lock:
            if key in self._busy:
                raise ControlError(409, f"{action} {target} is already running")
            self._busy.add(key)
            item = Action(id=next(self._ids), action=action, target=target, state="running",
                          message=f"{action} {target}: running", started_at=self._clock())
            self._items.appendleft(item)

        def body() -> None:
            try:
                state, message = "done", work()
            except Exception as exc:  # reported on the page, the server goes on
                state, message = "failed", f"{type(exc).__name__}: {exc}"
                log.warning("dashboard %s %s failed: %s", action, target, message)
            with self._lock:
                item.state, item.message, item.finished_at = state, message, self._clock()  # type: ignore[assignment]
                self._busy.discard(key)

        threading.Thread(target=body, name=f"dashboard-{action}-{target}", daemon=True).start()
        return item.model_copy()

    def items(self) -> list[Action]:
        """Newest first (copies)."""
        with self._lock:
            return [item.model_copy() for item in self._items]

    def get(self, action_id: int) -> Action | None:
        """The action with this id, if still remembered."""
        with self._lock:
            return next((item.model_copy() for item in self._items if item.id == action_id), None)


class Controls:
    """The controls over ``src``'s engines; background work is recorded in ``actions``."""

    def __init__(self, src: Sources, actions: ActionLog | None = None) -> None:
        self.src = src
        self.actions = actions or ActionLog()

    def _service(self, name: str) -> str:
        try:
            self.src.settings.gpu.service(name)
        except KeyError:
            raise ControlError(404, f"unknown GPU service {name!r}") from None
        return name

    def start_service(self, name: str) -> Action:
        """Start GPU service ``name`` (stopping the others first) in the background.

        Raises:
            ControlError: 404 unknown service, 409 its start breaker is open or a start is already running.
        """
        self._service(name)
        gpu = self.src.gpu
        retry_at = gpu.start_blocked(name)
        if retry_at is not None:
            raise ControlError(409, f"{name} may not be started for {max(retry_at - time.time(), 0):.0f} s "
                               "(its start breaker is open after a failed start)")

        def work() -> str:
            try:
                lease = gpu.acquire(name, LEASE_JOB)
            except UnknownServiceError as exc:
                raise ControlError(404, str(exc)) from None
            except GPUError:
                raise
            lease.release()
            return f"{name} is running (lease released; the next job for another service stops it)"

        return self.actions.run("start", name, work)

    def stop_service(self, name: str) -> Action:
        """Stop GPU service ``name`` once its leases are released, in the background.

        Raises:
            ControlError: 404 unknown service, 409 a stop of it is already running.
        """
        self._service(name)
        gpu = self.src.gpu

        def work() -> str:
            return f"{name} stopped" if gpu.stop(name) else f"{name} was not running"

        return self.actions.run("stop", name, work)

    def rebuild_index(self) -> Action:
        """Rebuild the blog index in the background (the SIGHUP reload); the old index serves meanwhile.

        Raises:
            ControlError: 409 a rebuild is already running.
        """
        blog = self.src.blog

        def work() -> str:
            if not blog.reload():
                raise RuntimeError(f"rebuild failed, the previous index keeps serving: {blog.last_error}")
            h = blog.health()
            return f"index rebuilt: {h['articles']} articles, {h['passages']} passages"

        return self.actions.run("rebuild", "index", work)

    def cancel_job(self, job_id: str) -> JobStatus:
        """Cancel a job now or at its next step boundary.

        Raises:
            ControlError: 404 no such job.
        """
        try:
            return self.src.pipeline.cancel(job_id)
        except JobNotFound as exc:
            raise ControlError(404, str(exc)) from None

    def retry_job(self, job_id: str) -> JobStatus:
        """Queue a failed or cancelled job again from its last finished step.

        Raises:
            ControlError: 404 no such job, 409 the job is not failed or cancelled.
        """
        try:
            return self.src.pipeline.retry(job_id)
        except JobNotFound as exc:
            raise ControlError(404, str(exc)) from None
        except JobNotRetriable as exc:
            raise ControlError(409, str(exc)) from None

    def revoke_token(self, token_id: str) -> str:
        """Revoke an L402 token at once; returns the message.

        Raises:
            ControlError: 409 payments are disabled, 404 no such token or already revoked.
        """
        if self.src.payments is None:
            raise ControlError(409, "payments are disabled on this server: there are no L402 tokens")
        token_id = token_id.strip().lower()
        if not token_id or len(token_id) > 128 or not all(c in "0123456789abcdef" for c in token_id):
            raise ControlError(404, f"no such token: {token_id[:40]!r}")
        if not self.src.payments.store.revoke(token_id):
            raise ControlError(404, f"no such token, or already revoked: {token_id}")
        return f"revoked {token_id}"
