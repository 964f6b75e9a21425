"""``fabrication`` check: file paths, version strings, URLs and cited titles found in neither the KB nor the
corpus (claims from :mod:`sovereign_mcp.gate.facts`; the known facts come with the context)."""

from __future__ import annotations

from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Check, Context, Match
from sovereign_mcp.gate.facts import extract_claims, normalise


class FabricationCheck(Check):
    """Claims of ``kinds`` that are neither in ``allowed`` (normalised) nor known to ``ctx.facts``."""

    __slots__ = ("allowed", "kinds")

    def __init__(self, kinds: frozenset[str], allowed: frozenset[str]) -> None:
        self.kinds = kinds
        self.allowed = allowed

    def check(self, ctx: Context) -> Iterator[Match]:
        for claim in extract_claims(ctx.doc.claims, set(self.kinds)):
            if normalise(claim.kind, claim.value) in self.allowed or ctx.facts.knows(claim.kind, claim.value,
                                                                                      claim.target):
                continue
            yield Match(claim.start, claim.end,
                        message=f"possible fabrication: {claim.kind} '{claim.value}' appears in neither the KB "
                        "nor the published articles",
                        suggestion="check it against the source, cite where it comes from, or remove it")
