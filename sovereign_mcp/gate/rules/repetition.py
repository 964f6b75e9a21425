"""``repetition``: the same word twice in a row ("the the"), Vale ``repetition``
(``internal/check/repetition.go``). The check: :mod:`sovereign_mcp.gate.checks.repetition`."""

from __future__ import annotations

from pydantic import Field

from sovereign_mcp.gate.checks.repetition import RepetitionCheck
from sovereign_mcp.gate.rules.base import Rule


class Repetition(Rule):
    """Numbers never count; ``ignore`` lists words allowed to repeat (any case); shorter words than
    ``min_word_length`` are not reported."""

    min_word_length: int = Field(1, ge=1)
    ignore: list[str] = Field(default_factory=list, description="words allowed to repeat, e.g. 'that'")

    def compile(self) -> RepetitionCheck:
        return RepetitionCheck(frozenset(w.lower() for w in self.ignore), self.min_word_length)
