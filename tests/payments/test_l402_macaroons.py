"""L402 macaroons and credentials, in-process: Aperture's wire format checked independently of the
code under test (a V2 binary parser and the HMAC chain written here), and every way a credential is
refused, through :class:`L402Service` with a real SQLite store and the dev backend.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import time
from pathlib import Path
from typing import Any

import bolt11
import pytest
from l402_requests.challenge import parse_challenge
from pymacaroons import MACAROON_V2, Macaroon

from sovereign_mcp.config import Settings
from sovereign_mcp.payments import macaroons
from sovereign_mcp.payments.backends.dev import DevBackend
from sovereign_mcp.payments.headers import CredentialError, challenges, parse_credential
from sovereign_mcp.payments.service import InvalidCredential, L402Service, PaymentChallenge
from sovereign_mcp.payments.store import TokenStore
from tests.helpers import isolated_settings

TOOL = "validate_quality"
OTHER_TOOL = "trigger_pipeline"


# -- an independent reader/writer of the libmacaroons V2 binary format ---------------------------
# Layout: 0x02, then fields ``type varint | length varint | data``; an EOS (type 0, no length) ends
# the header section (location = 1, identifier = 2), each caveat section (location 1, identifier 2,
# vid 4) and the caveat list; the signature field (type 6) comes last.

def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse_v2(raw: bytes) -> dict[str, Any]:
    """``{"location", "identifier", "caveats": [bytes], "signature"}`` of a V2 binary macaroon."""
    assert raw[0] == 2, f"not a V2 macaroon (first byte {raw[0]})"
    pos, sections, current = 1, [], []
    while pos < len(raw):
        ftype, pos = _read_varint(raw, pos)
        if ftype == 0:
            sections.append(current)
            current = []
            continue
        length, pos = _read_varint(raw, pos)
        current.append((ftype, raw[pos:pos + length]))
        pos += length
    header, *caveat_sections = sections
    assert caveat_sections and caveat_sections[-1] == [], "caveat list not terminated by EOS"
    caveat_sections = caveat_sections[:-1]
    assert [t for t, _ in current] == [6], f"trailing fields {current!r}: expected only the signature"
    fields = dict(header)
    caveats = []
    for section in caveat_sections:
        types = [t for t, _ in section]
        assert types == [2], f"first-party caveat expected, got field types {types}"
        caveats.append(section[0][1])
    return {"location": fields[1], "identifier": fields[2], "caveats": caveats, "signature": current[0][1]}


def build_v2(location: bytes, identifier: bytes, caveats: list[bytes], signature: bytes) -> bytes:
    out = bytearray([2])

    def field(ftype: int, data: bytes) -> None:
        out.extend(_varint(ftype) + _varint(len(data)) + data)

    field(1, location)
    field(2, identifier)
    out.append(0)
    for caveat in caveats:
        field(2, caveat)
        out.append(0)
    out.append(0)
    field(6, signature)
    return bytes(out)


def signature_chain(root_key: bytes, identifier: bytes, caveats: list[bytes]) -> bytes:
    """The macaroon signature as libmacaroons / go-macaroon compute it."""
    key = hmac.new(b"macaroons-key-generator", root_key, hashlib.sha256).digest()
    sig = hmac.new(key, identifier, hashlib.sha256).digest()
    for caveat in caveats:
        sig = hmac.new(sig, caveat, hashlib.sha256).digest()
    return sig


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# -- a service with a real store, the dev backend and an injectable clock -----------------------

class Clock:
    """Starts at the real time: the dev backend dates its invoices with ``time.time()``."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def make_settings(tmp: Path, **payments: Any) -> Settings:
    return isolated_settings(tmp, data_dir=tmp / "data", payments=payments or None)


