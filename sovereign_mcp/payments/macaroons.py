"""L402 macaroons in Aperture's format (pymacaroons, V2 binary, location ``"lsat"``).

Identifier (66 bytes, big-endian; lightninglabs/aperture ``lsat/identifier.go``)::

    uint16 version (= 0) | payment_hash [32] | token_id [32]

Caveats are ``cond=value`` first-party caveats (aperture ``lsat/caveat.go``):
``services=sovereign-mcp:0``, ``sovereign-mcp_capabilities=<tool,tool>``,
``sovereign-mcp_valid_until=<unix seconds>`` and, added here, ``sovereign-mcp_max_calls=<N>``.
Every caveat must hold, so a repeated caveat can only narrow what the token allows; caveats this
server does not know are ignored (satisfied), as Aperture does.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pymacaroons import MACAROON_V2, Macaroon, Verifier
from pymacaroons.exceptions import MacaroonException
from pymacaroons.serializers import BinarySerializer

SERVICE = "sovereign-mcp"
LOCATION = "lsat"
ID_VERSION = 0
ID_LENGTH = 2 + 32 + 32
CAPABILITIES = f"{SERVICE}_capabilities"
VALID_UNTIL = f"{SERVICE}_valid_until"
MAX_CALLS = f"{SERVICE}_max_calls"


class MacaroonError(ValueError):
    """A macaroon that cannot be decoded, or whose identifier is not Aperture's format."""


@dataclass(frozen=True, slots=True)
class Identifier:
    """Decoded macaroon identifier: ``payment_hash`` and ``token_id`` are 32 raw bytes each."""

    version: int
    payment_hash: bytes
    token_id: bytes

    def encode(self) -> bytes:
        """The 66-byte big-endian wire form."""
        return struct.pack(">H", self.version) + self.payment_hash + self.token_id

    @classmethod
    def decode(cls, raw: bytes) -> Identifier:
        """Parse the 66-byte form.

        Raises:
            MacaroonError: wrong length or unknown version.
        """
        if len(raw) != ID_LENGTH:
            raise MacaroonError(f"identifier is {len(raw)} bytes, expected {ID_LENGTH}")
        (version,) = struct.unpack(">H", raw[:2])
        if version != ID_VERSION:
            raise MacaroonError(f"unknown identifier version {version}")
        return cls(version, raw[2:34], raw[34:66])


def mint(root_key: bytes, identifier: Identifier, tools: Iterable[str], valid_until: int, max_calls: int) -> Macaroon:
    """A new macaroon for ``identifier`` signed with ``root_key`` (pymacaroons derives the signing key
    as go-macaroon does, so Aperture-compatible verifiers accept it)."""
    macaroon = Macaroon(location=LOCATION, identifier=identifier.encode(), key=root_key, version=MACAROON_V2)
    macaroon.add_first_party_caveat(f"services={SERVICE}:0")
    macaroon.add_first_party_caveat(f"{CAPABILITIES}={','.join(tools)}")
    macaroon.add_first_party_caveat(f"{VALID_UNTIL}={valid_until}")
    macaroon.add_first_party_caveat(f"{MAX_CALLS}={max_calls}")
    return macaroon


def encode(macaroon: Macaroon) -> str:
    """Standard base64 (with padding) of the V2 binary serialisation, as Aperture sends it."""
    return base64.b64encode(_binary(macaroon)).decode("ascii")


def _binary(macaroon: Macaroon) -> bytes:
    serialized = macaroon.serialize(BinarySerializer())
    # pymacaroons returns url-safe base64 text of the binary form; undo that to get the raw bytes
    return base64.urlsafe_b64decode(serialized + "=" * (-len(serialized) % 4))


def decode(text: str) -> Macaroon:
    """Parse a base64 macaroon, tolerating url-safe alphabet and missing padding.

    Raises:
        MacaroonError: not base64 or not a macaroon.
    """
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
        serialized = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return Macaroon.deserialize(serialized, BinarySerializer())
    except (binascii.Error, ValueError, MacaroonException, IndexError, TypeError) as exc:
        raise MacaroonError(f"not a valid macaroon: {exc}") from None


def identifier_of(macaroon: Macaroon) -> Identifier:
    """The decoded identifier of ``macaroon``.

    Raises:
        MacaroonError: not Aperture's identifier format.
    """
    return Identifier.decode(macaroon.identifier_bytes)


@dataclass(frozen=True, slots=True)
class Limits:
    """What the caveats allow, once the signature holds: the narrowest of each repeated caveat."""

    max_calls: int | None
    valid_until: int | None


def caveat_failure(predicate: str, tool: str, now: int, seen: dict[str, list[int]] | None = None) -> str | None:
    """Why the first-party caveat ``predicate`` (``name=value``) refuses a call of ``tool`` at unix time
    ``now``, or ``None`` when it allows it: the check and its reason in one place, as Aperture's
    ``l402/satisfier.go`` keeps each satisfier's rule and error together.

    ``seen`` collects the numeric values of ``valid_until`` / ``max_calls`` caveats (the narrowest wins). An
    unknown caveat allows the call (another service's, or a newer one).
    """
    name, _, value = predicate.partition("=")
    name, value = name.strip(), value.strip()
    if name == "services":
        if SERVICE in {v.split(":")[0].strip() for v in value.split(",")}:
            return None
        return f"token is for another service ({value})"
    if name == CAPABILITIES:
        return None if tool in {c.strip() for c in value.split(",")} else (
            f"token does not cover tool {tool!r} (it covers {value})")
    if name in (VALID_UNTIL, MAX_CALLS):
        if not (value.isascii() and value.isdigit()):
            return f"malformed caveat {name}={value!r}"
        if seen is not None:
            seen.setdefault(name, []).append(int(value))
        if name == VALID_UNTIL:
            return None if now < int(value) else "token expired"
        return None if int(value) > 0 else "token allows no calls"
    return None


def verify(macaroon: Macaroon, root_key: bytes, tool: str, now: int) -> Limits:
    """Check the signature and the caveats for a call of ``tool`` at unix time ``now``.

    Raises:
        MacaroonError: bad signature, wrong service, tool not allowed, expired, malformed caveat (the most
            specific reason: pymacaroons reports every failure alike).
    """
    seen: dict[str, list[int]] = {}
    verifier = Verifier()
    verifier.satisfy_general(lambda predicate: caveat_failure(predicate, tool, now, seen) is None)
    try:
        verifier.verify(macaroon, root_key)
    except MacaroonException:
        reasons = (caveat_failure(_text(c.caveat_id), tool, now) for c in macaroon.first_party_caveats())
        raise MacaroonError(next((r for r in reasons if r), "macaroon signature does not verify")) from None
    calls, until = seen.get(MAX_CALLS), seen.get(VALID_UNTIL)
    return Limits(min(calls) if calls else None, min(until) if until else None)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
