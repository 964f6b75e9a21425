"""Dashboard login sessions: an operator token is exchanged once for a random session id kept in memory.

Rules (issue 15; OWASP Session Management and CSRF Prevention cheat sheets):

* the session id and its CSRF token are 256-bit values from :mod:`secrets`; the id travels only in an
  ``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``Path=/dashboard`` (``Secure`` over https);
* a session lasts ``session_hours`` from login (absolute, not sliding) and never past the expiry of the
  operator token it was made from; a stored token that is revoked ends its sessions on their next request;
* every state-changing request carries the session's CSRF token (header ``X-CSRF-Token`` or form field
  ``csrf``), compared with :func:`hmac.compare_digest`; the login form itself is protected by a
  double-submit token (cookie + field) because no session exists yet.

Sessions live in this process's memory: a restart logs everybody out, and with ``serve --workers N`` a
session is known only to the worker that made it. Times are unix seconds.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "smcp_dashboard"
LOGIN_COOKIE = "smcp_dashboard_login"
COOKIE_PATH = "/dashboard"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True, slots=True)
class Session:
    """One login: ``token_id`` of the operator token (``None`` for a JWT), times in unix seconds."""

    session_id: str
    csrf: str
    token_id: str | None
    label: str
    created_at: float
    expires_at: float

    def expired(self, now: float) -> bool:
        """Whether the session is over at ``now``."""
        return now >= self.expires_at


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted secret with the expected one (``False`` for a missing one)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


class SessionStore:
    """In-memory sessions with absolute expiry, thread-safe.

    Args:
        lifetime: session lifetime, seconds (> 0).
        max_sessions: sessions kept; creating one more drops the oldest.
        clock: unix seconds, injectable for the expiry tests.
        still_valid: ``still_valid(token_id)`` says whether the stored operator token behind a session is
            still active (revoked or expired tokens end their sessions); not called for JWT sessions.

    Raises:
        ValueError: ``lifetime`` not positive or ``max_sessions`` below 1.
    """

    def __init__(self, lifetime: float, max_sessions: int = 64, clock: Callable[[], float] = time.time,
                 still_valid: Callable[[str], bool] | None = None) -> None:
        if lifetime <= 0 or max_sessions < 1:
            raise ValueError("session lifetime must be positive and max_sessions at least 1")
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._clock = clock
        self._still_valid = still_valid
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, token_id: str | None, label: str = "", token_expires_at: float | None = None) -> Session:
        """A new session for an operator token that was just verified (``token_expires_at`` caps its end)."""
        now = self._clock()
        end = now + self.lifetime
        if token_expires_at is not None:
            end = min(end, token_expires_at)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), token_id, label, now, end)
        with self._lock:
            self._purge(now)
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or ``None`` (unknown, expired, or its operator token no longer active;
        such a session is dropped)."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expired(now):
                del self._sessions[session_id]
                return None
        if session.token_id is not None and self._still_valid is not None and not self._still_valid(session.token_id):
            self.end(session_id)
            return None
        return session

    def end(self, session_id: str | None) -> bool:
        """Log out: ``True`` if a session was dropped."""
        with self._lock:
            return self._sessions.pop(session_id or "", None) is not None

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._sessions)

    def _purge(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expired(now)]:
            del self._sessions[key]


def new_login_nonce() -> str:
    """The double-submit token of the login form (set as a cookie and as a hidden field)."""
    return secrets.token_urlsafe(32)