class Env:
    def __init__(self, tmp: Path, **payments: Any) -> None:
        self.settings = make_settings(tmp, **payments)
        self.store = TokenStore(tmp / "data" / "l402.sqlite3")
        self.backend = DevBackend(self.store, tmp / "data" / "l402-dev-node.key")
        self.clock = Clock()
        self.service = L402Service(self.settings, self.store, self.backend, clock=self.clock)

    def buy(self, tool: str = TOOL) -> tuple[PaymentChallenge, str]:
        """A challenge and the preimage revealed by paying its invoice."""
        challenge = self.service.challenge(tool)
        return challenge, self.backend.pay(challenge.bolt11)

    def fresh_service(self) -> L402Service:
        """Another service over the same store (no verification cache)."""
        return L402Service(self.settings, self.store, self.backend, clock=self.clock)


def credential(macaroon_b64: str, preimage_hex: str, scheme: str = "L402") -> str:
    return f"{scheme} {macaroon_b64}:{preimage_hex}"


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


# -- format --------------------------------------------------------------------------------------

def test_mint_encode_decode_round_trip() -> None:
    root_key = secrets.token_bytes(32)
    ident = macaroons.Identifier(0, secrets.token_bytes(32), secrets.token_bytes(32))
    minted = macaroons.mint(root_key, ident, [TOOL, OTHER_TOOL], 1_900_000_000, 5)
    text = macaroons.encode(minted)
    assert re.fullmatch(r"[A-Za-z0-9+/]+=*", text), "standard base64 with padding expected"
    back = macaroons.decode(text)
    assert back.location == "lsat"
    assert back.identifier_bytes == ident.encode()
    assert back.signature == minted.signature
    assert [c.caveat_id for c in back.first_party_caveats()] == [c.caveat_id for c in minted.first_party_caveats()]
    assert macaroons.identifier_of(back) == ident
    assert macaroons.encode(back) == text
    limits = macaroons.verify(back, root_key, OTHER_TOOL, 1_899_999_999)
    assert (limits.max_calls, limits.valid_until) == (5, 1_900_000_000)


def test_minted_macaroon_wire_format_decoded_independently(env: Env) -> None:
    challenge = env.service.challenge(TOOL)
    raw = base64.b64decode(challenge.macaroon, validate=True)
    parsed = parse_v2(raw)
    assert build_v2(parsed["location"], parsed["identifier"], parsed["caveats"], parsed["signature"]) == raw

    assert parsed["location"] == b"lsat"
    identifier = parsed["identifier"]
    assert len(identifier) == 66
    version, payment_hash, token_id = struct.unpack(">H32s32s", identifier)
    assert version == 0
    invoice = bolt11.decode(challenge.bolt11)
    assert payment_hash.hex() == invoice.payment_hash == challenge.payment_hash
    assert len(token_id) == 32

    token = env.store.get(token_id.hex())
    assert token is not None and token.state == "pending" and token.payment_hash == payment_hash.hex()
    assert parsed["caveats"] == [
        b"services=sovereign-mcp:0",
        b"sovereign-mcp_capabilities=validate_quality",
        f"sovereign-mcp_valid_until={token.valid_until}".encode(),
        b"sovereign-mcp_max_calls=1",
    ]
    assert token.valid_until == int(env.clock.now) + 86_400
    # the signature is go-macaroon's HMAC chain over the stored per-token root key
    assert parsed["signature"] == signature_chain(token.root_key, identifier, parsed["caveats"])

    # pymacaroons reads the same raw identifier bytes
    from pymacaroons.serializers import BinarySerializer

    pm = Macaroon.deserialize(base64.urlsafe_b64encode(raw).decode().rstrip("="), BinarySerializer())
    assert pm.identifier_bytes == identifier


def test_max_calls_caveat_follows_price(tmp_path: Path) -> None:
    env = Env(tmp_path, prices={TOOL: {"sats": 50, "calls": 7}})
    challenge = env.service.challenge(TOOL)
    caveats = parse_v2(base64.b64decode(challenge.macaroon))["caveats"]
    assert caveats[-1] == b"sovereign-mcp_max_calls=7"
    assert bolt11.decode(challenge.bolt11).amount_msat == 50_000
    assert (challenge.amount_sat, challenge.calls) == (50, 7)


