"""``caps``: ALL-CAPS words that a TTS engine spells out letter by letter, unless allow-listed.

Every ``caps`` rule in the checked scopes acts as one allowlist (a project KB adds words to the shared
one): :meth:`Caps.combine` runs the first with the union of all their ``allow`` lists. The check:
:mod:`sovereign_mcp.gate.checks.caps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from pydantic import Field

from sovereign_mcp.gate.checks.caps import CapsCheck
from sovereign_mcp.gate.rules.base import Rule


class Caps(Rule):
    """``allow``: words that may stay in capitals; ``min_length``: shorter words are not reported."""

    allow: list[str] = Field(default_factory=list)
    min_length: int = Field(2, ge=2)

    def compile(self) -> CapsCheck:
        return CapsCheck(frozenset(self.allow), self.min_length)

    @classmethod
    def combine(cls, rules: Sequence[Self]) -> list[Self | None]:
        """The first rule, with every rule's allowlist, in place of all of them."""
        if len(rules) < 2:
            return list(rules)
        merged = cls(allow=[w for r in rules for w in r.allow], min_length=rules[0].min_length)
        return [merged, *(None for _ in rules[1:])]

    def prompt_lines(self) -> list[str]:
        return [f"Only these all-caps words may appear: {', '.join(self.allow)}."]
