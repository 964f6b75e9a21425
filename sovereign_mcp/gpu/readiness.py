"""Readiness checks of GPU services: one HTTP ``GET`` of the service's readiness URL on loopback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

T = TypeVar("T")


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


CONNECT_TIMEOUT = 0.5
"""Default connect timeout of a readiness request, s (a loopback service that listens accepts at once)."""

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


def http_probe(url: str, timeout: float, connect_timeout: float = CONNECT_TIMEOUT) -> Readiness:
    """``GET url``: 200 = ready, 503 = still warming (SGLang ``/health``, llama-server), connection refused
    = not listening yet (or gone). Proxy variables are ignored: these are local services.

    ``timeout`` bounds the wait for the answer (first byte included), ``connect_timeout`` (at most
    ``timeout``) the TCP connect, seconds: both far below a generation's timeout, so a hung service costs
    one short probe, not a generation's worth.
    """
    limits = httpx.Timeout(timeout, connect=min(connect_timeout, timeout))
    try:
        response = _shared_client().get(url, timeout=limits)
    except httpx.ConnectError as exc:
        return Readiness(None, "connection refused" if "refused" in str(exc).lower() else f"cannot connect: {exc}")
    except httpx.TimeoutException:
        return Readiness(None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Readiness(None, str(exc) or type(exc).__name__)
    suffix = " (warming up)" if response.status_code == 503 else ""
    return Readiness(response.status_code, f"HTTP {response.status_code}{suffix}")


@dataclass(frozen=True, slots=True)
class Poller:
    """Polls readiness URLs with ``probe`` every ``interval`` s (``timeout`` s per request) on ``clock``."""

    probe: Probe
    timeout: float
    interval: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]

    def check(self, url: str) -> Readiness:
        """One readiness check of ``url``."""
        return self.probe(url, self.timeout)

    def watch(self, url: str, task: Callable[[], T], name: str) -> tuple[T | None, float | None]:
        """Run ``task`` in a thread while checking ``url``: (its result, when ``url`` first stopped answering
        or ``None``). Used for a stop command that itself waits after the service is gone."""
        outcome: list[T] = []
        thread = threading.Thread(target=lambda: outcome.append(task()), name=name, daemon=True)
        thread.start()
        gone_at: float | None = None
        while thread.is_alive():
            if gone_at is None and not self.check(url).reachable:
                gone_at = self.clock()
            thread.join(self.interval)
        return (outcome[0] if outcome else None), gone_at

    def until_ready(self, url: str, deadline: float) -> tuple[Readiness, int | None]:
        """Poll until HTTP 200 or ``deadline`` (unix s); the last answer and the last HTTP status seen."""
        last_http: int | None = None
        while True:
            answer = self.check(url)
            if answer.ready:
                return answer, answer.status
            last_http = answer.status if answer.status is not None else last_http
            now = self.clock()
            if now >= deadline:
                return answer, last_http
            self.sleep(min(self.interval, deadline - now))

    def until_gone(self, url: str, deadline: float) -> tuple[float | None, Readiness]:
        """Poll until nothing answers ``url`` or ``deadline``: (when it was gone or ``None``, last answer)."""
        while True:
            answer = self.check(url)
            now = self.clock()
            if not answer.reachable:
                return now, answer
            if now >= deadline:
                return None, answer
            self.sleep(min(self.interval, deadline - now))