def test_identifier_decode_rejects_bad_length_and_version() -> None:
    with pytest.raises(macaroons.MacaroonError, match="65 bytes"):
        macaroons.Identifier.decode(b"\x00" * 65)
    with pytest.raises(macaroons.MacaroonError, match="version 1"):
        macaroons.Identifier.decode(struct.pack(">H", 1) + b"\x00" * 64)


def test_challenge_headers_format() -> None:
    mac, invoice = "AgEEbHNhdA+/=", "lnbcrt210n1xyz"
    l402, lsat = challenges(mac, invoice)
    assert l402 == f'L402 macaroon="{mac}", invoice="{invoice}"'
    assert lsat == f'LSAT macaroon="{mac}", invoice="{invoice}"'
    assert l402.index("macaroon=") < l402.index("invoice=")
    # a real client parser (l402-requests) reads both
    for header in (l402, lsat):
        parsed = parse_challenge(header)
        assert (parsed.macaroon, parsed.invoice) == (mac, invoice)


def test_payment_challenge_www_authenticate(env: Env) -> None:
    challenge = env.service.challenge(TOOL)
    values = challenge.www_authenticate()
    pattern = r'(L402|LSAT) macaroon="([A-Za-z0-9+/=]+)", invoice="(lnbcrt[0-9a-z]+)"'
    matches = [re.fullmatch(pattern, v) for v in values]
    assert all(matches)
    assert [m.group(1) for m in matches] == ["L402", "LSAT"]
    assert {m.group(2) for m in matches} == {challenge.macaroon}
    assert {m.group(3) for m in matches} == {challenge.bolt11}


# -- accepted ------------------------------------------------------------------------------------

def test_valid_credential_spends_once(env: Env) -> None:
    challenge, preimage = env.buy()
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == challenge.payment_hash
    cred = credential(challenge.macaroon, preimage)
    token = env.service.verify(cred, TOOL)
    assert token.state == "pending"  # verify alone does not spend or mark paid
    receipt = env.service.spend(cred, TOOL)
    assert receipt.tool == TOOL
    stored = env.store.get(receipt.token_id)
    assert (stored.state, stored.calls_used, stored.paid_at) == ("paid", 1, int(env.clock.now))
    with pytest.raises(InvalidCredential, match="used up"):
        env.service.spend(cred, TOOL)


def test_lsat_scheme_and_lowercase_scheme_accepted(env: Env) -> None:
    challenge, preimage = env.buy()
    env.service.verify(credential(challenge.macaroon, preimage, "LSAT"), TOOL)
    env.service.spend(credential(challenge.macaroon, preimage.upper(), "lsat"), TOOL)


def test_url_safe_base64_without_padding_accepted(env: Env) -> None:
    for _ in range(20):  # the random parts almost always contain '+' or '/'; make sure
        challenge, preimage = env.buy()
        if "+" in challenge.macaroon or "/" in challenge.macaroon:
            break
    else:
        pytest.fail("no macaroon with '+' or '/' in 20 tries")
    urlsafe = challenge.macaroon.replace("+", "-").replace("/", "_").rstrip("=")
    assert urlsafe != challenge.macaroon and "=" not in urlsafe
    receipt = env.service.spend(credential(urlsafe, preimage), TOOL)
    assert env.store.get(receipt.token_id).calls_used == 1


def test_comma_separated_macaroons_accepted(env: Env) -> None:
    challenge, preimage = env.buy()
    other, _ = env.buy()
    cred = f"L402 {challenge.macaroon}, {other.macaroon}:{preimage}"
    receipt = env.service.spend(cred, TOOL)
    assert receipt.token_id == macaroons.identifier_of(macaroons.decode(challenge.macaroon)).token_id.hex()
    assert parse_credential(cred).macaroons == (challenge.macaroon, other.macaroon)


