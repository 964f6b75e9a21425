"""What every compiled check shares, without pydantic (so ``sovereign-mcp gate`` can run a cached plan fast):
the :class:`Check` base, the :class:`Match` it yields and the per-check :class:`Context` (the prepared
document, its lower-cased prose, the known facts, and lazily computed tables several checks read: speaker
turns, sentence ends, version positions)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

from sovereign_mcp.gate.document import Document
from sovereign_mcp.gate.facts import KnownFacts, digit_dots
from sovereign_mcp.gate.rules.phrases import PhraseMatcher, PhraseScan

# Matched against "\n" + text, so every turn, the first included, follows a literal newline (``re`` skips
# ahead to it); group 1 is the speaker's name.
SPEAKER_PATTERN = r"\n[ \t]*([A-Z][A-Z0-9_]{1,30})[ \t]*:"
SPEAKER = re.compile(SPEAKER_PATTERN)
# Sentence ends: ".", "!" or "?" then a space, or a blank line. One scan per literal opening (re skips ahead
# to it) beats a character class 2x, and one alternation 4x.
_SENTENCE_ENDS = tuple(re.compile(p) for p in (r"\.\s", r"!\s", r"\?\s", r"\n\s*\n"))


def compiled(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``pattern`` compiled, for a schema validator.

    Raises:
        ValueError: ``invalid regular expression: ...`` (pydantic reports it on the field, with the file).
    """
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None


@dataclass(slots=True, frozen=True)
class Match:
    """A span ``[start, end)`` in the document, with an optional per-match message/suggestion."""

    start: int
    end: int
    message: str | None = None
    suggestion: str | None = None


class Context:
    """Per-check shared state: the document, its lower-cased prose, and the known facts.

    ``lowered`` is ``doc.prose.lower()`` when lower-casing keeps every offset (same length), else ``None``.
    ``scan`` finds the phrases of every rule to run in one pass (see :meth:`phrases`).
    """

    def __init__(self, doc: Document, facts: KnownFacts, scan: PhraseScan | None = None) -> None:
        self.doc = doc
        self.facts = facts
        self._scan = scan
        self._phrase_hits: dict[int, list[tuple[int, int, str]]] | None = None
        lowered = doc.prose.lower()
        self.lowered = lowered if len(lowered) == len(doc.prose) else None
        self._sentences: list[int] | None = None
        self._versions: list[int] | None = None
        self._turns: dict[re.Pattern[str], list[tuple[str, int, int]]] = {}

    def phrases(self, matcher: PhraseMatcher) -> list[tuple[int, int, str]]:
        """``matcher``'s ``(start, end, phrase)`` hits in the prose: from the shared scan when it holds the
        matcher (the scan runs once, at the first call), else from the matcher's own pass."""
        if self._scan is not None and self._phrase_hits is None:
            self._phrase_hits = self._scan.run(self.doc.prose, self.lowered)
        hits = self._phrase_hits.get(id(matcher)) if self._phrase_hits is not None else None
        return hits if hits is not None else list(matcher.find(self.doc.prose, self.lowered))

    def speaker_turns(self, pattern: re.Pattern[str] = SPEAKER) -> list[tuple[str, int, int]]:
        """``(speaker, start, end)`` of every ``SPEAKER:`` label (cached per pattern; see :data:`SPEAKER_PATTERN`)."""
        if pattern not in self._turns:
            text = "\n" + self.doc.prose
            self._turns[pattern] = [(m.group(1), m.start(1) - 1, m.end(1) - 1) for m in pattern.finditer(text)]
        return self._turns[pattern]

    def sentence_bounds(self, start: int, end: int) -> tuple[int, int]:
        """``[lo, hi)`` of the sentence around ``[start, end)`` (ends: ``.!?`` + space, blank line)."""
        if self._sentences is None:
            claims = self.doc.claims
            self._sentences = sorted(m.end() for pattern in _SENTENCE_ENDS for m in pattern.finditer(claims))
        ends = self._sentences
        i = bisect.bisect_right(ends, start)
        lo = ends[i - 1] if i else 0
        j = bisect.bisect_left(ends, end)
        return lo, ends[j] if j < len(ends) else len(self.doc.claims)

    def has_version(self, lo: int, hi: int) -> bool:
        """Whether a version-like number (digit.digit) occurs in ``[lo, hi)``."""
        if self._versions is None:
            self._versions = [start for start, _ in digit_dots(self.doc.claims)]
        i = bisect.bisect_left(self._versions, lo)
        return i < len(self._versions) and self._versions[i] < hi


class Check:
    """A rule compiled for running (:meth:`sovereign_mcp.gate.rules.base.Rule.compile`): plain Python, picklable,
    holding only what :meth:`check` reads (phrase automata, compiled patterns, limits)."""

    __slots__ = ()

    def check(self, ctx: Context) -> Iterator[Match]:
        """Every violation in ``ctx.doc``, by position."""
        raise NotImplementedError

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        """The phrase lists :meth:`check` reads through ``ctx.phrases`` (scanned together with every other
        check's in one pass); none by default."""
        return ()


class PhraseCheck(Check):
    """A check that reads one phrase list through the shared scan (``ctx.phrases(self.matcher)``)."""

    __slots__ = ("matcher",)

    def __init__(self, matcher: PhraseMatcher) -> None:
        self.matcher = matcher

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        return (self.matcher,)
