"""Driving one GPU service: run its start or stop command and follow its readiness URL until it serves
(HTTP 200) or is gone, recording each step in the shared state. Which service to start, and when, is
decided by :class:`sovereign_mcp.gpu.manager.GPUServiceManager`; this module only carries it out.

A start that does not become ready opens the service's start breaker (:meth:`GPUState.open_breaker`):
no new start for a backoff that doubles with each failure in a row; becoming ready closes it. Times are
unix seconds from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable

from sovereign_mcp.gpu.commands import CommandResult, Runner, tail
from sovereign_mcp.gpu.config import GPUServiceSettings
from sovereign_mcp.gpu.errors import ServiceStartError, ServiceStopError
from sovereign_mcp.gpu.readiness import Poller
from sovereign_mcp.gpu.state import GPUState


class _Failure(Exception):
    def __init__(self, message: str, last: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.last = last
        self.http_status = http_status


class ServiceDriver:
    """Starts and stops single services: commands through ``runner``, readiness through ``poll``."""

    def __init__(self, state: GPUState, poll: Poller, runner: Runner, clock: Callable[[], float]) -> None:
        self._state = state
        self._poll = poll
        self._runner = runner
        self._clock = clock

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run one command through the runner; a runner that raises counts as a failed command."""
        try:
            return self._runner(command, timeout)
        except Exception as exc:  # a custom runner failing counts as a failed command
            return CommandResult(1, f"{type(exc).__name__}: {exc}")

    def fail(self, service: str, reason: str, job_id: str | None) -> None:
        """Record ``service`` as ``failed`` with ``reason`` (and log it)."""
        with self._state.tx() as cur:
            self._state.set_state(cur, service, "failed", reason)
            self._state.log(cur, service, "failed", reason, job_id)

    def stop(self, config: GPUServiceSettings, job_id: str | None) -> None:
        """Run the stop command and wait until the readiness URL stops answering; persist the stop time.

        The readiness URL is polled while the stop command runs, and the persisted stop time is the first
        moment it no longer answered (the process is gone, its memory is on its way back). A stop command
        that itself waits (``systemctl stop`` on the shipped units, whose ``ExecStopPost=/bin/sleep 60``
        runs inside the stop job) therefore counts towards the cooldown instead of doubling it.

        Raises:
            ServiceStopError: command failed or the service still answers after ``stop_timeout`` (``failed``).
        """
        began = self._clock()
        done, gone_at = self._poll.watch(config.readiness_url, lambda: self.run(config.stop_command,
                                                                                 config.command_timeout),
                                         f"stop-{config.name}")
        result = done or CommandResult(1, "stop command thread ended without a result")
        if result.returncode != 0:
            reason = f"stop command exited with {result.returncode}: {tail(result.output)}"
            self.fail(config.name, reason, job_id)
            raise ServiceStopError(config.name, f"cannot stop {config.name}: {reason}")
        if gone_at is None:
            gone_at, answer = self._poll.until_gone(config.readiness_url, self._clock() + config.stop_timeout)
            if gone_at is None:
                reason = f"still answers {config.readiness_url} ({answer.detail}) {config.stop_timeout:g} s after stop"
                self.fail(config.name, reason, job_id)
                raise ServiceStopError(config.name, f"cannot stop {config.name}: {reason}")
        now = self._clock()
        with self._state.tx() as cur:
            self._state.record_stopped(cur, config.name, gone_at, now)
            self._state.log(cur, config.name, "stopped", f"gone {gone_at - began:.2f} s after the stop request, "
                            f"command done after {now - began:.2f} s", job_id, ts=gone_at)

    def start(self, config: GPUServiceSettings, job_id: str | None) -> None:
        """Run the start command and poll readiness; on failure stop the service again and raise.

        The failure opens the start breaker (its message says until when); a start interrupted by an
        exception is cleaned up without counting as a failure.

        Raises:
            ServiceStartError: command failed or no HTTP 200 within ``ready_timeout`` s of the start request.
        """
        name = config.name
        with self._state.tx() as cur:
            self._state.set_state(cur, name, "starting", "")
            self._state.log(cur, name, "start_requested", config.start_command, job_id)
        began = self._clock()
        deadline = began + config.ready_timeout
        try:
            result = self.run(config.start_command, config.command_timeout)
            if result.returncode != 0:
                raise _Failure(f"start command exited with {result.returncode}: {tail(result.output)}",
                               f"exit {result.returncode}")
            last, last_http = self._poll.until_ready(config.readiness_url, deadline)
            if not last.ready:
                raise _Failure(f"not ready within {config.ready_timeout:g} s (last answer from "
                               f"{config.readiness_url}: {last.detail})", last.detail, last_http)
        except _Failure as failure:
            with self._state.tx() as cur:
                blocked = self._state.open_breaker(cur, config, str(failure), self._clock())
            self.abort_start(config, f"{failure}; {blocked}", job_id)
            raise ServiceStartError(name, f"{name} failed to start: {failure}; it was stopped again; {blocked}",
                                    failure.last, failure.http_status) from None
        except BaseException:
            self.abort_start(config, "start interrupted", job_id)
            raise
        with self._state.tx() as cur:
            self._state.set_state(cur, name, "running", "")
            failures = self._state.close_breaker(cur, name)
            note = f"; start breaker closed after {failures} failed start(s)" if failures else ""
            self._state.log(cur, name, "ready", f"HTTP 200 after {self._clock() - began:.2f} s{note}", job_id)

    def abort_start(self, config: GPUServiceSettings, reason: str, job_id: str | None) -> None:
        """Log the failure, stop the service (cleanup) and leave it recorded ``failed``."""
        with self._state.tx() as cur:
            self._state.log(cur, config.name, "failed", reason, job_id)
            self._state.set_state(cur, config.name, "stopping", reason)
            self._state.log(cur, config.name, "stop_requested", "cleanup after failed start", job_id)
        try:
            self.stop(config, job_id)
        except ServiceStopError as exc:
            with self._state.tx() as cur:
                self._state.set_state(cur, config.name, "failed", f"{reason}; {exc}")
            return
        with self._state.tx() as cur:
            self._state.set_state(cur, config.name, "failed", reason)

