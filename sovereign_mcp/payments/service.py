"""L402 for paid tools: issue challenges, verify credentials, meter calls.

Verification follows Aperture (lightninglabs/aperture ``mint/mint.go``, ``VerifyL402``): decode the
macaroon identifier ->
``sha256(preimage) == payment_hash`` (constant time) -> look up the token's root key -> verify the
signature -> check the caveats (service, capability = tool, expiry) -> spend one of the token's calls
atomically in the store. A preimage is only revealed by paying the invoice, so a valid preimage marks
a pending token paid without asking the backend: paid tokens keep working while the backend is down.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sovereign_mcp.config import Price, Settings
from sovereign_mcp.observability.metrics import INVOICES_ISSUED
from sovereign_mcp.payments import macaroons
from sovereign_mcp.payments.backends.base import BackendUnavailable, LightningBackend
from sovereign_mcp.payments.headers import CredentialError, challenges, parse_credential
from sovereign_mcp.payments.offers import RETRY_HINT, PaymentRequired
from sovereign_mcp.payments.store import TokenRecord, TokenStore


class PaymentsUnavailable(RuntimeError):
    """The Lightning backend is down or misconfigured: no invoice can be issued right now."""


class InvalidCredential(ValueError):
    """A credential that does not authorise this call (message says why)."""


@dataclass(frozen=True, slots=True)
class PaymentChallenge:
    """An invoice plus the macaroon that becomes valid once it is paid."""

    tool: str
    amount_sat: int
    calls: int
    bolt11: str
    macaroon: str
    payment_hash: str
    expires_at: int

    def www_authenticate(self) -> list[str]:
        return challenges(self.macaroon, self.bolt11)

    def as_content(self, reason: str = "") -> dict[str, object]:
        """The structured ``payment_required`` payload (:class:`~sovereign_mcp.payments.offers.PaymentRequired`)."""
        return {"payment_required": PaymentRequired(
            tool=self.tool, amount_sat=self.amount_sat, calls=self.calls, invoice=self.bolt11,
            macaroon=self.macaroon, payment_hash=self.payment_hash, expires_at=self.expires_at,
            reason=reason or "this tool is paid", retry=RETRY_HINT).model_dump()}


class CallInProgress(RuntimeError):
    """The same paid call (same token, tool and arguments) is running now; ``retry_after`` seconds."""

    def __init__(self, tool: str, retry_after: int) -> None:
        self.tool = tool
        self.retry_after = retry_after
        super().__init__(f"this paid {tool} call is still running: repeat it with the same credential and "
                         f"arguments in {retry_after} s to get its result, at no charge")


@dataclass(frozen=True, slots=True)
class Receipt:
    """A paid call: which token paid for it, and what is left on it.

    ``charged`` is False for a call that did not spend anything itself (a replay of a finished call, or a
    retry that took over one whose earlier attempt was cut off); ``call_key`` names the call for replays
    (``None`` on plain HTTP routes, which do not replay).
    """

    token_id: str
    tool: str
    payment_hash: str = ""
    amount_sat: int = 0
    calls_left: int = 0
    valid_until: int = 0
    charged: bool = True
    call_key: str | None = None

    def as_meta(self, replayed: bool = False) -> dict[str, object]:
        """The ``_meta["l402/receipt"]`` of a paid result (amount in sats, times in unix seconds)."""
        return {"scheme": "L402", "tool": self.tool, "payment_hash": self.payment_hash,
                "amount_sat": self.amount_sat, "charged": self.charged, "replayed": replayed,
                "calls_left": self.calls_left, "valid_until": self.valid_until}


@dataclass(frozen=True, slots=True)
class Replay:
    """A paid call that already finished: its stored result (JSON text) and the receipt."""

    result: str
    receipt: Receipt


def call_key(token_id: str, tool: str, arguments: dict[str, object] | None) -> str:
    """The idempotency key of a paid call: SHA-256 over the token, the tool and the arguments (canonical
    JSON, the ``l402`` credential argument left out), hex."""
    args = {k: v for k, v in (arguments or {}).items() if k != "l402"}
    canonical = json.dumps([token_id, tool, args], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _used_up(limit: int) -> str:
    return f"token used up ({limit} call{'s' if limit > 1 else ''})"


def allowance_key(ip: str | None) -> str:
    """The client bucket for free allowances: IPv4 masked to /24, IPv6 to /48 (as Aperture does). Not the
    rate limiter's bucket (:func:`sovereign_mcp.ratelimit.client_key`: one IPv4 address, an IPv6 /64)."""
    if not ip:
        return "local"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class L402Service:
    """Prices from ``settings.payments``; tokens in ``store``; invoices from ``backend``."""

    def __init__(self, settings: Settings, store: TokenStore, backend: LightningBackend,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = settings.payments
        self.store = store
        self.backend = backend
        self.clock = clock
        self._lock = threading.Lock()
        self._verified: OrderedDict[tuple[str, str], tuple[str, int | None, int | None]] = OrderedDict()

    def price(self, tool: str) -> Price | None:
        """The price of ``tool`` (``None`` when it is free or payments are off)."""
        return self.config.prices.get(tool) if self.config.enabled else None

    def challenge(self, tool: str, client: str = "") -> PaymentChallenge:
        """Issue an invoice and a pending token for one purchase of ``tool``.

        Raises:
            PaymentsUnavailable: the backend could not create the invoice.
            KeyError: ``tool`` is not paid.
        """
        price = self.config.prices[tool]
        now = int(self.clock())
        self.store.expire_pending(now)
        self.store.purge_calls(now)
        memo = f"sovereign-mcp {tool}: {price.calls} call{'s' if price.calls > 1 else ''}"
        try:
            invoice = self.backend.create_invoice(price.sats, memo, self.config.invoice_expiry)
        except BackendUnavailable as exc:
            raise PaymentsUnavailable(f"payments unavailable: {exc}") from None
        token_id = secrets.token_bytes(32)
        root_key = secrets.token_bytes(32)
        identifier = macaroons.Identifier(0, bytes.fromhex(invoice.payment_hash), token_id)
        valid_until = now + price.valid_seconds
        macaroon = macaroons.encode(macaroons.mint(root_key, identifier, [tool], valid_until, price.calls))
        self.store.add(TokenRecord(
            token_id=token_id.hex(), payment_hash=invoice.payment_hash, root_key=root_key, bolt11=invoice.bolt11,
            tools=tool, price_sat=price.sats, max_calls=price.calls, state="pending", created_at=now,
            expires_at=invoice.expires_at, valid_until=valid_until, client=client,
        ))
        INVOICES_ISSUED.labels(tool).inc()
        return PaymentChallenge(tool, price.sats, price.calls, invoice.bolt11, macaroon, invoice.payment_hash,
                                invoice.expires_at)

    def verify(self, credential: str, tool: str) -> TokenRecord:
        """Check ``credential`` for a call of ``tool`` without spending it.

        The cryptographic part (preimage, signature, caveats other than time) gives the same answer for
        the same bytes, so it is remembered per ``(credential, tool)`` (LRU, 10,000 entries); the
        token's state, call count and expiry are read fresh on every call.

        Raises:
            InvalidCredential: malformed, forged, wrong preimage, unknown, revoked, expired, wrong tool,
                or no calls left.
        """
        return self._check(credential, tool)[0]

    def _check(self, credential: str, tool: str, need_call: bool = True) -> tuple[TokenRecord, int]:
        """:meth:`verify`, plus the call limit this credential may spend up to.

        A holder may attenuate the macaroon with a stricter ``sovereign-mcp_max_calls=N`` caveat before
        handing it on; the credential is then good while the token has spent fewer than ``N`` calls in all
        (the count is the token's, shared by every credential derived from it). The limit is never looser
        than the ``max_calls`` the token was sold with.
        """
        key = (credential, tool)
        with self._lock:
            cached = self._verified.get(key)
            if cached is not None:
                self._verified.move_to_end(key)
        if cached is not None:
            token_id, valid_until, caveat_calls = cached
            token = self.store.get(token_id)
            if token is None:
                raise InvalidCredential("unknown token")
            if valid_until is not None and int(self.clock()) >= valid_until:
                raise InvalidCredential("token expired")
        else:
            token, limits = self._verify_crypto(credential, tool)
            caveat_calls = limits.max_calls
            with self._lock:
                self._verified[key] = (token.token_id, limits.valid_until, caveat_calls)
                if len(self._verified) > 10_000:
                    self._verified.popitem(last=False)
        limit = token.max_calls if caveat_calls is None else min(token.max_calls, caveat_calls)
        if token.state == "revoked":
            raise InvalidCredential("token revoked")
        if need_call and token.calls_used >= limit:
            raise InvalidCredential(_used_up(limit))
        return token, limit

    def _verify_crypto(self, credential: str, tool: str) -> tuple[TokenRecord, macaroons.Limits]:
        try:
            parsed = parse_credential(credential)
            macaroon = macaroons.decode(parsed.macaroons[0])
            identifier = macaroons.identifier_of(macaroon)
        except (CredentialError, macaroons.MacaroonError) as exc:
            raise InvalidCredential(str(exc)) from None
        if not hmac.compare_digest(hashlib.sha256(parsed.preimage).digest(), identifier.payment_hash):
            raise InvalidCredential("preimage does not match the payment hash")
        token = self.store.get(identifier.token_id.hex())
        if token is None or not hmac.compare_digest(token.payment_hash, identifier.payment_hash.hex()):
            raise InvalidCredential("unknown token")
        try:
            limits = macaroons.verify(macaroon, token.root_key, tool, int(self.clock()))
        except macaroons.MacaroonError as exc:
            raise InvalidCredential(str(exc)) from None
        return token, limits

    def spend(self, credential: str, tool: str) -> Receipt:
        """Verify ``credential`` and spend one call of its token (atomic across threads/processes).

        Raises:
            InvalidCredential: see :meth:`verify`; also when a concurrent call took the last call.
        """
        token, limit = self._check(credential, tool)
        return self._charge(token, limit, tool)

    def _charge(self, token: TokenRecord, limit: int, tool: str, key: str | None = None) -> Receipt:
        if token.state != "paid" and not self.store.mark_paid(token.token_id, int(self.clock())):
            raise InvalidCredential("token revoked")
        if not self.store.consume(token.token_id, limit):
            raise InvalidCredential(_used_up(limit))
        return self._receipt(token, tool, limit, token.calls_used + 1, charged=True, key=key)

    @staticmethod
    def _receipt(token: TokenRecord, tool: str, limit: int, used: int, charged: bool,
                 key: str | None) -> Receipt:
        return Receipt(token.token_id, tool, token.payment_hash, token.price_sat, max(limit - used, 0),
                       token.valid_until, charged, key)

    def begin_call(self, credential: str, tool: str, arguments: dict[str, object] | None,
                   stale_after: int) -> Receipt | Replay:
        """Start a paid MCP call that may be retried safely: the same credential, tool and arguments are
        charged once until the call returns a result (:meth:`finish_call`), and then replay that result
        free while the token is valid.

        Returns a :class:`Receipt` (run the tool; ``charged`` False when this retry takes over an attempt
        that started more than ``stale_after`` seconds ago and never finished) or a :class:`Replay`.

        Raises:
            InvalidCredential: see :meth:`verify` (a first call on a used-up token, too).
            CallInProgress: the same call is running now (started less than ``stale_after`` s ago).
        """
        token, limit = self._check(credential, tool, need_call=False)
        key = call_key(token.token_id, tool, arguments)
        now = int(self.clock())
        claim, result = self.store.claim_call(key, token.token_id, tool, now, token.valid_until, now - stale_after)
        if claim == "done":
            return Replay(result or "{}", self._receipt(token, tool, limit, token.calls_used, False, key))
        if claim == "running":
            raise CallInProgress(tool, max(1, min(stale_after, 30)))
        if claim == "resumed":
            return self._receipt(token, tool, limit, token.calls_used, charged=False, key=key)
        try:
            return self._charge(token, limit, tool, key)
        except BaseException:
            self.store.drop_call(key)
            raise

    def finish_call(self, receipt: Receipt, result: str) -> None:
        """Keep the result (JSON text) of a paid call for replays; it is no longer refundable."""
        if receipt.call_key is not None:
            self.store.finish_call(receipt.call_key, result)

    def refund(self, receipt: Receipt) -> None:
        """Give the call back when the tool failed (or was cut off) before producing a result. For a call
        started by :meth:`begin_call` the charge it holds is released even if a retry took it over."""
        if receipt.call_key is not None:
            self.store.drop_call(receipt.call_key)
        self.store.release(receipt.token_id)

    def free_call(self, client: str) -> bool:
        """Use one of today's free calls for this client bucket, if the allowance has any left."""
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        return self.store.take_free(client, day, self.config.free_calls_per_day)


def make_backend(settings: Settings, store: TokenStore) -> LightningBackend:
    """The configured backend.

    Raises:
        ValueError: the chosen backend lacks its URL or key in ``[payments]``.
    """
    from sovereign_mcp.payments.backends.dev import DevBackend
    from sovereign_mcp.payments.backends.remote import CLNBackend, LNbitsBackend, LNDBackend

    p = settings.payments
    missing = p.missing_backend_setting()
    if missing:
        raise ValueError(f"payments.backend = {p.backend!r} needs {missing}")
    if p.backend == "lnbits":
        assert p.lnbits_url and p.lnbits_invoice_key
        return LNbitsBackend(p.lnbits_url, p.lnbits_invoice_key.get_secret_value())
    if p.backend == "lnd":
        assert p.lnd_url and p.lnd_macaroon
        return LNDBackend(p.lnd_url, p.lnd_macaroon.get_secret_value(),
                          str(p.lnd_tls_cert) if p.lnd_tls_cert else None)
    if p.backend == "cln":
        assert p.cln_url and p.cln_rune
        return CLNBackend(p.cln_url, p.cln_rune.get_secret_value())
    return DevBackend(store, settings.data_dir / "l402-dev-node.key")


def open_payments(settings: Settings) -> L402Service:
    """Store + backend + service for ``settings`` (SQLite under the data dir unless database_url)."""
    store = TokenStore(settings.data_dir / "l402.sqlite3", settings.payments.database_url or settings.database_url)
    return L402Service(settings, store, make_backend(settings, store))