def test_bundle_of_three_calls(tmp_path: Path) -> None:
    env = Env(tmp_path, prices={TOOL: {"sats": 50, "calls": 3}})
    challenge, preimage = env.buy()
    cred = credential(challenge.macaroon, preimage)
    receipts = [env.service.spend(cred, TOOL) for _ in range(3)]
    assert len({r.token_id for r in receipts}) == 1
    with pytest.raises(InvalidCredential, match=r"used up \(3 calls\)"):
        env.service.spend(cred, TOOL)
    with pytest.raises(InvalidCredential, match="used up"):
        env.fresh_service().spend(cred, TOOL)
    assert env.store.get(receipts[0].token_id).calls_used == 3


def test_refund_gives_the_call_back(env: Env) -> None:
    challenge, preimage = env.buy()
    cred = credential(challenge.macaroon, preimage)
    receipt = env.service.spend(cred, TOOL)
    env.service.refund(receipt)
    assert env.store.get(receipt.token_id).calls_used == 0
    env.service.spend(cred, TOOL)


# -- refused -------------------------------------------------------------------------------------

def _rebuilt(macaroon_b64: str, caveats: list[bytes] | None = None, signature: bytes | None = None,
             identifier: bytes | None = None) -> str:
    parsed = parse_v2(base64.b64decode(macaroon_b64))
    return b64(build_v2(parsed["location"], identifier if identifier is not None else parsed["identifier"],
                        caveats if caveats is not None else parsed["caveats"],
                        signature if signature is not None else parsed["signature"]))


def test_rebuild_without_changes_still_verifies(env: Env) -> None:
    challenge, preimage = env.buy()
    same = _rebuilt(challenge.macaroon)
    assert same == challenge.macaroon
    env.service.spend(credential(same, preimage), TOOL)


@pytest.mark.parametrize("index, replacement", [
    (1, b"sovereign-mcp_capabilities=validate_quality,trigger_pipeline"),
    (2, b"sovereign-mcp_valid_until=9999999999"),
    (3, b"sovereign-mcp_max_calls=1000"),
    (0, b"services=sovereign-mcp:1"),
])
def test_tampered_caveat_with_old_signature_refused(env: Env, index: int, replacement: bytes) -> None:
    challenge, preimage = env.buy()
    parsed = parse_v2(base64.b64decode(challenge.macaroon))
    caveats = list(parsed["caveats"])
    assert caveats[index] != replacement
    caveats[index] = replacement
    forged = credential(_rebuilt(challenge.macaroon, caveats=caveats), preimage)
    for tool in (TOOL, OTHER_TOOL) if index == 1 else (TOOL,):
        with pytest.raises(InvalidCredential, match="signature does not verify"):
            env.service.spend(forged, tool)
    token_id = struct.unpack(">H32s32s", parsed["identifier"])[2].hex()
    assert env.store.get(token_id).calls_used == 0


def test_dropped_caveat_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    caveats = parse_v2(base64.b64decode(challenge.macaroon))["caveats"]
    forged = credential(_rebuilt(challenge.macaroon, caveats=caveats[:-1]), preimage)
    with pytest.raises(InvalidCredential, match="signature does not verify"):
        env.service.spend(forged, TOOL)


def test_forged_signature_with_another_root_key_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    ident = macaroons.identifier_of(macaroons.decode(challenge.macaroon))
    token = env.store.get(ident.token_id.hex())
    forged = macaroons.mint(secrets.token_bytes(32), ident, [TOOL], token.valid_until, 1000)
    cred = credential(macaroons.encode(forged), preimage)
    with pytest.raises(InvalidCredential, match="signature does not verify"):
        env.service.verify(cred, TOOL)
    with pytest.raises(InvalidCredential, match="signature does not verify"):
        env.service.spend(cred, TOOL)
    assert env.store.get(token.token_id).calls_used == 0
    # the same caveats under the real root key verify: only the key differs
    genuine = macaroons.mint(token.root_key, ident, [TOOL], token.valid_until, 1)
    assert macaroons.encode(genuine) == challenge.macaroon


