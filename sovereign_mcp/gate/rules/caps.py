"""``caps``: ALL-CAPS words that a TTS engine spells out letter by letter, unless allow-listed.

Every ``caps`` rule in the checked scopes acts as one allowlist (a project KB adds words to the shared
one): :meth:`Caps.combine` runs the first with the union of all their ``allow`` lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, Self

from pydantic import Field, PrivateAttr

from sovereign_mcp.gate.rules.base import Context, Match, Rule

_CAPS = re.compile(r"[A-Z][A-Z0-9]+")  # boundaries checked in Python: a lookbehind first slows re 4x


class Caps(Rule):
    """``allow``: words that may stay in capitals; ``min_length``: shorter words are not reported."""

    allow: list[str] = Field(default_factory=list)
    min_length: int = Field(2, ge=2)
    _allowed: frozenset[str] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._allowed = frozenset(self.allow)

    @classmethod
    def combine(cls, rules: Sequence[Self]) -> list[Self | None]:
        """The first rule, with every rule's allowlist, in place of all of them."""
        if len(rules) < 2:
            return list(rules)
        merged = cls(allow=[w for r in rules for w in r.allow], min_length=rules[0].min_length)
        return [merged, *(None for _ in rules[1:])]

    def check(self, ctx: Context) -> Iterator[Match]:
        text = ctx.doc.prose
        allowed, min_length = self._allowed, self.min_length
        speakers = {start for _, start, _ in ctx.speaker_turns()}
        for m in _CAPS.finditer(text):
            word, start, end = m.group(), m.start(), m.end()
            if (start and (text[start - 1].isalnum() or text[start - 1] in "_-")) or (
                end < len(text) and (text[end].isalnum() or text[end] in "_-")
            ):
                continue  # part of a mixed-case or hyphenated word
            if len(word) < min_length or word in allowed or start in speakers:
                continue
            if sum(c.isalpha() for c in word) < 2:
                continue
            yield Match(start, end, suggestion=f"add {word} to the CAPS allowlist or write it as a word")

    def prompt_lines(self) -> list[str]:
        return [f"Only these all-caps words may appear: {', '.join(self.allow)}."]
