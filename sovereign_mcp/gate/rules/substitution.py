"""``substitution``: a phrase with preferred replacements (Vale ``substitution``,
``internal/check/substitution.go``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field, PrivateAttr

from sovereign_mcp.gate.rules.base import Context, Match, Rule
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class Substitution(Rule):
    """``swap``: phrase -> replacement or list of replacements (the suggestion names them all)."""

    swap: dict[str, str | list[str]] = Field(min_length=1)
    ignorecase: bool = True
    word_boundaries: bool = True
    _matcher: PhraseMatcher = PrivateAttr()
    _advice: dict[str, str] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._matcher = PhraseMatcher(list(self.swap), self.ignorecase, self.word_boundaries)
        self._advice = {
            phrase: "use " + " or ".join(f"'{o}'" for o in (options if isinstance(options, list) else [options]))
            for phrase, options in self.swap.items()
        }

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        return (self._matcher,)

    def check(self, ctx: Context) -> Iterator[Match]:
        for start, end, phrase in ctx.phrases(self._matcher):
            yield Match(start, end, suggestion=self._advice[phrase])

    def prompt_lines(self) -> list[str]:
        pairs = [f"'{k}' -> '{v if isinstance(v, str) else ' / '.join(v)}'" for k, v in self.swap.items()]
        return [f"Replace: {'; '.join(pairs)}."]
