"""The L402 token store: SQLite WAL, state transitions, atomic spending under threads, restarts,
cleanup of unpaid tokens, the free allowance per client bucket, earnings statistics; the same
atomicity against PostgreSQL when ``SOVEREIGN_MCP_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sovereign_mcp.payments.backends.dev import DevBackend
from sovereign_mcp.payments.service import InvalidCredential, L402Service, allowance_key
from sovereign_mcp.payments.store import TokenRecord, TokenStore
from tests.fakes.pg_harness import postgres_url
from tests.helpers import isolated_settings

NOW = int(time.time())


def record(tool: str = "validate_quality", price: int = 21, max_calls: int = 1, state: str = "pending",
           expires_at: int | None = None, **extra: Any) -> TokenRecord:
    return TokenRecord(
        token_id=secrets.token_hex(32), payment_hash=secrets.token_hex(32), root_key=secrets.token_bytes(32),
        bolt11="lnbcrt210n1test", tools=tool, price_sat=price, max_calls=max_calls, state=state,  # type: ignore[arg-type]
        created_at=NOW, expires_at=NOW + 600 if expires_at is None else expires_at,
        valid_until=extra.pop("valid_until", NOW + 86_400),
        **extra,
    )


def paid(store: TokenStore, **kwargs: Any) -> TokenRecord:
    token = record(**kwargs)
    store.add(token)
    assert store.mark_paid(token.token_id, NOW)
    return token


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "l402.sqlite3"


@pytest.fixture
def store(db: Path) -> TokenStore:
    return TokenStore(db)


def parallel(n: int, fn, *args_per_call) -> list[Any]:
    """Run ``fn`` in ``n`` threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return fn(*(a[i] for a in args_per_call)) if args_per_call else fn()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


# -- SQLite --------------------------------------------------------------------------------------

def test_sqlite_wal_mode_and_schema(store: TokenStore, db: Path) -> None:
    assert db.is_file()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert {"l402_tokens", "l402_free_usage", "l402_dev_invoices"} <= tables


def test_add_get_round_trip(store: TokenStore) -> None:
    token = record(max_calls=3, client="10.0.0.0/24")
    store.add(token)
    got = store.get(token.token_id)
    assert got == token
    assert isinstance(got.root_key, bytes) and len(got.root_key) == 32
    assert store.get(secrets.token_hex(32)) is None
    with pytest.raises(sqlite3.IntegrityError):
        store.add(token)  # token_id is the primary key


def test_state_transitions(store: TokenStore) -> None:
    token = record(max_calls=2)
    store.add(token)
    tid = token.token_id
    assert not store.consume(tid), "a pending token cannot be spent"
    assert store.mark_paid(tid, NOW + 5)
    assert store.mark_paid(tid, NOW + 9), "mark_paid is idempotent"
    got = store.get(tid)
    assert (got.state, got.paid_at) == ("paid", NOW + 5)
    assert store.consume(tid) and store.consume(tid)
    assert not store.consume(tid)
    assert store.get(tid).calls_used == 2
    store.release(tid)
    assert store.get(tid).calls_used == 1
    assert store.consume(tid)
    assert store.revoke(tid)
    assert not store.revoke(tid), "already revoked"
    assert store.get(tid).state == "revoked"
    store.release(tid)
    assert not store.consume(tid), "a revoked token cannot be spent"
    assert not store.mark_paid(tid, NOW), "a revoked token cannot become paid again"
    assert store.get(tid).state == "revoked"
    assert not store.mark_paid(secrets.token_hex(32), NOW)
    assert not store.revoke(secrets.token_hex(32))
    assert not store.consume(secrets.token_hex(32))


def test_release_never_goes_below_zero(store: TokenStore) -> None:
    token = paid(store)
    store.release(token.token_id)
    assert store.get(token.token_id).calls_used == 0


def test_expired_pending_token_can_still_be_marked_paid(store: TokenStore) -> None:
    token = record(expires_at=NOW - 10)
    store.add(token)
    store.expire_pending(NOW)
    assert store.get(token.token_id).state == "expired"
    assert store.mark_paid(token.token_id, NOW)
    assert store.consume(token.token_id)


def test_consume_single_use_token_10_threads(store: TokenStore) -> None:
    token = paid(store)
    results = parallel(10, lambda: store.consume(token.token_id))
    assert results.count(True) == 1 and results.count(False) == 9
    assert store.get(token.token_id).calls_used == 1


def test_consume_single_use_token_10_threads_separate_stores(db: Path, store: TokenStore) -> None:
    """Ten stores (connections) on one file, as ten server workers would have."""
    token = paid(store)
    stores = [TokenStore(db) for _ in range(10)]
    results = parallel(10, lambda s: s.consume(token.token_id), stores)
    assert results.count(True) == 1
    assert store.get(token.token_id).calls_used == 1


def test_consume_bundle_exactly_max_calls(store: TokenStore) -> None:
    token = paid(store, max_calls=7)
    results = parallel(20, lambda: store.consume(token.token_id))
    assert results.count(True) == 7
    assert store.get(token.token_id).calls_used == 7


