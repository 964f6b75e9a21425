"""The L402 token store: SQLite by default (WAL, survives restarts), PostgreSQL when
``database_url`` is a ``postgresql://`` URL (several server processes then share tokens).

Every state change is one conditional ``UPDATE`` so concurrent calls, threads or processes cannot
spend a token twice: :meth:`TokenStore.consume` succeeds only while ``calls_used < max_calls`` on a
paid, unrevoked token. Times are unix seconds; amounts are sats.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sovereign_mcp.db import Cursor, Database

State = Literal["pending", "paid", "expired", "revoked"]
CallClaim = Literal["new", "done", "running", "resumed"]

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS l402_tokens (
        token_id TEXT PRIMARY KEY,
        payment_hash TEXT NOT NULL UNIQUE,
        root_key TEXT NOT NULL,
        bolt11 TEXT NOT NULL,
        tools TEXT NOT NULL,
        price_sat INTEGER NOT NULL,
        max_calls INTEGER NOT NULL,
        calls_used INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        valid_until BIGINT NOT NULL,
        paid_at BIGINT,
        client TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS l402_tokens_state ON l402_tokens (state, expires_at)",
    """CREATE TABLE IF NOT EXISTS l402_free_usage (
        client TEXT NOT NULL, day TEXT NOT NULL, calls INTEGER NOT NULL, PRIMARY KEY (client, day)
    )""",
    # one row per paid call (idempotency key = token + tool + arguments): 'running' while the tool runs,
    # 'done' with the result kept for replay; the row is the one charge that call made on its token
    """CREATE TABLE IF NOT EXISTS l402_calls (
        call_key TEXT PRIMARY KEY, token_id TEXT NOT NULL, tool TEXT NOT NULL, state TEXT NOT NULL,
        started_at BIGINT NOT NULL, valid_until BIGINT NOT NULL, result TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS l402_dev_invoices (
        payment_hash TEXT PRIMARY KEY, preimage TEXT NOT NULL, bolt11 TEXT NOT NULL,
        amount_sat INTEGER NOT NULL, expires_at BIGINT NOT NULL, paid INTEGER NOT NULL DEFAULT 0
    )""",
]


@dataclass(slots=True)
class TokenRecord:
    """One issued token. ``token_id`` and ``payment_hash`` are hex; ``root_key`` is 32 raw bytes."""

    token_id: str
    payment_hash: str
    root_key: bytes
    bolt11: str
    tools: str
    price_sat: int
    max_calls: int
    state: State
    created_at: int
    expires_at: int
    valid_until: int
    calls_used: int = 0
    paid_at: int | None = None
    client: str = ""


_COLUMNS = ("token_id", "payment_hash", "root_key", "bolt11", "tools", "price_sat", "max_calls", "calls_used",
            "state", "created_at", "expires_at", "valid_until", "paid_at", "client")


class TokenStore:
    """SQL token store over SQLite (``path``) or PostgreSQL (``database_url``)."""

    def __init__(self, path: Path | None = None, database_url: str | None = None) -> None:
        self.db = Database(path, database_url)
        self.postgres = self.db.postgres
        self.db.create(SCHEMA)

    def _tx(self, write: bool = True) -> AbstractContextManager[Cursor]:
        return self.db.tx(write)

    def close(self) -> None:
        """Close this thread's connection."""
        self.db.close()

    # -- tokens --------------------------------------------------------------------------------
    def add(self, token: TokenRecord) -> None:
        values = [getattr(token, c) for c in _COLUMNS]
        values[2] = token.root_key.hex()
        with self._tx() as cur:
            cur.execute(f"INSERT INTO l402_tokens ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                        values)

    def get(self, token_id: str) -> TokenRecord | None:
        with self._tx(write=False) as cur:
            cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM l402_tokens WHERE token_id = ?", [token_id])
            row = cur.fetchone()
        return _record(row) if row else None

    def mark_paid(self, token_id: str, now: int) -> bool:
        """Pending -> paid (idempotent); ``False`` if the token is revoked or unknown."""
        with self._tx() as cur:
            cur.execute("UPDATE l402_tokens SET state = 'paid', paid_at = ? WHERE token_id = ? AND state IN "
                        "('pending', 'expired')", [now, token_id])
            cur.execute("SELECT state FROM l402_tokens WHERE token_id = ?", [token_id])
            row = cur.fetchone()
        return bool(row) and row[0] == "paid"

    def consume(self, token_id: str, limit: int | None = None) -> bool:
        """Spend one call of a paid token; ``False`` when none is left (atomic). ``limit`` (a stricter
        ``max_calls`` caveat of the credential shown) caps the token's spent calls below its own maximum."""
        with self._tx() as cur:
            cur.execute("UPDATE l402_tokens SET calls_used = calls_used + 1 WHERE token_id = ? AND state = 'paid' "
                        "AND calls_used < max_calls AND calls_used < ?", [token_id, limit or 2**62])
            return cur.rowcount == 1

    def release(self, token_id: str) -> None:
        """Give back a call whose tool run failed before producing a result."""
        with self._tx() as cur:
            cur.execute("UPDATE l402_tokens SET calls_used = calls_used - 1 WHERE token_id = ? AND calls_used > 0",
                        [token_id])

    def revoke(self, token_id: str) -> bool:
        with self._tx() as cur:
            cur.execute("UPDATE l402_tokens SET state = 'revoked' WHERE token_id = ? AND state != 'revoked'",
                        [token_id])
            return cur.rowcount == 1

    def expire_pending(self, now: int, grace: int = 3600) -> int:
        """Mark pending tokens whose invoice expired as expired, and delete those expired for longer
        than ``grace`` seconds. Returns the number deleted."""
        with self._tx() as cur:
            cur.execute("UPDATE l402_tokens SET state = 'expired' WHERE state = 'pending' AND expires_at <= ?", [now])
            # a paid invoice's token stays "pending" until its credential is first shown: keep it for
            # as long as the token itself would be valid, then drop it
            cur.execute("DELETE FROM l402_tokens WHERE state = 'expired' AND valid_until <= ?", [now - grace])
            return max(cur.rowcount, 0)

    def tokens(self, state: State | None = None, limit: int = 100) -> list[TokenRecord]:
        query = f"SELECT {', '.join(_COLUMNS)} FROM l402_tokens"
        params: list[Any] = []
        if state:
            query += " WHERE state = ?"
            params.append(state)
        query += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        with self._tx() as cur:
            cur.execute(query, params)
            return [_record(row) for row in cur.fetchall()]

    def stats(self) -> dict[str, Any]:
        """Sats earned per tool set, tokens by state, calls used."""
        with self._tx() as cur:
            cur.execute("SELECT tools, COUNT(*), SUM(price_sat), SUM(calls_used) FROM l402_tokens "
                        "WHERE state IN ('paid', 'revoked') AND paid_at IS NOT NULL GROUP BY tools")
            earned = {row[0]: {"tokens": row[1], "sats": int(row[2] or 0), "calls": int(row[3] or 0)}
                      for row in cur.fetchall()}
            cur.execute("SELECT state, COUNT(*) FROM l402_tokens GROUP BY state")
            states = dict(cur.fetchall())
            cur.execute("SELECT COUNT(*) FROM l402_tokens WHERE state = 'paid' AND calls_used < max_calls")
            outstanding = cur.fetchone()[0]
        return {"earned": earned, "sats_total": sum(e["sats"] for e in earned.values()), "by_state": states,
                "outstanding": outstanding}

    def ledger(self, since: int) -> list[tuple[str, int, int, int | None, str]]:
        """``(tools, price_sat, created_at, paid_at, state)`` of every token created or paid at or after ``since``
        (unix s): invoices issued vs paid and sats per tool per day, for the operator dashboard."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT tools, price_sat, created_at, paid_at, state FROM l402_tokens WHERE created_at >= ? "
                        "OR paid_at >= ?", [since, since])
            return [(str(r[0]), int(r[1]), int(r[2]), None if r[3] is None else int(r[3]), str(r[4]))
                    for r in cur.fetchall()]

    # -- paid calls (safe retries) ---------------------------------------------------------------
    def claim_call(self, call_key: str, token_id: str, tool: str, now: int, valid_until: int,
                   stale_before: int) -> tuple[CallClaim, str | None]:
        """Start the paid call ``call_key`` (atomic across threads and processes).

        Returns ``("new", None)`` when no call with this key exists (the caller must charge it),
        ``("done", result)`` when one finished (replay ``result``, JSON, free), ``("running", None)`` when
        one is running and started at or after ``stale_before``, and ``("resumed", None)`` when a running
        one started before ``stale_before`` (its process died or the tool timed out) and this caller takes
        it over, on the charge that call already made.
        """
        with self._tx() as cur:
            cur.execute("INSERT INTO l402_calls (call_key, token_id, tool, state, started_at, valid_until) "
                        "VALUES (?, ?, ?, 'running', ?, ?) ON CONFLICT (call_key) DO NOTHING",
                        [call_key, token_id, tool, now, valid_until])
            if cur.rowcount == 1:
                return "new", None
            cur.execute("SELECT state, started_at, result FROM l402_calls WHERE call_key = ?", [call_key])
            row = cur.fetchone()
            if row is None:  # dropped between the two statements: the caller may simply retry
                return "running", None
            state, started_at, result = row
            if state == "done":
                return "done", result
            if started_at >= stale_before:
                return "running", None
            cur.execute("UPDATE l402_calls SET started_at = ? WHERE call_key = ? AND state = 'running' "
                        "AND started_at = ?", [now, call_key, started_at])
            return ("resumed" if cur.rowcount == 1 else "running"), None

    def finish_call(self, call_key: str, result: str) -> None:
        """Mark a paid call done and keep its ``result`` (JSON) for replays."""
        with self._tx() as cur:
            cur.execute("UPDATE l402_calls SET state = 'done', result = ? WHERE call_key = ?", [result, call_key])

    def drop_call(self, call_key: str) -> None:
        """Forget a paid call that produced no result (its charge is released by the caller)."""
        with self._tx() as cur:
            cur.execute("DELETE FROM l402_calls WHERE call_key = ?", [call_key])

    def purge_calls(self, now: int) -> int:
        """Delete the calls of tokens no longer valid; returns how many."""
        with self._tx() as cur:
            cur.execute("DELETE FROM l402_calls WHERE valid_until <= ?", [now])
            return max(cur.rowcount, 0)

    # -- free allowance ------------------------------------------------------------------------
    def take_free(self, client: str, day: str, limit: int) -> bool:
        """Count one free call for ``client`` on ``day``; ``False`` once ``limit`` is reached."""
        if limit <= 0:
            return False
        with self._tx() as cur:
            cur.execute("INSERT INTO l402_free_usage (client, day, calls) VALUES (?, ?, 0) "
                        "ON CONFLICT (client, day) DO NOTHING", [client, day])
            cur.execute("UPDATE l402_free_usage SET calls = calls + 1 WHERE client = ? AND day = ? AND calls < ?",
                        [client, day, limit])
            return cur.rowcount == 1

    # -- the dev backend's invoices --------------------------------------------------------------
    def add_dev_invoice(self, payment_hash: str, preimage: str, bolt11: str, amount_sat: int, expires_at: int) -> None:
        with self._tx() as cur:
            cur.execute("INSERT INTO l402_dev_invoices (payment_hash, preimage, bolt11, amount_sat, expires_at) "
                        "VALUES (?, ?, ?, ?, ?)", [payment_hash, preimage, bolt11, amount_sat, expires_at])

    def dev_invoice(self, payment_hash: str) -> tuple[str, str, int, int, bool] | None:
        """``(preimage, bolt11, amount_sat, expires_at, paid)`` of a dev invoice."""
        with self._tx() as cur:
            cur.execute("SELECT preimage, bolt11, amount_sat, expires_at, paid FROM l402_dev_invoices "
                        "WHERE payment_hash = ?", [payment_hash])
            row = cur.fetchone()
        return (row[0], row[1], row[2], row[3], bool(row[4])) if row else None

    def settle_dev_invoice(self, payment_hash: str) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE l402_dev_invoices SET paid = 1 WHERE payment_hash = ?", [payment_hash])


def _record(row: Sequence[Any]) -> TokenRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["root_key"] = bytes.fromhex(data["root_key"])
    return TokenRecord(**data)
