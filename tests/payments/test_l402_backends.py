"""The HTTP Lightning backends (LND REST, Core Lightning clnrest, LNbits) against loopback fakes that
speak each API's exact JSON shapes, mint real BOLT11 invoices (``bolt11`` library, random node key)
and record every request they get; plus failure handling and ``make_backend`` configuration errors.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bolt11
import httpx
import pytest

from sovereign_mcp.config import Settings
from sovereign_mcp.payments.backends.base import BackendUnavailable
from sovereign_mcp.payments.backends.dev import DevBackend, sign_regtest_invoice
from sovereign_mcp.payments.backends.remote import CLNBackend, LNbitsBackend, LNDBackend
from sovereign_mcp.payments.service import make_backend
from sovereign_mcp.payments.store import TokenStore
from tests.helpers import free_port, isolated_settings

MACAROON_HEX = "0201036c6e6402f801030a10" + "ab" * 24
RUNE = "Xb2dL6hTo0vxA8Qj5LNRYl1nnV5Fm3eP7cjYx0VeDzs9MA=="
LNBITS_KEY = "c0ffee" * 5 + "aa"
MEMO = "sovereign-mcp validate_quality: 1 call"


# -- a recording fake Lightning node ----------------------------------------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeInvoice:
    preimage: bytes
    payment_hash: str
    bolt11: str
    amount_msat: int
    expires_at: int
    label: str = ""
    paid: bool = False


@dataclass
class FakeNode:
    """Invoices signed with a random node key, as a real node would mint them."""

    key: str = field(default_factory=lambda: secrets.token_hex(32))
    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    override: tuple[int, bytes, str] | None = None  # (status, raw body, content type) for every answer
    delay: float = 0.0

    def mint(self, amount_msat: int, expiry: int, description: str | None = None,
             description_hash: bytes | None = None, label: str = "") -> FakeInvoice:
        digest = description_hash.hex() if description_hash is not None else None
        preimage, payment_hash, encoded, expires_at = sign_regtest_invoice(self.key, amount_msat, expiry,
                                                                           description or "", digest)
        invoice = FakeInvoice(preimage, payment_hash, encoded, amount_msat, expires_at, label)
        self.invoices[payment_hash] = invoice
        return invoice


# A route answers (status, JSON payload); the path pattern's groups are passed on.
Route = Callable[..., tuple[int, Any]]


@contextlib.contextmanager
def fake_server(node: FakeNode, routes: dict[tuple[str, str], Route], auth_header: str,
                auth_value: str) -> Iterator[str]:
    """A loopback HTTP server; requests without the right auth header get 401 like the real APIs."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            node.requests.append(seen)
            if node.delay:
                time.sleep(node.delay)
            if node.override is not None:
                status, payload, ctype = node.override
                return self._send(status, payload, ctype)
            if seen.headers.get(auth_header.lower()) != auth_value:
                return self._send(401, json.dumps({"error": "unauthorized"}).encode())
            for (method, pattern), route in routes.items():
                match = re.fullmatch(pattern, self.path)
                if method == self.command and match:
                    status, payload = route(node, seen, *match.groups())
                    return self._send(status, json.dumps(payload).encode())
            return self._send(404, b'{"error": "not found"}')

        def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False  # a handler still sleeping (slow-backend test) must not hold up teardown
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# -- LND REST ---------------------------------------------------------------------------------------------

def lnd_add_invoice(node: FakeNode, seen: Seen) -> tuple[int, Any]:
    body = seen.body
    dh = base64.b64decode(body["description_hash"]) if body.get("description_hash") else None
    inv = node.mint(int(body["value"]) * 1000, int(body.get("expiry") or 86400), body.get("memo"), dh)
    return 200, {"r_hash": base64.b64encode(bytes.fromhex(inv.payment_hash)).decode(),
                 "payment_request": inv.bolt11, "add_index": str(len(node.invoices)),
                 "payment_addr": base64.b64encode(secrets.token_bytes(32)).decode()}