def test_wrong_preimage_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    _other, other_preimage = env.buy()
    for wrong in (secrets.token_hex(32), other_preimage, challenge.payment_hash):
        with pytest.raises(InvalidCredential, match="preimage does not match"):
            env.service.spend(credential(challenge.macaroon, wrong), TOOL)
    token_id = macaroons.identifier_of(macaroons.decode(challenge.macaroon)).token_id.hex()
    assert env.store.get(token_id).state == "pending"
    env.service.spend(credential(challenge.macaroon, preimage), TOOL)


def test_unpaid_invoice_preimage_unknown_cannot_be_used(env: Env) -> None:
    """Without paying, the client only has the payment hash; nothing else verifies."""
    challenge = env.service.challenge(TOOL)
    with pytest.raises(InvalidCredential, match="preimage does not match"):
        env.service.spend(credential(challenge.macaroon, "00" * 32), TOOL)


def test_expired_token_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    cred = credential(challenge.macaroon, preimage)
    token_id = macaroons.identifier_of(macaroons.decode(challenge.macaroon)).token_id.hex()
    valid_until = env.store.get(token_id).valid_until
    env.clock.now = valid_until - 1
    env.service.verify(cred, TOOL)  # verified (and remembered) just before expiry
    env.clock.now = valid_until
    with pytest.raises(InvalidCredential, match="expired"):
        env.service.spend(cred, TOOL)  # the remembered verification still checks the time
    with pytest.raises(InvalidCredential, match="expired"):
        env.fresh_service().spend(cred, TOOL)  # and so does a fresh one
    assert env.store.get(token_id).calls_used == 0


def test_wrong_tool_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    cred = credential(challenge.macaroon, preimage)
    with pytest.raises(InvalidCredential, match="does not cover tool 'trigger_pipeline'"):
        env.service.spend(cred, OTHER_TOOL)
    env.service.spend(cred, TOOL)


def test_revoked_token_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    cred = credential(challenge.macaroon, preimage)
    env.service.verify(cred, TOOL)
    token_id = macaroons.identifier_of(macaroons.decode(challenge.macaroon)).token_id.hex()
    assert env.store.revoke(token_id)
    with pytest.raises(InvalidCredential, match="revoked"):
        env.service.spend(cred, TOOL)
    with pytest.raises(InvalidCredential, match="revoked"):
        env.fresh_service().verify(cred, TOOL)
    # revoked after it was paid and partly used: refused too
    challenge2, preimage2 = env.buy()
    cred2 = credential(challenge2.macaroon, preimage2)
    receipt = env.service.spend(cred2, TOOL)
    env.store.revoke(receipt.token_id)
    with pytest.raises(InvalidCredential, match="revoked"):
        env.service.spend(cred2, TOOL)


def test_unknown_token_id_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    ident = macaroons.identifier_of(macaroons.decode(challenge.macaroon))
    token = env.store.get(ident.token_id.hex())
    stranger = macaroons.Identifier(0, ident.payment_hash, secrets.token_bytes(32))
    minted = macaroons.mint(token.root_key, stranger, [TOOL], token.valid_until, 1)
    with pytest.raises(InvalidCredential, match="unknown token"):
        env.service.spend(credential(macaroons.encode(minted), preimage), TOOL)
    # a token id that exists, paired with another invoice's hash and preimage
    other, other_preimage = env.buy()
    other_hash = macaroons.identifier_of(macaroons.decode(other.macaroon)).payment_hash
    swapped = macaroons.mint(token.root_key, macaroons.Identifier(0, other_hash, ident.token_id), [TOOL],
                             token.valid_until, 1)
    with pytest.raises(InvalidCredential, match="unknown token"):
        env.service.spend(credential(macaroons.encode(swapped), other_preimage), TOOL)
    # the token vanished from the store after a verification was remembered
    cred = credential(challenge.macaroon, preimage)
    env.service.verify(cred, TOOL)
    with env.store._tx() as cur:
        cur.execute("DELETE FROM l402_tokens WHERE token_id = ?", [ident.token_id.hex()])
    with pytest.raises(InvalidCredential, match="unknown token"):
        env.service.spend(cred, TOOL)


