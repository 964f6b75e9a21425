"""``fabrication``: file paths, version strings, URLs and cited titles found in neither the KB nor the
corpus (claims are extracted by :mod:`sovereign_mcp.gate.facts`; the known facts come with the check)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from sovereign_mcp.gate.facts import extract_claims, normalise
from sovereign_mcp.gate.rules.base import Context, Match, Rule


class Fabrication(Rule):
    """``kinds``: which claims to check (all four by default); ``allow``: claims known to be real."""

    kinds: list[Literal["path", "version", "url", "title"]] = Field(
        default_factory=lambda: ["path", "version", "url", "title"]
    )
    allow: list[str] = Field(default_factory=list, description="claims known to be real")
    _kinds: frozenset[str] = PrivateAttr()
    _allowed: frozenset[str] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._kinds = frozenset(self.kinds)
        self._allowed = frozenset(normalise(k, a) for a in self.allow for k in ("path", "url", "version"))

    def check(self, ctx: Context) -> Iterator[Match]:
        for claim in extract_claims(ctx.doc.claims, set(self._kinds)):
            if normalise(claim.kind, claim.value) in self._allowed or ctx.facts.knows(claim.kind, claim.value,
                                                                                       claim.target):
                continue
            yield Match(claim.start, claim.end,
                        message=f"possible fabrication: {claim.kind} '{claim.value}' appears in neither the KB "
                        "nor the published articles",
                        suggestion="check it against the source, cite where it comes from, or remove it")