def lnd_lookup(node: FakeNode, seen: Seen, r_hash_hex: str) -> tuple[int, Any]:
    inv = node.invoices.get(r_hash_hex)
    if inv is None:
        return 404, {"code": 5, "message": "unable to locate invoice", "details": []}
    # LND returns r_preimage for its own invoices even while they are open
    return 200, {"memo": "", "r_preimage": base64.b64encode(inv.preimage).decode(),
                 "r_hash": base64.b64encode(bytes.fromhex(inv.payment_hash)).decode(),
                 "value": str(inv.amount_msat // 1000), "settled": inv.paid,
                 "state": "SETTLED" if inv.paid else "OPEN", "payment_request": inv.bolt11}


LND_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", r"/v1/invoices"): lnd_add_invoice,
    ("GET", r"/v1/invoice/([0-9a-f]{64})"): lnd_lookup,
}


# -- Core Lightning clnrest ---------------------------------------------------------------------------------

def cln_invoice(node: FakeNode, seen: Seen) -> tuple[int, Any]:
    body = seen.body
    description = body["description"]
    dh = hashlib.sha256(description.encode()).digest() if body.get("deschashonly") else None
    inv = node.mint(int(body["amount_msat"]), int(body.get("expiry") or 604800), description, dh, body["label"])
    return 201, {"payment_hash": inv.payment_hash, "expires_at": inv.expires_at, "bolt11": inv.bolt11,
                 "payment_secret": secrets.token_hex(32), "created_index": len(node.invoices)}


def cln_listinvoices(node: FakeNode, seen: Seen) -> tuple[int, Any]:
    wanted = (seen.body or {}).get("payment_hash")
    found = [node.invoices[wanted]] if wanted in node.invoices else []
    out = []
    for inv in found:
        row = {"label": inv.label, "bolt11": inv.bolt11, "payment_hash": inv.payment_hash,
               "amount_msat": inv.amount_msat, "status": "paid" if inv.paid else "unpaid",
               "expires_at": inv.expires_at}
        if inv.paid:
            row["payment_preimage"] = inv.preimage.hex()
        out.append(row)
    return 200, {"invoices": out}


CLN_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", r"/v1/invoice"): cln_invoice,
    ("POST", r"/v1/listinvoices"): cln_listinvoices,
}


# -- LNbits ---------------------------------------------------------------------------------------------------

def lnbits_create(node: FakeNode, seen: Seen) -> tuple[int, Any]:
    body = seen.body
    if body.get("out") is not False or body.get("unit") != "sat":
        return 400, {"detail": "unexpected body"}
    dh = bytes.fromhex(body["description_hash"]) if body.get("description_hash") else None
    inv = node.mint(int(body["amount"]) * 1000, int(body.get("expiry") or 3600), body.get("memo"), dh)
    return 201, {"payment_hash": inv.payment_hash, "payment_request": inv.bolt11,
                 "checking_id": inv.payment_hash, "amount": inv.amount_msat}


def lnbits_lookup(node: FakeNode, seen: Seen, payment_hash: str) -> tuple[int, Any]:
    inv = node.invoices.get(payment_hash)
    if inv is None:
        return 404, {"detail": "Payment does not exist."}
    return 200, {"paid": inv.paid, "status": "success" if inv.paid else "pending",
                 "preimage": inv.preimage.hex() if inv.paid else None, "details": {}}


LNBITS_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", r"/api/v1/payments"): lnbits_create,
    ("GET", r"/api/v1/payments/([0-9a-f]{64})"): lnbits_lookup,
}


# -- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def lnd(node: FakeNode) -> Iterator[tuple[LNDBackend, FakeNode]]:
    with fake_server(node, LND_ROUTES, "Grpc-Metadata-macaroon", MACAROON_HEX) as url:
        yield LNDBackend(url, MACAROON_HEX, timeout=2), node


