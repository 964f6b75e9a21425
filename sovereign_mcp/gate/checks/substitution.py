"""``substitution`` check: a listed phrase, with its replacements as the suggestion (Vale ``substitution``,
``internal/check/substitution.go``)."""

from __future__ import annotations

from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Context, Match, PhraseCheck
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class SubstitutionCheck(PhraseCheck):
    """``advice``: phrase -> the suggestion shown for it ("use 'x' or 'y'")."""

    __slots__ = ("advice",)

    def __init__(self, matcher: PhraseMatcher, advice: dict[str, str]) -> None:
        super().__init__(matcher)
        self.advice = advice

    def check(self, ctx: Context) -> Iterator[Match]:
        for start, end, phrase in ctx.phrases(self.matcher):
            yield Match(start, end, suggestion=self.advice[phrase])
