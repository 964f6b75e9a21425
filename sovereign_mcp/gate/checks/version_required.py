"""``version_required`` check: a named tool or model that no mention in the text gives a version for."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Context, Match, PhraseCheck

_NUMBER_AFTER = re.compile(r"[ \t-]?v?\d")


class VersionRequiredCheck(PhraseCheck):
    """A name of ``matcher`` is reported once, at its first mention, when no mention has a version: a number
    right after it, or a dotted version in the same sentence."""

    __slots__ = ()

    def check(self, ctx: Context) -> Iterator[Match]:
        claims = ctx.doc.claims
        first: dict[str, tuple[int, int]] = {}
        versioned: set[str] = set()
        for start, end, name in ctx.phrases(self.matcher):
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
