"""``caps`` check: ALL-CAPS words that a TTS engine spells out letter by letter, unless allow-listed."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Check, Context, Match

_CAPS = re.compile(r"[A-Z][A-Z0-9]+")  # boundaries checked in Python: a lookbehind first slows re 4x


class CapsCheck(Check):
    """``allowed`` words stay in capitals; words shorter than ``min_length`` and speaker labels are skipped."""

    __slots__ = ("allowed", "min_length")

    def __init__(self, allowed: frozenset[str], min_length: int) -> None:
        self.allowed = allowed
        self.min_length = min_length

    def check(self, ctx: Context) -> Iterator[Match]:
        text = ctx.doc.prose
        allowed, min_length = self.allowed, self.min_length
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
