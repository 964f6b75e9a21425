"""``markup`` check: text a TTS engine reads literally (asterisks, angle brackets, bracket tags)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from sovereign_mcp.gate.checks.context import Check, Context, Match


class MarkupCheck(Check):
    """``patterns``: ``(name, compiled multi-line regex, suggestion or None)``; an empty match is never reported."""

    __slots__ = ("patterns",)

    def __init__(self, patterns: Sequence[tuple[str, re.Pattern[str], str | None]]) -> None:
        self.patterns = tuple(patterns)

    def check(self, ctx: Context) -> Iterator[Match]:
        for name, regex, suggestion in self.patterns:
            for m in regex.finditer(ctx.doc.prose):
                if m.end() > m.start():
                    yield Match(m.start(), m.end(), message=f"TTS would read {name} literally: '{m.group()}'",
                                suggestion=suggestion)