def test_identifier_in_another_format_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    parsed = parse_v2(base64.b64decode(challenge.macaroon))
    for identifier in (parsed["identifier"][:-1], struct.pack(">H", 1) + parsed["identifier"][2:]):
        bad = credential(_rebuilt(challenge.macaroon, identifier=identifier), preimage)
        with pytest.raises(InvalidCredential, match="identifier"):
            env.service.spend(bad, TOOL)


HEX = "ab" * 32
V2_ZEROS = b"\x02" + bytes(50)


@pytest.mark.parametrize("garbage", [
    "",
    "   ",
    "L402",
    "L402 ",
    f"Bearer abc:{HEX}",
    f"Basic {b64(b'user:pass')}",
    "L402 AgEEbHNhdA==",
    "L402 AgEEbHNhdA==:",
    "L402 AgEEbHNhdA==:abcd",
    f"L402 AgEEbHNhdA==:{'zz' * 32}",
    f"L402 AgEEbHNhdA==:{HEX}00",
    f"L402 :{HEX}",
    f"L402 ,,,:{HEX}",
    f"L402 !!!!:{HEX}",
    f"L402 AgEEbHNhdA==:{HEX}",
    f"L402 {b64(b'not a macaroon at all')}:{HEX}",
    f"L402 {b64(bytes(200))}:{HEX}",
    f"L402 {b64(V2_ZEROS)}:{HEX}",
    f"L402 A:{HEX}",
    f"L402 {'A' * 5000}:{HEX}",
    f"L402 mac\x00aroon:{HEX}",
    f"L402 macaroon\n:{HEX}\ninjected",
])
def test_garbage_credentials_refused(env: Env, garbage: str) -> None:
    with pytest.raises(InvalidCredential):
        env.service.verify(garbage, TOOL)
    with pytest.raises(InvalidCredential):
        env.service.spend(garbage, TOOL)


def test_parse_credential_rejects_non_l402() -> None:
    for value in ("", "L402 abc", f"Token abc:{HEX}", f"L402 abc:{HEX[:-1]}"):
        with pytest.raises(CredentialError):
            parse_credential(value)
    parsed = parse_credential(f"  LSAT a+/=,b-_ :{HEX.upper()}  ")
    assert parsed.macaroons == ("a+/=", "b-_")
    assert parsed.preimage == bytes.fromhex(HEX)


# -- attenuation (client-side caveats) -------------------------------------------------------------

def attenuate(macaroon_b64: str, *caveats: str) -> str:
    macaroon = macaroons.decode(macaroon_b64)
    assert isinstance(macaroon, Macaroon) and macaroon.version == MACAROON_V2
    for caveat in caveats:
        macaroon.add_first_party_caveat(caveat)
    return macaroons.encode(macaroon)


def test_stricter_valid_until_accepted_while_it_holds(env: Env) -> None:
    challenge, preimage = env.buy()
    now = int(env.clock.now)
    narrowed = credential(attenuate(challenge.macaroon, f"sovereign-mcp_valid_until={now + 100}"), preimage)
    parsed = parse_v2(base64.b64decode(narrowed.split()[1].split(":")[0]))
    assert parsed["caveats"][-1] == f"sovereign-mcp_valid_until={now + 100}".encode()
    env.service.verify(narrowed, TOOL)
    env.clock.now = now + 100  # the narrower limit, though the token itself is valid for a day
    with pytest.raises(InvalidCredential, match="expired"):
        env.service.spend(narrowed, TOOL)
    with pytest.raises(InvalidCredential, match="expired"):
        env.fresh_service().spend(narrowed, TOOL)
    # the original macaroon is not affected
    env.service.spend(credential(challenge.macaroon, preimage), TOOL)


def test_stricter_valid_until_in_the_past_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    narrowed = credential(attenuate(challenge.macaroon, f"sovereign-mcp_valid_until={int(env.clock.now) - 1}"),
                          preimage)
    with pytest.raises(InvalidCredential, match="expired"):
        env.service.spend(narrowed, TOOL)


