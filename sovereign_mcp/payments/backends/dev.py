"""``dev``: the embedded default backend. Real, decodable BOLT11 invoices (regtest, ``lnbcrt``) signed
with a node key generated on first run; nothing moves over Lightning. An invoice is settled only
through the explicit dev path (:meth:`DevBackend.pay`, behind ``sovereign-mcp l402 pay BOLT11``),
which reveals its preimage. Invoices live in the token store, so the CLI in another process can pay
what the server issued.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

import bolt11
from bolt11 import Bolt11, MilliSatoshi, TagChar, Tags

from sovereign_mcp.payments.backends.base import BackendUnavailable, Invoice, Settlement
from sovereign_mcp.payments.store import TokenStore


def node_key(path: Path) -> str:
    """The dev node's secp256k1 private key (hex), created with mode 0600 on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def sign_regtest_invoice(key: str, amount_msat: int, expiry: int, description: str = "",
                         description_hash: str | None = None) -> tuple[bytes, str, str, int]:
    """A fresh regtest (``lnbcrt``) BOLT11 invoice signed with the secp256k1 private key ``key`` (hex).

    ``amount_msat`` in msat, ``expiry`` in seconds; the invoice commits to ``description_hash`` (hex sha256,
    tag ``h``) when given, else to ``description`` (tag ``d``) (BOLT 11 "Tagged Fields").
    Returns ``(preimage, payment_hash hex, bolt11, expires_at unix seconds)``.
    """
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).hexdigest()
    now = int(time.time())
    tags = Tags()
    tags.add(TagChar.payment_hash, payment_hash)
    tags.add(TagChar.payment_secret, secrets.token_hex(32))
    if description_hash is not None:
        tags.add(TagChar.description_hash, description_hash)
    else:
        tags.add(TagChar.description, description)
    tags.add(TagChar.expire_time, expiry)
    invoice = Bolt11(currency="bcrt", date=now, tags=tags, amount_msat=MilliSatoshi(amount_msat))
    return preimage, payment_hash, bolt11.encode(invoice, key), now + expiry


class DevBackend:
    """In-process invoices for development and tests."""

    name = "dev"

    def __init__(self, store: TokenStore, key_path: Path) -> None:
        self.store = store
        self.key = node_key(key_path)

    def create_invoice(self, amount_sat: int, memo: str, expiry: int,
                       hashed_description: str | None = None) -> Invoice:
        digest = hashlib.sha256(hashed_description.encode()).hexdigest() if hashed_description is not None else None
        preimage, payment_hash, encoded, expires_at = sign_regtest_invoice(self.key, amount_sat * 1000, expiry, memo,
                                                                           digest)
        self.store.add_dev_invoice(payment_hash, preimage.hex(), encoded, amount_sat, expires_at)
        return Invoice(encoded, payment_hash, amount_sat, expires_at)

    def lookup(self, payment_hash: str) -> Settlement:
        found = self.store.dev_invoice(payment_hash)
        if found is None:
            return Settlement(False)
        preimage, _, _, _, paid = found
        return Settlement(paid, preimage if paid else None)

    def pay(self, invoice: str) -> str:
        """Settle one of this backend's invoices and return its preimage (hex).

        Raises:
            BackendUnavailable: not a BOLT11 invoice, not issued here, or expired.
        """
        try:
            decoded = bolt11.decode(invoice.strip())
        except Exception as exc:  # the bolt11 library raises several exception types
            raise BackendUnavailable(f"not a BOLT11 invoice: {exc}") from None
        found = self.store.dev_invoice(decoded.payment_hash)
        if found is None:
            raise BackendUnavailable("this invoice was not issued by this server's dev backend")
        preimage, _, _, expires_at, _ = found
        if expires_at <= time.time():
            raise BackendUnavailable("invoice expired")
        self.store.settle_dev_invoice(decoded.payment_hash)
        return preimage

    @staticmethod
    def payment_hash_of(preimage_hex: str) -> str:
        return hashlib.sha256(bytes.fromhex(preimage_hex)).hexdigest()


__all__ = ["DevBackend", "node_key"]