@pytest.fixture
def cln(node: FakeNode) -> Iterator[tuple[CLNBackend, FakeNode]]:
    with fake_server(node, CLN_ROUTES, "Rune", RUNE) as url:
        yield CLNBackend(url, RUNE, timeout=2), node


@pytest.fixture
def lnbits(node: FakeNode) -> Iterator[tuple[LNbitsBackend, FakeNode]]:
    with fake_server(node, LNBITS_ROUTES, "X-Api-Key", LNBITS_KEY) as url:
        yield LNbitsBackend(url, LNBITS_KEY, timeout=2), node


def check_invoice(invoice: Any, node: FakeNode, amount_sat: int = 21, expiry: int = 600) -> bolt11.Bolt11:
    decoded = bolt11.decode(invoice.bolt11)
    assert decoded.payment_hash == invoice.payment_hash
    assert invoice.payment_hash in node.invoices
    assert decoded.amount_msat == amount_sat * 1000 == invoice.amount_sat * 1000
    assert abs(invoice.expires_at - (decoded.date + expiry)) <= 2
    assert decoded.is_regtest
    return decoded


# -- LND --------------------------------------------------------------------------------------------------------

def test_lnd_create_invoice(lnd: tuple[LNDBackend, FakeNode]) -> None:
    backend, node = lnd
    invoice = backend.create_invoice(21, MEMO, 600)
    decoded = check_invoice(invoice, node)
    assert decoded.description == MEMO
    [seen] = node.requests
    assert (seen.method, seen.path) == ("POST", "/v1/invoices")
    assert seen.headers["grpc-metadata-macaroon"] == MACAROON_HEX
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {"value": "21", "memo": MEMO, "expiry": "600"}


def test_lnd_description_hash(lnd: tuple[LNDBackend, FakeNode]) -> None:
    backend, node = lnd
    metadata = '[["text/plain", "tip"]]'
    digest = hashlib.sha256(metadata.encode()).digest()
    invoice = backend.create_invoice(5, "ignored", 300, hashed_description=metadata)
    assert node.requests[0].body["description_hash"] == base64.b64encode(digest).decode()
    assert check_invoice(invoice, node, 5, 300).description_hash == digest.hex()


def test_lnd_lookup(lnd: tuple[LNDBackend, FakeNode]) -> None:
    backend, node = lnd
    invoice = backend.create_invoice(21, MEMO, 600)
    open_ = backend.lookup(invoice.payment_hash)
    assert (open_.paid, open_.preimage) == (False, None)  # LND sends r_preimage while open: not revealed
    node.invoices[invoice.payment_hash].paid = True
    settled = backend.lookup(invoice.payment_hash)
    assert settled.paid
    assert settled.preimage == node.invoices[invoice.payment_hash].preimage.hex()
    assert hashlib.sha256(bytes.fromhex(settled.preimage)).hexdigest() == invoice.payment_hash
    get = node.requests[-1]
    assert (get.method, get.path) == ("GET", f"/v1/invoice/{invoice.payment_hash}")
    assert get.headers["grpc-metadata-macaroon"] == MACAROON_HEX


def test_lnd_state_settled_without_settled_flag(lnd: tuple[LNDBackend, FakeNode]) -> None:
    backend, node = lnd
    preimage = secrets.token_bytes(32)
    node.override = (200, json.dumps({"settled": False, "state": "SETTLED",
                                      "r_preimage": base64.b64encode(preimage).decode()}).encode(),
                     "application/json")
    settled = backend.lookup("ab" * 32)
    assert (settled.paid, settled.preimage) == (True, preimage.hex())


def test_lnd_unknown_invoice_is_backend_error(lnd: tuple[LNDBackend, FakeNode]) -> None:
    backend, _ = lnd
    with pytest.raises(BackendUnavailable, match="HTTP 404"):
        backend.lookup("cd" * 32)


