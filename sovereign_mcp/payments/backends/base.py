"""The interface every Lightning backend implements (create an invoice, look up its settlement)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class BackendUnavailable(RuntimeError):
    """The Lightning backend cannot be reached or refused the request; paid tools answer
    "payments unavailable" with this message, free tools are unaffected."""


@dataclass(frozen=True, slots=True)
class Invoice:
    """A BOLT11 invoice: ``payment_hash`` is 64 hex characters, ``amount_sat`` in sats,
    ``expires_at`` unix seconds."""

    bolt11: str
    payment_hash: str
    amount_sat: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """Whether an invoice is paid and, once paid, its hex preimage."""

    paid: bool
    preimage: str | None = None


class LightningBackend(Protocol):
    """``create_invoice`` / ``lookup``; both raise :class:`BackendUnavailable` on failure."""

    name: str

    def create_invoice(self, amount_sat: int, memo: str, expiry: int,
                       hashed_description: str | None = None) -> Invoice:
        """A BOLT 11 invoice for ``amount_sat`` sats, valid ``expiry`` seconds. With ``hashed_description``
        (the LNURL-pay metadata, LUD-06) the invoice commits to its SHA-256 (tag ``h``) instead of ``memo``."""
        ...

    def lookup(self, payment_hash: str) -> Settlement: ...
