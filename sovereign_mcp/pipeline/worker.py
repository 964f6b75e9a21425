"""The job worker: one thread per data dir runs queued steps, grouped by GPU service.

* Exactly one worker per job queue holds the store's worker lock (:mod:`sovereign_mcp.pipeline.lock`: a
  ``flock`` on ``<data_dir>/pipeline/worker.lock`` with SQLite, a PostgreSQL advisory lock with
  ``database_url``; released by the kernel or the database if the process dies). A worker that cannot get
  it stands by and retries, so the server's worker takes over when a ``pipeline run --wait`` worker
  finishes, and vice versa; with ``serve --workers N`` every process runs a worker thread and one of them
  holds the lock (the others stand by and take over if it exits).
* On taking the lock it recovers: it starts a new worker epoch, steps an earlier holder left ``running`` go
  back to ``pending`` and the job resumes after its last finished step. Every claim and result carries the
  epoch, so a worker that lost its lock without noticing (its PostgreSQL session dropped mid-step) has its
  results dropped instead of overwriting the new holder's (fencing, :mod:`sovereign_mcp.pipeline.store`).
  During a long step the worker re-checks the lock every ``LOCK_CHECK_SECONDS`` through the step's
  ``should_stop`` and gives the step up when the lock is gone. If recovering fails (the database is down),
  the worker logs it, lets the lock go and tries again after ``STANDBY_SECONDS``.
* Before a step that needs a GPU service it holds a lease on it from the :class:`GPUServiceManager`
  (one service at a time, cooldown, memory guard); the lease is kept across consecutive steps of that
  service and released when the worker switches or goes idle.
* Every inference provider down (:class:`InferenceUnavailable`): the step is given back, its job shows
  ``waiting``, other services' steps keep running, and once nothing else is left the worker polls
  readiness (``wait_until_available``) until a provider answers; then the job resumes.
* A Voxtral/ComfyUI step that cannot get its service (memory guard short, start failed, start breaker
  open) is given back and its job shows ``waiting`` with the reason and the time of the next try
  (``pipeline.gpu_retry_seconds``, or when the breaker closes); other services' steps keep running. A
  service that dies mid-step (:class:`MediaUnavailable`) is reported to the GPU manager, restarted under the
  one-at-a-time rule and the step run again (TTS turns and a queued image already done are reused), up to
  ``pipeline.media_restarts`` times in a row; then the job waits the same way. Such a job never fails for
  want of a service, so nobody pays for it twice.
* Cancel is honoured at step boundaries.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from sovereign_mcp.gpu.errors import UnknownServiceError
from sovereign_mcp.gpu.manager import GPUError, Lease, ServiceBusyError, ServiceUnavailableError
from sovereign_mcp.inference.errors import InferenceRequestError, InferenceUnavailable
from sovereign_mcp.pipeline.config import JobOptions
from sovereign_mcp.pipeline.deps import PipelineDeps
from sovereign_mcp.pipeline.media import MediaError, MediaUnavailable
from sovereign_mcp.pipeline.models import KIND_STEPS, RETRY_GROUPS, GateAttempt, spec_of
from sovereign_mcp.pipeline.outlook import clock_time
from sovereign_mcp.pipeline.scheduler import choose
from sovereign_mcp.pipeline.steps import RUNNERS, GateAborted, Interrupted, StepContext, StepFailed
from sovereign_mcp.pipeline.store import Candidate, StaleClaim

log = logging.getLogger(__name__)

STANDBY_SECONDS = 2.0
LOCK_CHECK_SECONDS = 5.0  # how often a running step re-checks the worker lock (one round trip on PostgreSQL)


class PipelineWorker:
    """Runs the job queue of ``deps.store`` with the collaborators in ``deps``; :meth:`start` for a thread,
    :meth:`run` in the foreground."""

    def __init__(self, deps: PipelineDeps) -> None:
        self.deps = deps
        self.store = deps.store
        self.config = deps.config
        self._lock = self.store.worker_lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease: Lease | None = None
        self._lease_role: str | None = None
        self._last_role: str | None = None
        self._seen_role: str | None = None
        self._role_since: float | None = None
        self._inference_down: str | None = None
        self._gpu_failed_at: float | None = None
        self._held: dict[str, tuple[float, str]] = {}  # role -> (unix s of the next try, why it waits)
        self._restarts: dict[tuple[str, str], int] = {}  # (job, step) -> media service restarts in a row
        self._epoch: int | None = None  # from store.recover() when the lock was taken
        self._lock_checked = 0.0
        self.steps_run = 0

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether this worker holds the worker lock (it is the one running jobs)."""
        return self._lock.held

    def start(self) -> None:
        """Run in a daemon thread until :meth:`stop` (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="pipeline-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end after the current step and wait up to ``timeout`` s."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def wake(self) -> None:
        """A job was queued or cancelled: look at the queue now."""
        self._wake.set()

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """The worker loop; returns when stopped or, in the foreground, when ``until()`` is true."""
        try:
            while not self._stop.is_set():
                if until is not None and until():
                    return
                try:
                    held = self._take_lock()
                except Exception:  # e.g. the database is down while recovering: stand by and try again
                    log.exception("pipeline worker: could not take over the queue; retrying in %.0f s",
                                  STANDBY_SECONDS)
                    self._drop_lock()
                    held = False
                if not held:
                    self._wake.wait(STANDBY_SECONDS)
                    self._wake.clear()
                    continue
                try:
                    busy = self.tick()
                except Exception:  # keep the worker alive; the job that broke it was failed in _run
                    log.exception("pipeline worker: unexpected error")
                    busy = False
                    self._stop.wait(1.0)
                if not busy:
                    self._release()
                    if self.config.manage_gpu:
                        self.deps.gpu.stop_idle()  # idle_stop_seconds of each GPU service
                    if until is not None and until():
                        return
                    self._wake.wait(self.config.idle_poll_seconds)
                    self._wake.clear()
        finally:
            self._release()
            self._drop_lock()

    def _take_lock(self) -> bool:
        was_held = self._lock.held
        if not self._lock.acquire():
            return False
        if was_held:
            return True
        self._epoch, resumed = self.store.recover()
        self._lock_checked = time.monotonic()
        if resumed:
            log.info("pipeline worker: resuming %d job(s) after a restart: %s", len(resumed), ", ".join(resumed))
        return True

    def _drop_lock(self) -> None:
        self._lock.release()

    def _should_stop(self) -> bool:
        """For a running step: stop on :meth:`stop`, or when the worker lock is gone (checked at most every
        ``LOCK_CHECK_SECONDS``; another worker may have taken over and recovered the step)."""
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if now - self._lock_checked >= LOCK_CHECK_SECONDS:
            self._lock_checked = now
            if not self._lock.acquire():
                log.warning("pipeline worker: lost the worker lock during a step; giving the step up")
                return True
        return False

    # -- GPU leases -------------------------------------------------------------------------------
    def _release(self) -> None:
        if self._lease is not None:
            with contextlib.suppress(Exception):
                self._lease.release()
            self._lease = None
            self._lease_role = None

    def _ensure_lease(self, role: str, job_id: str) -> None:
        """Hold a lease on the GPU service of ``role`` (switching services if needed). Raises :class:`GPUError`."""
        self._last_role = role
        name = self.deps.gpu_service_for(role)
        if name is None or self._lease_role == role:
            return
        self._release()
        self._lease = self.deps.gpu.acquire(name, job_id)
        self._lease_role = role

    def current_role(self) -> str | None:
        """The GPU role now loaded: the leased one, else the one the GPU manager records running."""
        role = self._lease_role
        if role is None:
            running = self.deps.running_role()
            role = running if running is not None else self._last_role
        if role != self._seen_role:
            self._seen_role, self._role_since = role, time.time()
        return role

    # -- one scheduling round ---------------------------------------------------------------------
    def tick(self) -> bool:
        """Run at most one step (or one readiness poll). Returns ``False`` when there was nothing to do."""
        if self.store.apply_cancellations():
            self._wake.set()
        candidates = self.store.candidates()
        if not candidates:
            return False
        now = time.time()
        self._held = {role: held for role, held in self._held.items() if held[0] > now}
        exclude = set(self._held) | ({"sglang"} if self._inference_down else set())
        current = self.current_role()
        pick = choose(candidates, current, now=now, current_since=self._role_since,
                      switch_after=self.config.switch_after_seconds, exclude=exclude)
        if pick is None:
            if self._inference_down and any(c.service == "sglang" for c in candidates):
                self._wait_for_inference(candidates)
                return True
            return False  # every step left waits for a GPU service: idle until the next try
        self._run(pick)
        return True

    def _hold(self, role: str, job_id: str, step: str, why: str, retry_at: float) -> None:
        """Give ``step`` back and keep every step of ``role`` waiting until ``retry_at`` (unix s), with the
        reason and the time of the next try in each job's message."""
        retry_at = max(retry_at, time.time() + self.config.idle_poll_seconds)
        self._held[role] = (retry_at, why)
        message = f"waiting for the {role} service: {why}; next try at {clock_time(retry_at)}"
        self.store.requeue(job_id, step, message, epoch=self._epoch)
        others = sorted({c.job_id for c in self.store.candidates() if c.service == role} - {job_id})
        self.store.mark_waiting(others, message)
        log.warning("pipeline job %s: %s", job_id, message)

    def _service_unavailable(self, role: str, job_id: str, step: str, exc: GPUError) -> None:
        """The GPU service of a media step could not be had: wait for it (see the module doc)."""
        retry_at = time.time() + self.config.gpu_retry_seconds
        if isinstance(exc, ServiceUnavailableError):
            retry_at = exc.retry_at
        else:
            with contextlib.suppress(GPUError):
                retry_at = self.deps.gpu.start_blocked(exc.service) or retry_at  # a failed start opened it
        self._hold(role, job_id, step, str(exc), retry_at)

    def _service_died(self, role: str, job_id: str, step: str, exc: MediaUnavailable) -> None:
        """The service of a media step stopped answering mid-step: report it, then restart it and run the step
        again, or wait after ``media_restarts`` restarts in a row."""
        name = self.deps.gpu_service_for(role) if self.config.manage_gpu else None
        self._release()
        if name is not None:
            with contextlib.suppress(GPUError):
                self.deps.gpu.report_failure(name, str(exc), job_id)
        key = (job_id, step)
        restarts = self._restarts.get(key, 0) + 1
        if name is not None and restarts <= self.config.media_restarts:
            self._restarts[key] = restarts
            self.store.requeue(job_id, step, f"the {role} service stopped answering ({exc}); restarting it "
                               f"(restart {restarts} of {self.config.media_restarts})", epoch=self._epoch)
            log.warning("pipeline job %s: %s died mid-step; restarting it: %s", job_id, role, exc)
            return
        self._restarts.pop(key, None)
        self._hold(role, job_id, step, f"it stopped answering ({exc})", time.time() + self.config.gpu_retry_seconds)

    def _wait_for_inference(self, candidates: list[Candidate]) -> None:
        waiting = [c for c in candidates if c.service == "sglang"]
        message = (f"waiting for an inference provider ({self._inference_down}); readiness polled every "
                   f"{self.config.inference_poll_seconds:g} s, the job resumes when one answers")
        self.store.mark_waiting(sorted({c.job_id for c in waiting}), message)
        now = time.monotonic()
        retry_gpu = self._gpu_failed_at is None or now - self._gpu_failed_at > self.config.gpu_retry_seconds
        if self._lease_role != "sglang" and retry_gpu:
            try:  # SGLang itself may simply be stopped (another service ran meanwhile): start it again
                self._ensure_lease("sglang", waiting[0].job_id)
                self._gpu_failed_at = None
            except GPUError as exc:
                self._gpu_failed_at = now
                log.warning("pipeline: cannot start the SGLang service while waiting for inference: %s", exc)
        poll = self.config.inference_poll_seconds
        try:
            name = self.deps.chat.wait_until_available(poll_seconds=poll, timeout=poll)
        except InferenceUnavailable as exc:
            self._inference_down = str(exc)
            return
        log.info("pipeline: inference provider %s is available again; resuming", name)
        self._inference_down = None
        self.store.resume_waiting(f"inference provider {name} is available again")

    def _run(self, pick: Candidate) -> None:
        deps = self.deps
        row = self.store.job_row(pick.job_id)
        kind = row["kind"]
        spec = spec_of(kind, pick.step)
        total = len(KIND_STEPS[kind])
        label = f"step {pick.index + 1} of {total}: {spec.title}"
        gpu_name = deps.gpu_service_for(spec.service) if spec.service else None
        if not self.store.claim(pick.job_id, pick.step, gpu_name or spec.service, label, epoch=self._epoch):
            return
        job_id, step = pick.job_id, pick.step
        log.info("pipeline job %s: %s", job_id, label)
        if spec.service is not None:
            try:
                self._ensure_lease(spec.service, job_id)
            except ServiceBusyError as exc:
                self.store.requeue(job_id, step, f"GPU busy, will retry: {exc}", epoch=self._epoch)
                return
            except UnknownServiceError as exc:  # a configuration error: waiting would not fix it
                self.store.fail(job_id, step, f"GPU service {exc.service} unavailable: {exc}", epoch=self._epoch)
                return
            except GPUError as exc:
                if spec.service != "sglang":
                    self._service_unavailable(spec.service, job_id, step, exc)
                    return
                log.warning("pipeline job %s: SGLang service unavailable (%s); trying the inference chain", job_id, exc)
        ctx = StepContext(
            job_id=job_id, kind=kind, topic=row["topic"], sources=row["sources"],
            options=JobOptions.model_validate(row["options"]), attempts=row["attempts"],
            gate_history=[GateAttempt.model_validate(g) for g in row["gate"]], outputs=self.store.outputs(job_id),
            settings=self.config, store=self.store, kb=deps.gates.kb, gate=deps.gates.gate, chat=deps.chat,
            voxtral=deps.voxtral_client, comfyui=deps.comfyui_client,
            progress=lambda message: self.store.set_message(job_id, f"{label}: {message}"),
            should_stop=self._should_stop, epoch=self._epoch)
        try:
            result = RUNNERS[step](ctx)
        except InferenceUnavailable as exc:
            self._inference_down = str(exc)
            self.store.requeue(job_id, step, f"waiting for an inference provider ({exc})", epoch=self._epoch)
            self._release()
            log.warning("pipeline job %s: no inference provider; the job waits: %s", job_id, exc)
            return
        except (Interrupted, StaleClaim):  # a stale claim's requeue is dropped by the fence as well
            self.store.requeue(job_id, step, "interrupted (worker shutdown or lost lock); resumes", epoch=self._epoch)
            return
        except MediaUnavailable as exc:
            self._service_died(spec.service or step, job_id, step, exc)
            return
        except GateAborted as exc:
            self.store.record_gate(job_id, exc.attempt, step=step, epoch=self._epoch)
            self.store.fail(job_id, step, str(exc), epoch=self._epoch)
            return
        except (StepFailed, MediaError, InferenceRequestError, GPUError, ValueError, OSError) as exc:
            self.store.fail(job_id, step, str(exc), epoch=self._epoch)
            log.warning("pipeline job %s failed at %s: %s", job_id, step, exc)
            return
        except Exception as exc:
            log.exception("pipeline job %s: step %s crashed", job_id, step)
            self.store.fail(job_id, step, f"internal error: {type(exc).__name__}: {exc}", epoch=self._epoch)
            return
        self.steps_run += 1
        self._restarts.pop((job_id, step), None)
        if result.gate is not None:
            self.store.record_gate(job_id, result.gate, step=step, epoch=self._epoch)
        if result.retry:
            track = spec.track
            attempt = self.store.retry(job_id, track, RETRY_GROUPS[step],
                                       f"quality gate failed on {track}; regenerating (attempt "
                                       f"{ctx.attempts.get(track, 1) + 1} of {ctx.max_attempts()})",
                                       step=step, epoch=self._epoch)
            if attempt:
                log.info("pipeline job %s: gate failed, %s attempt %d", job_id, track, attempt)
            return
        if self.store.finish_step(job_id, step, result.output, result.detail, epoch=self._epoch):
            log.info("pipeline job %s done", job_id)
