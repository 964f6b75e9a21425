"""``existence`` check: any listed phrase is a finding (Vale ``existence``, ``internal/check/existence.go``)."""

from __future__ import annotations

from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Context, Match, PhraseCheck


class ExistenceCheck(PhraseCheck):
    """Yields every hit of ``matcher``."""

    __slots__ = ()

    def check(self, ctx: Context) -> Iterator[Match]:
        for start, end, _ in ctx.phrases(self.matcher):
            yield Match(start, end)