# -- CLN --------------------------------------------------------------------------------------------------------

def test_cln_create_invoice(cln: tuple[CLNBackend, FakeNode]) -> None:
    backend, node = cln
    invoice = backend.create_invoice(21, MEMO, 600)
    decoded = check_invoice(invoice, node)
    assert decoded.description == MEMO
    [seen] = node.requests
    assert (seen.method, seen.path) == ("POST", "/v1/invoice")
    assert seen.headers["rune"] == RUNE
    assert set(seen.body) == {"amount_msat", "label", "description", "expiry"}
    assert (seen.body["amount_msat"], seen.body["description"], seen.body["expiry"]) == (21_000, MEMO, 600)
    assert seen.body["label"].startswith("sovereign-mcp-")
    assert invoice.expires_at == node.invoices[invoice.payment_hash].expires_at
    # labels must be unique per invoice in CLN
    backend.create_invoice(21, MEMO, 600)
    assert node.requests[1].body["label"] != seen.body["label"]


def test_cln_lookup(cln: tuple[CLNBackend, FakeNode]) -> None:
    backend, node = cln
    invoice = backend.create_invoice(21, MEMO, 600)
    assert backend.lookup(invoice.payment_hash).paid is False
    node.invoices[invoice.payment_hash].paid = True
    settled = backend.lookup(invoice.payment_hash)
    assert (settled.paid, settled.preimage) == (True, node.invoices[invoice.payment_hash].preimage.hex())
    seen = node.requests[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/v1/listinvoices", {"payment_hash": invoice.payment_hash})
    assert seen.headers["rune"] == RUNE
    unknown = backend.lookup("ef" * 32)
    assert (unknown.paid, unknown.preimage) == (False, None)


def test_cln_description_hash(cln: tuple[CLNBackend, FakeNode]) -> None:
    backend, node = cln
    metadata = '[["text/plain", "tip"]]'
    invoice = backend.create_invoice(5, "tip to tips", 300, hashed_description=metadata)
    assert node.requests[0].body["deschashonly"] is True and node.requests[0].body["description"] == metadata
    assert bolt11.decode(invoice.bolt11).description_hash == hashlib.sha256(metadata.encode()).hexdigest()


# -- LNbits -------------------------------------------------------------------------------------------------------

def test_lnbits_create_invoice(lnbits: tuple[LNbitsBackend, FakeNode]) -> None:
    backend, node = lnbits
    invoice = backend.create_invoice(21, MEMO, 600)
    decoded = check_invoice(invoice, node)
    assert decoded.description == MEMO
    [seen] = node.requests
    assert (seen.method, seen.path) == ("POST", "/api/v1/payments")
    assert seen.headers["x-api-key"] == LNBITS_KEY
    assert seen.body == {"out": False, "amount": 21, "memo": MEMO, "unit": "sat", "expiry": 600}


def test_lnbits_description_hash(lnbits: tuple[LNbitsBackend, FakeNode]) -> None:
    backend, node = lnbits
    digest = hashlib.sha256(b"metadata").digest()
    invoice = backend.create_invoice(1000, "tip", 600, hashed_description="metadata")
    assert node.requests[0].body["description_hash"] == digest.hex()
    assert check_invoice(invoice, node, 1000).description_hash == digest.hex()


def test_lnbits_lookup(lnbits: tuple[LNbitsBackend, FakeNode]) -> None:
    backend, node = lnbits
    invoice = backend.create_invoice(21, MEMO, 600)
    assert backend.lookup(invoice.payment_hash).paid is False
    node.invoices[invoice.payment_hash].paid = True
    settled = backend.lookup(invoice.payment_hash)
    assert (settled.paid, settled.preimage) == (True, node.invoices[invoice.payment_hash].preimage.hex())
    seen = node.requests[-1]
    assert (seen.method, seen.path) == ("GET", f"/api/v1/payments/{invoice.payment_hash}")
    assert seen.headers["x-api-key"] == LNBITS_KEY


def test_lnbits_legacy_bolt11_field(lnbits: tuple[LNbitsBackend, FakeNode]) -> None:
    backend, node = lnbits
    inv = node.mint(21_000, 600, MEMO)
    node.override = (201, json.dumps({"payment_hash": inv.payment_hash, "bolt11": inv.bolt11}).encode(),
                     "application/json")
    assert backend.create_invoice(21, MEMO, 600).bolt11 == inv.bolt11


# -- failures ---------------------------------------------------------------------------------------------------------

BACKENDS = {
    "lnd": (LND_ROUTES, "Grpc-Metadata-macaroon", MACAROON_HEX, lambda url, key: LNDBackend(url, key, timeout=1)),
    "cln": (CLN_ROUTES, "Rune", RUNE, lambda url, key: CLNBackend(url, key, timeout=1)),
    "lnbits": (LNBITS_ROUTES, "X-Api-Key", LNBITS_KEY, lambda url, key: LNbitsBackend(url, key, timeout=1)),
}


@pytest.fixture(params=sorted(BACKENDS))
def any_backend(request: pytest.FixtureRequest, node: FakeNode) -> Iterator[tuple[str, str, FakeNode, Callable]]:
    routes, header, key, factory = BACKENDS[request.param]
    with fake_server(node, routes, header, key) as url:
        yield request.param, url, node, lambda k=key: factory(url, k)


def test_wrong_credentials_are_backend_unavailable(any_backend) -> None:
    name, _, _, make = any_backend
    backend = make("wrong")
    with pytest.raises(BackendUnavailable, match=f"{name} answered HTTP 401"):
        backend.create_invoice(21, MEMO, 600)
    with pytest.raises(BackendUnavailable, match="HTTP 401"):
        backend.lookup("ab" * 32)


@pytest.mark.parametrize("status", [400, 500, 502, 503])
def test_error_statuses_are_backend_unavailable(any_backend, status: int) -> None:
    _, _, node, make = any_backend
    node.override = (status, b'{"error": "node is syncing"}', "application/json")
    backend = make()
    with pytest.raises(BackendUnavailable, match=f"HTTP {status}.*node is syncing"):
        backend.create_invoice(21, MEMO, 600)
    with pytest.raises(BackendUnavailable, match=f"HTTP {status}"):
        backend.lookup("ab" * 32)


def test_non_json_answer_is_backend_unavailable(any_backend) -> None:
    _, _, node, make = any_backend
    node.override = (200, b"<html>proxy login</html>", "text/html")
    with pytest.raises(BackendUnavailable, match="non-JSON"):
        make().create_invoice(21, MEMO, 600)


def test_answer_without_invoice_is_backend_unavailable(any_backend) -> None:
    _, _, node, make = any_backend
    node.override = (200, b'{"detail": "ok"}', "application/json")
    with pytest.raises(BackendUnavailable, match="no"):
        make().create_invoice(21, MEMO, 600)


def test_slow_backend_times_out(any_backend) -> None:
    _, _, node, make = any_backend
    node.delay = 0.8
    backend = make()
    backend.client.timeout = httpx.Timeout(0.3)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="unreachable"):
        backend.create_invoice(21, MEMO, 600)
    assert time.monotonic() - started < 0.8