def test_consume_50_distinct_tokens_in_parallel(store: TokenStore) -> None:
    tokens = [paid(store) for _ in range(50)]
    results = parallel(50, lambda t: store.consume(t.token_id), tokens)
    assert results == [True] * 50
    assert all(store.get(t.token_id).calls_used == 1 for t in tokens)


def test_restart_keeps_paid_tokens_and_calls_used(db: Path) -> None:
    first = TokenStore(db)
    bundle = paid(first, max_calls=3)
    single = paid(first)
    pending = record()
    first.add(pending)
    assert first.consume(bundle.token_id) and first.consume(bundle.token_id) and first.consume(single.token_id)
    first.close()

    second = TokenStore(db)
    got = second.get(bundle.token_id)
    assert (got.state, got.calls_used, got.max_calls, got.root_key) == ("paid", 2, 3, bundle.root_key)
    assert second.get(single.token_id).calls_used == 1
    assert second.get(pending.token_id).state == "pending"
    assert second.consume(bundle.token_id)
    assert not second.consume(bundle.token_id)
    assert not second.consume(single.token_id)


def test_expire_pending(store: TokenStore) -> None:
    fresh = record(expires_at=NOW + 600)
    just_expired = record(expires_at=NOW - 10)
    long_expired = record(expires_at=NOW - 3601, valid_until=NOW - 3601)  # token lifetime over too
    unpaid_but_still_valid = record(expires_at=NOW - 3601)  # its invoice may have been paid: kept
    paid_long_ago = record(expires_at=NOW - 10_000)
    revoked_long_ago = record(expires_at=NOW - 10_000)
    for token in (fresh, just_expired, long_expired, unpaid_but_still_valid, paid_long_ago, revoked_long_ago):
        store.add(token)
    store.mark_paid(paid_long_ago.token_id, NOW - 9_000)
    store.mark_paid(revoked_long_ago.token_id, NOW - 9_000)
    store.revoke(revoked_long_ago.token_id)

    deleted = store.expire_pending(NOW, grace=3600)
    assert deleted == 1
    assert store.get(fresh.token_id).state == "pending"
    assert store.get(just_expired.token_id).state == "expired"
    assert store.get(long_expired.token_id) is None
    assert store.get(unpaid_but_still_valid.token_id).state == "expired"
    assert store.get(paid_long_ago.token_id).state == "paid"
    assert store.get(revoked_long_ago.token_id).state == "revoked"

    # expired invoices are kept while their token could still be valid (the invoice may have been paid)
    assert store.expire_pending(NOW + 3600) == 0
    assert store.get(just_expired.token_id).state == "expired"
    assert store.get(fresh.token_id).state == "expired"
    # past the token lifetime plus grace, every unpaid token is gone
    assert store.expire_pending(NOW + 10**7) == 3
    # paid and revoked tokens are never cleaned up
    assert {t.token_id for t in store.tokens()} == {paid_long_ago.token_id, revoked_long_ago.token_id}
    assert store.get(paid_long_ago.token_id).state == "paid"


def test_paid_but_unused_token_survives_cleanup(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path, data_dir=tmp_path / "data")
    store = TokenStore(tmp_path / "data" / "l402.sqlite3")
    backend = DevBackend(store, tmp_path / "data" / "node.key")
    clock = [float(NOW)]
    service = L402Service(settings, store, backend, clock=lambda: clock[0])
    challenge = service.challenge("validate_quality")
    preimage = backend.pay(challenge.bolt11)  # paid at once
    clock[0] += 600 + 3600 + 60  # the client comes back 71 minutes later
    service.challenge("validate_quality")  # someone else asks for an invoice: cleanup runs
    try:
        service.spend(f"L402 {challenge.macaroon}:{preimage}", "validate_quality")
    except InvalidCredential as exc:
        pytest.fail(f"paid token refused: {exc}")


def test_tokens_listing(store: TokenStore) -> None:
    a, b = record(), record()
    store.add(a)
    store.add(b)
    store.mark_paid(b.token_id, NOW)
    assert {t.token_id for t in store.tokens()} == {a.token_id, b.token_id}
    assert [t.token_id for t in store.tokens("paid")] == [b.token_id]
    assert [t.token_id for t in store.tokens("pending")] == [a.token_id]
    assert store.tokens("revoked") == []
    assert len(store.tokens(limit=1)) == 1


# -- free allowance --------------------------------------------------------------------------------

def test_client_key_masks_ipv4_24_and_ipv6_48() -> None:
    assert allowance_key("192.168.7.9") == allowance_key("192.168.7.200") == "192.168.7.0/24"
    assert allowance_key("192.168.8.9") != allowance_key("192.168.7.9")
    assert allowance_key("2001:db8:1:2::1") == allowance_key("2001:db8:1:ffff::1") == "2001:db8:1::/48"
    assert allowance_key("2001:db8:2::1") != allowance_key("2001:db8:1::1")
    assert allowance_key("127.0.0.1") == "127.0.0.0/24"
    assert allowance_key(None) == allowance_key("") == "local"
    assert allowance_key("not-an-ip") == "not-an-ip"


