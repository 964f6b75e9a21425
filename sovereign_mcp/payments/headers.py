"""L402 HTTP headers (bLIP-0026 / lightninglabs/aperture ``l402/header.go``).

Challenge: ``WWW-Authenticate: L402 macaroon="<std base64>", invoice="<bolt11>"`` (``macaroon=``
first: client parsers such as l402-requests match that order), sent again with the legacy scheme
``LSAT``. Credential: ``Authorization: L402 <macaroon>[,<macaroon>...]:<hex preimage>`` or ``LSAT``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CREDENTIAL = re.compile(r"^\s*(L402|LSAT)\s+([A-Za-z0-9+/=_,\-\s]+):([0-9a-fA-F]{64})\s*$", re.IGNORECASE)


class CredentialError(ValueError):
    """An ``Authorization`` value that is not an L402 credential."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A parsed credential: the macaroons (base64 text, first is the token) and the 32-byte preimage."""

    macaroons: tuple[str, ...]
    preimage: bytes


def challenges(macaroon_b64: str, bolt11: str) -> list[str]:
    """``WWW-Authenticate`` values: the L402 challenge, then the same with scheme ``LSAT``."""
    params = f'macaroon="{macaroon_b64}", invoice="{bolt11}"'
    return [f"L402 {params}", f"LSAT {params}"]


def parse_credential(value: str) -> Credential:
    """Parse an ``Authorization`` header value (or the same string sent in-protocol).

    Raises:
        CredentialError: not ``L402|LSAT <macaroon[,macaroon]>:<64 hex>``.
    """
    match = _CREDENTIAL.match(value or "")
    if not match:
        raise CredentialError("expected 'L402 <base64 macaroon>:<64-hex-digit preimage>'")
    macaroons = tuple(m.strip() for m in match.group(2).split(",") if m.strip())
    if not macaroons:
        raise CredentialError("no macaroon before ':'")
    return Credential(macaroons, bytes.fromhex(match.group(3)))
