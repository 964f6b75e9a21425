"""``existence`` check: any listed phrase is a finding (Vale ``existence``, ``internal/check/existence.go``)."""

from __future__ import annotations

from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Check, Context, Match
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class ExistenceCheck(Check):
    """Yields every hit of ``matcher``."""

    __slots__ = ("matcher",)

    def __init__(self, matcher: PhraseMatcher) -> None:
        self.matcher = matcher

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        return (self.matcher,)

    def check(self, ctx: Context) -> Iterator[Match]:
        for start, end, _ in ctx.phrases(self.matcher):
            yield Match(start, end)
