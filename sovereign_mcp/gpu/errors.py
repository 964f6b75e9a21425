"""Errors of the GPU service manager (:mod:`sovereign_mcp.gpu.manager`); each names the service concerned."""

from __future__ import annotations


class GPUError(Exception):
    """Base of the manager's errors; ``service`` names the service concerned."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


class UnknownServiceError(GPUError):
    """The name is not one of the configured services."""


class MemoryGuardError(GPUError):
    """``MemAvailable`` stayed below ``memory_gb + memory_margin_gb`` for ``memory_wait_seconds``.

    ``available_gb`` is ``None`` when the meminfo file could not be read; both figures are GB (10^9 bytes).
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


class ServiceUnavailableError(GPUError):
    """The service's start breaker is open: its last start did not become ready, so it is not started again
    before ``retry_at`` (unix seconds); ``reason`` is that failure. Nothing was run."""

    def __init__(self, service: str, message: str, retry_at: float, reason: str) -> None:
        super().__init__(service, message)
        self.retry_at = retry_at
        self.reason = reason
