"""``existence``: any listed phrase is a finding (Vale ``existence``, ``internal/check/existence.go``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field, PrivateAttr

from sovereign_mcp.gate.rules.base import Context, Match, Rule
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class Existence(Rule):
    """``phrases`` (at least one), matched case-insensitively and on word boundaries unless turned off."""

    phrases: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    ignorecase: bool = True
    word_boundaries: bool = True
    _matcher: PhraseMatcher = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._matcher = PhraseMatcher(self.phrases, self.ignorecase, self.word_boundaries)

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        return (self._matcher,)

    def check(self, ctx: Context) -> Iterator[Match]:
        for start, end, _ in ctx.phrases(self._matcher):
            yield Match(start, end)

    def prompt_lines(self) -> list[str]:
        return [f"Never write: {', '.join(repr(p) for p in self.phrases)}."]
