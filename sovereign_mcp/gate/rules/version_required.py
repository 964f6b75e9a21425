"""``version_required``: a named tool or model that no mention in the text gives a version for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field, PrivateAttr

from sovereign_mcp.gate.rules.base import Context, Match, Rule
from sovereign_mcp.gate.rules.phrases import PhraseMatcher

_NUMBER_AFTER = re.compile(r"[ \t-]?v?\d")


class VersionRequired(Rule):
    """``names`` (any case, whole words). A name is reported once, at its first mention, when no mention
    of it in the document comes with a version: a number right after it ("Mistral Small 4", "FLUX.1") or
    a dotted version in the same sentence ("SGLang ... 0.5.2")."""

    names: list[str] = Field(min_length=1)
    _matcher: PhraseMatcher = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._matcher = PhraseMatcher(self.names, ignorecase=True, word_boundaries=True)

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        return (self._matcher,)

    def check(self, ctx: Context) -> Iterator[Match]:
        claims = ctx.doc.claims
        first: dict[str, tuple[int, int]] = {}
        versioned: set[str] = set()
        for start, end, name in ctx.phrases(self._matcher):
            if name in versioned:
                continue
            first.setdefault(name, (start, end))
            if _NUMBER_AFTER.match(claims, end) or ctx.has_version(*ctx.sentence_bounds(start, end)):
                versioned.add(name)
        for name, (start, end) in sorted(first.items(), key=lambda kv: kv[1]):
            if name in versioned:
                continue
            yield Match(start, end, message=f"'{claims[start:end]}' is named without a version anywhere in the "
                        "text", suggestion=f"say which {name} version this was run with (e.g. '{name} 0.5.2')")

    def prompt_lines(self) -> list[str]:
        return [f"Give a version whenever you name: {', '.join(self.names)}."]
