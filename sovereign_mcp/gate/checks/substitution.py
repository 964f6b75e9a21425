"""``substitution`` check: a listed phrase, with its replacements as the suggestion (Vale ``substitution``,
``internal/check/substitution.go``)."""

from __future__ import annotations

from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Check, Context, Match
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class SubstitutionCheck(Check):
    """``advice``: phrase -> the suggestion shown for it ("use 'x' or 'y'")."""

    __slots__ = ("advice", "matcher")

    def __init__(self, matcher: PhraseMatcher, advice: dict[str, str]) -> None:
        self.matcher = matcher
        self.advice = advice

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        return (self.matcher,)

    def check(self, ctx: Context) -> Iterator[Match]:
        for start, end, phrase in ctx.phrases(self.matcher):
            yield Match(start, end, suggestion=self.advice[phrase])