def test_looser_valid_until_does_not_extend(env: Env) -> None:
    challenge, preimage = env.buy()
    token_id = macaroons.identifier_of(macaroons.decode(challenge.macaroon)).token_id.hex()
    valid_until = env.store.get(token_id).valid_until
    widened = credential(attenuate(challenge.macaroon, f"sovereign-mcp_valid_until={valid_until + 10**6}"), preimage)
    env.service.verify(widened, TOOL)
    env.clock.now = valid_until + 5
    with pytest.raises(InvalidCredential, match="expired"):
        env.service.spend(widened, TOOL)


def test_capabilities_narrowing(tmp_path: Path) -> None:
    env = Env(tmp_path, prices={TOOL: {"sats": 21, "calls": 5}})
    challenge, preimage = env.buy()
    holds = credential(attenuate(challenge.macaroon, "sovereign-mcp_capabilities=validate_quality"), preimage)
    env.service.spend(holds, TOOL)
    fails = credential(attenuate(challenge.macaroon, "sovereign-mcp_capabilities=trigger_pipeline"), preimage)
    with pytest.raises(InvalidCredential, match="does not cover tool 'validate_quality'"):
        env.service.spend(fails, TOOL)
    with pytest.raises(InvalidCredential, match="does not cover tool 'trigger_pipeline'"):
        env.service.spend(fails, OTHER_TOOL)  # narrowing never widens either
    widen = credential(attenuate(challenge.macaroon, "sovereign-mcp_capabilities=validate_quality,trigger_pipeline"),
                       preimage)
    with pytest.raises(InvalidCredential, match="does not cover"):
        env.service.spend(widen, OTHER_TOOL)
    env.service.spend(widen, TOOL)


def test_unknown_caveat_ignored(env: Env) -> None:
    challenge, preimage = env.buy()
    cred = credential(attenuate(challenge.macaroon, "otherservice_tier=gold", "ip=10.0.0.1"), preimage)
    env.service.spend(cred, TOOL)


def test_other_service_caveat_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    cred = credential(attenuate(challenge.macaroon, "services=someone-else:0"), preimage)
    with pytest.raises(InvalidCredential, match="another service"):
        env.service.spend(cred, TOOL)


def test_malformed_known_caveat_refused(env: Env) -> None:
    challenge, preimage = env.buy()
    for caveat in ("sovereign-mcp_valid_until=soon", "sovereign-mcp_max_calls=-1", "sovereign-mcp_max_calls=0"):
        with pytest.raises(InvalidCredential):
            env.service.spend(credential(attenuate(challenge.macaroon, caveat), preimage), TOOL)


def test_stricter_max_calls_caveat_enforced(tmp_path: Path) -> None:
    env = Env(tmp_path, prices={TOOL: {"sats": 63, "calls": 3}})
    challenge, preimage = env.buy()
    delegated = credential(attenuate(challenge.macaroon, "sovereign-mcp_max_calls=1"), preimage)
    env.service.spend(delegated, TOOL)
    with pytest.raises(InvalidCredential, match=r"used up \(1 call\)"):
        env.service.spend(delegated, TOOL)
    with pytest.raises(InvalidCredential):
        env.service.verify(delegated, TOOL)
    full = credential(challenge.macaroon, preimage)
    env.service.spend(full, TOOL)  # the undelegated credential keeps the token's own 3 calls
    env.service.spend(full, TOOL)
    with pytest.raises(InvalidCredential, match=r"used up \(3 calls\)"):
        env.service.spend(full, TOOL)
    looser = credential(attenuate(challenge.macaroon, "sovereign-mcp_max_calls=9"), preimage)
    with pytest.raises(InvalidCredential):  # a looser caveat cannot raise the sold limit
        env.service.spend(looser, TOOL)


@pytest.mark.parametrize("caveat", ["sovereign-mcp_valid_until=²", "sovereign-mcp_max_calls=²"])
def test_non_ascii_digit_caveat_refused_cleanly(env: Env, caveat: str) -> None:
    challenge, preimage = env.buy()
    with pytest.raises(InvalidCredential):
        env.service.spend(credential(attenuate(challenge.macaroon, caveat), preimage), TOOL)
