"""A per-provider circuit breaker: stop calling a provider that keeps failing, probe it again later.

States (the classic pattern, as in Nygard's "Release It!"):

* ``closed``: calls go through; ``failure_threshold`` consecutive failures open the circuit.
* ``open``: calls are refused without touching the network until ``cooldown_seconds`` have passed.
* ``half_open``: the cooldown is over; exactly one call (the probe) is let through. Success closes the
  circuit, failure opens it again for another cooldown. Other calls are refused while the probe runs.

A timeout trips the circuit at once (:meth:`CircuitBreaker.record_failure` with ``trip``), and the chain
probes such a provider's readiness endpoint with a short timeout before it sends it a real call again
(:mod:`sovereign_mcp.inference.client`).

Time comes from an injectable ``clock`` (seconds, monotonic; default :func:`time.monotonic`) so tests can
move it. Thread-safe: one lock per breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one provider and decides whether the next call may go out."""

    def __init__(self, failure_threshold: int = 3, cooldown_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def retry_in(self) -> float:
        """Seconds until a probe may go out (0 when closed or half-open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown_seconds - self._clock())

    def allow(self) -> bool:
        """Whether a call may go out now. In ``half_open`` this grants the single probe: the caller must then
        call :meth:`record_success`, :meth:`record_failure` or :meth:`release`."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        """The provider answered (even with a 4xx): close the circuit and reset the count."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self, trip: bool = False) -> None:
        """The provider failed (unreachable, timeout, 429, 5xx): count it; open (again) at the threshold, or at
        once with ``trip`` (a timeout: a hung provider would cost its whole timeout on every call until then)."""
        with self._lock:
            self._failures += 1
            self._probing = False
            if trip or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()

    def release(self) -> None:
        """Give back a granted probe without a verdict (the call was abandoned before reaching the server)."""
        with self._lock:
            self._probing = False
