"""Operator tokens: ``smcp_<token_id>_<secret>`` bearer tokens, stored hashed.

The token id (16 hex digits) is public and names the row; the secret (43 URL-safe characters, 256 bits
from :mod:`secrets`) is shown once at creation and only its SHA-256 is stored. A plain hash is enough
because the secret is random and long, not a password (the reasoning GitHub and PyPI apply to their API
tokens); the comparison is constant-time (:func:`hmac.compare_digest`). Rows live in
``<data_dir>/auth.sqlite3`` or, with ``Settings.database_url``, in PostgreSQL (shared by every process).
Times are unix seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sovereign_mcp.auth.scopes import OPERATOR, SCOPES
from sovereign_mcp.db import Database

PREFIX = "smcp_"

TOKEN_RE = re.compile(r"^smcp_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
LABEL_MAX = 200
MAX_LIFETIME = 100 * 365 * 86_400
TOUCH_EVERY = 60
"""``last_used_at`` is written at most once per this many seconds per token (a verify is usually a read)."""

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS operator_tokens (
        token_id TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,
        scope TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        last_used_at BIGINT,
        revoked INTEGER NOT NULL DEFAULT 0
    )""",
]
_COLUMNS = ("token_id", "scope", "label", "created_at", "expires_at", "last_used_at", "revoked")


class TokenInputError(ValueError):
    """A scope, label or lifetime that cannot be used; the message says what is allowed."""


@dataclass(frozen=True, slots=True)
class OperatorToken:
    """One stored token, without its secret. ``expires_at`` ``None`` = never expires."""

    token_id: str
    scope: str
    label: str
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked: bool

    def state(self, now: float | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at:
            return "expired"
        return "active"


def check_scope(scope: str) -> str:
    """``scope`` if it is one of :data:`SCOPES`, else :class:`TokenInputError` naming the allowed ones."""
    if scope not in SCOPES:
        raise TokenInputError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    return scope


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _record(row: tuple) -> OperatorToken:
    return OperatorToken(token_id=row[0], scope=row[1], label=row[2], created_at=int(row[3]),
                         expires_at=None if row[4] is None else int(row[4]),
                         last_used_at=None if row[5] is None else int(row[5]), revoked=bool(row[6]))


class OperatorTokenStore:
    """Create, list, revoke and verify operator tokens (SQLite ``path`` or PostgreSQL ``database_url``).

    Raises:
        ValueError: neither a path nor a PostgreSQL URL (from :class:`~sovereign_mcp.db.Database`).
    """

    def __init__(self, path: Path | None = None, database_url: str | None = None) -> None:
        self.db = Database(path, database_url)
        self.db.create(SCHEMA)

    @classmethod
    def for_settings(cls, data_dir: Path, database_url: str | None) -> OperatorTokenStore:
        """The store a server with this ``data_dir`` and ``database_url`` uses (``<data_dir>/auth.sqlite3``)."""
        return cls(data_dir / "auth.sqlite3", database_url)

    def close(self) -> None:
        """Close this thread's connection."""
        self.db.close()

    def create(self, scope: str = OPERATOR, label: str = "", expires_in: float | None = None,
               now: float | None = None) -> tuple[str, OperatorToken]:
        """A new token: ``(plaintext, record)``. The plaintext is not stored and cannot be shown again.

        Args:
            scope: one of :data:`SCOPES`.
            label: free text naming where the token is used (up to 200 characters).
            expires_in: lifetime in seconds (> 0); ``None`` = until revoked.

        Raises:
            TokenInputError: unknown scope, label too long, lifetime not positive.
        """
        check_scope(scope)
        if len(label) > LABEL_MAX:
            raise TokenInputError(f"label longer than {LABEL_MAX} characters")
        if expires_in is not None and not (math.isfinite(expires_in) and 0 < expires_in < MAX_LIFETIME):
            raise TokenInputError("the lifetime must be positive and under 100 years (or left out: until revoked)")
        created = int(time.time() if now is None else now)
        expires = None if expires_in is None else created + int(expires_in)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self.db.tx() as cur:
            cur.execute("INSERT INTO operator_tokens (token_id, secret_sha256, scope, label, created_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [token_id, _digest(secret), scope, label, created, expires])
        record = OperatorToken(token_id, scope, label, created, expires, None, False)
        return f"{PREFIX}{token_id}_{secret}", record

    def list(self) -> list[OperatorToken]:
        """Every token, newest first (revoked and expired ones included; no secrets or hashes)."""
        with self.db.tx(write=False) as cur:
            cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM operator_tokens ORDER BY created_at DESC, token_id")
            return [_record(row) for row in cur.fetchall()]

    def get(self, token_id: str) -> OperatorToken | None:
        """The token with this id, or ``None``."""
        with self.db.tx(write=False) as cur:
            cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM operator_tokens WHERE token_id = ?", [token_id])
            row = cur.fetchone()
        return _record(row) if row else None

    def revoke(self, token_id: str) -> bool:
        """Revoke a token at once (every process sees it on its next verify); ``False`` if unknown or revoked."""
        with self.db.tx() as cur:
            cur.execute("UPDATE operator_tokens SET revoked = 1 WHERE token_id = ? AND revoked = 0", [token_id])
            return cur.rowcount == 1

    def verify(self, token: str, now: float | None = None) -> OperatorToken | None:
        """The record of a well-formed, known, unrevoked, unexpired token whose secret matches; else ``None``."""
        match = TOKEN_RE.match(token)
        if match is None:
            return None
        token_id, secret = match["id"], match["secret"]
        moment = time.time() if now is None else now
        with self.db.tx(write=False) as cur:
            cur.execute(f"SELECT {', '.join(_COLUMNS)}, secret_sha256 FROM operator_tokens WHERE token_id = ?",
                        [token_id])
            row = cur.fetchone()
        if row is None or not hmac.compare_digest(str(row[-1]), _digest(secret)):
            return None
        record = _record(row[:-1])
        if record.state(moment) != "active":
            return None
        if record.last_used_at is None or moment - record.last_used_at >= TOUCH_EVERY:
            with self.db.tx() as cur:
                cur.execute("UPDATE operator_tokens SET last_used_at = ? WHERE token_id = ?", [int(moment), token_id])
        return record