def test_take_free_per_client_bucket_per_day(store: TokenStore) -> None:
    day = "2026-05-13"
    near, near2, far = allowance_key("192.168.7.9"), allowance_key("192.168.7.200"), allowance_key("192.168.8.1")
    assert store.take_free(near, day, 2)
    assert store.take_free(near2, day, 2)
    assert not store.take_free(near, day, 2), "the /24 shares one allowance"
    assert not store.take_free(near2, day, 2)
    assert store.take_free(far, day, 2)
    assert store.take_free(near, "2026-05-14", 2), "a new day, a new allowance"
    v6a, v6b = allowance_key("2001:db8:1:2::1"), allowance_key("2001:db8:1:ffff::1")
    assert store.take_free(v6a, day, 1)
    assert not store.take_free(v6b, day, 1)
    assert not store.take_free(allowance_key("10.0.0.1"), day, 0), "no allowance configured"


def test_take_free_is_atomic(store: TokenStore) -> None:
    results = parallel(12, lambda: store.take_free("10.1.2.0/24", "2026-01-01", 5))
    assert results.count(True) == 5


def test_service_free_call_uses_configured_allowance(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path, data_dir=tmp_path / "data", payments={"free_calls_per_day": 2})
    store = TokenStore(tmp_path / "data" / "l402.sqlite3")
    service = L402Service(settings, store, DevBackend(store, tmp_path / "data" / "node.key"))
    a, b = allowance_key("203.0.113.5"), allowance_key("203.0.113.77")
    assert [service.free_call(a), service.free_call(b), service.free_call(a)] == [True, True, False]
    assert service.free_call(allowance_key("198.51.100.1"))


# -- stats -----------------------------------------------------------------------------------------

def test_stats_sums_sats_per_tool(store: TokenStore) -> None:
    v1 = paid(store, price=21)
    v2 = paid(store, price=21, max_calls=3)
    t1 = paid(store, tool="trigger_pipeline", price=2100)
    revoked = paid(store, price=21)
    store.add(record(price=21))  # pending: not earned
    store.add(record(tool="trigger_pipeline", price=2100))  # pending
    unpaid_revoked = record(price=21)
    store.add(unpaid_revoked)
    store.revoke(unpaid_revoked.token_id)  # revoked before payment: not earned
    store.consume(v1.token_id)
    store.consume(v2.token_id)
    store.consume(v2.token_id)
    store.consume(revoked.token_id)
    store.revoke(revoked.token_id)
    assert store.consume(t1.token_id)

    stats = store.stats()
    assert stats["earned"] == {
        "validate_quality": {"tokens": 3, "sats": 63, "calls": 4},
        "trigger_pipeline": {"tokens": 1, "sats": 2100, "calls": 1},
    }
    assert stats["sats_total"] == 2163
    assert stats["by_state"] == {"paid": 3, "pending": 2, "revoked": 2}
    assert stats["outstanding"] == 1  # only v2 has calls left


def test_stats_empty(store: TokenStore) -> None:
    assert store.stats() == {"earned": {}, "sats_total": 0, "by_state": {}, "outstanding": 0}


# -- dev invoices ------------------------------------------------------------------------------------

def test_dev_invoice_rows(store: TokenStore) -> None:
    h, p = secrets.token_hex(32), secrets.token_hex(32)
    store.add_dev_invoice(h, p, "lnbcrt1x", 21, NOW + 600)
    assert store.dev_invoice(h) == (p, "lnbcrt1x", 21, NOW + 600, False)
    store.settle_dev_invoice(h)
    assert store.dev_invoice(h)[4] is True
    assert store.dev_invoice(secrets.token_hex(32)) is None


def test_sqlite_store_needs_a_path() -> None:
    with pytest.raises(ValueError, match="SQLite path"):
        TokenStore(None)


# -- PostgreSQL (optional) -----------------------------------------------------------------------------

def test_postgres_consume_is_atomic() -> None:
    POSTGRES_URL = postgres_url()  # skipped without SOVEREIGN_MCP_TEST_POSTGRES_URL, failed under CI
    store = TokenStore(database_url=POSTGRES_URL)
    assert store.postgres
    single = paid(store)
    distinct = [paid(store) for _ in range(50)]
    try:
        results = parallel(10, lambda: store.consume(single.token_id))
        assert results.count(True) == 1
        assert store.get(single.token_id).calls_used == 1
        others = [TokenStore(database_url=POSTGRES_URL) for _ in range(10)]
        results = parallel(10, lambda s: s.consume(single.token_id), others)
        assert results.count(True) == 0
        results = parallel(50, lambda t: store.consume(t.token_id), distinct)
        assert results == [True] * 50
    finally:
        with store._tx() as cur:
            for token in [single, *distinct]:
                cur.execute("DELETE FROM l402_tokens WHERE token_id = ?", [token.token_id])