@pytest.mark.parametrize("factory", [
    lambda url: LNDBackend(url, MACAROON_HEX, timeout=2),
    lambda url: CLNBackend(url, RUNE, timeout=2),
    lambda url: LNbitsBackend(url, LNBITS_KEY, timeout=2),
], ids=["lnd", "cln", "lnbits"])
def test_unreachable_is_backend_unavailable(factory: Callable[[str], Any]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    backend = factory(url)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        backend.create_invoice(21, MEMO, 600)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        backend.lookup("ab" * 32)


def test_lnd_answer_without_payment_request_is_backend_unavailable(lnd: tuple[LNDBackend, FakeNode]) -> None:
    backend, node = lnd
    node.override = (200, json.dumps({"r_hash": base64.b64encode(bytes(32)).decode()}).encode(), "application/json")
    with pytest.raises(BackendUnavailable):
        backend.create_invoice(21, MEMO, 600)


# -- make_backend ---------------------------------------------------------------------------------------------------

def settings_for(tmp: Path, **payments: Any) -> Settings:
    return isolated_settings(tmp, data_dir=tmp / "data", payments=payments)


@pytest.mark.parametrize("payments, missing", [
    ({"backend": "lnbits"}, "payments.lnbits_url"),
    ({"backend": "lnbits", "lnbits_url": "http://127.0.0.1:1"}, "payments.lnbits_invoice_key"),
    ({"backend": "lnbits", "lnbits_invoice_key": "k"}, "payments.lnbits_url"),
    ({"backend": "lnd"}, "payments.lnd_url"),
    ({"backend": "lnd", "lnd_url": "https://127.0.0.1:8080"}, "payments.lnd_macaroon"),
    ({"backend": "cln"}, "payments.cln_url"),
    ({"backend": "cln", "cln_url": "https://127.0.0.1:3010"}, "payments.cln_rune"),
])
def test_make_backend_names_missing_key(tmp_path: Path, payments: dict[str, str], missing: str) -> None:
    settings = settings_for(tmp_path, **payments)
    store = TokenStore(tmp_path / "data" / "l402.sqlite3")
    with pytest.raises(ValueError, match=re.escape(missing)) as err:
        make_backend(settings, store)
    assert repr(payments["backend"]) in str(err.value)


def test_make_backend_builds_configured_backend(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "data" / "l402.sqlite3")
    lnbits = make_backend(settings_for(tmp_path, backend="lnbits", lnbits_url="http://127.0.0.1:5000/",
                                       lnbits_invoice_key=LNBITS_KEY), store)
    assert isinstance(lnbits, LNbitsBackend)
    assert lnbits.client.headers["X-Api-Key"] == LNBITS_KEY
    assert str(lnbits.client.base_url).rstrip("/") == "http://127.0.0.1:5000"
    lnd = make_backend(settings_for(tmp_path, backend="lnd", lnd_url="https://127.0.0.1:8080",
                                    lnd_macaroon=MACAROON_HEX), store)
    assert isinstance(lnd, LNDBackend) and lnd.client.headers["Grpc-Metadata-macaroon"] == MACAROON_HEX
    cln = make_backend(settings_for(tmp_path, backend="cln", cln_url="https://127.0.0.1:3010", cln_rune=RUNE), store)
    assert isinstance(cln, CLNBackend) and cln.client.headers["Rune"] == RUNE
    dev = make_backend(settings_for(tmp_path), store)
    assert isinstance(dev, DevBackend)
    assert (tmp_path / "data" / "l402-dev-node.key").stat().st_mode & 0o777 == 0o600


def test_backends_through_the_service_against_fake_lnd(tmp_path: Path, lnd: tuple[LNDBackend, FakeNode]) -> None:
    """The full purchase through L402Service with LND as the backend: invoice from the node, preimage
    from paying it, credential accepted."""
    from sovereign_mcp.payments.service import L402Service

    backend, node = lnd
    store = TokenStore(tmp_path / "data" / "l402.sqlite3")
    service = L402Service(settings_for(tmp_path), store, backend)
    challenge = service.challenge("validate_quality")
    assert challenge.bolt11 == node.invoices[challenge.payment_hash].bolt11
    assert node.requests[0].body == {"value": "21", "memo": MEMO, "expiry": "600"}
    preimage = node.invoices[challenge.payment_hash].preimage.hex()  # what a payer's wallet learns
    receipt = service.spend(f"L402 {challenge.macaroon}:{preimage}", "validate_quality")
    assert store.get(receipt.token_id).state == "paid"
