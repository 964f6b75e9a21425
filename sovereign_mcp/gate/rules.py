"""Matchers, one per KB rule type. Each yields :class:`Match` spans over a prepared document.

Phrase lists are matched in one pass over the lower-cased text with an Aho-Corasick automaton
(pyahocorasick), not with a case-insensitive ``re`` alternation: REFERENCE.md measured 1.06 s for
200 phrases on 1 MB that way, 67 ms with ``str.find`` per phrase; the automaton scans once for all
of them. Everything else is one compiled regex pass per rule, each opening on a literal where it
can so ``re`` skips ahead.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import ahocorasick

from sovereign_mcp.gate.document import Document
from sovereign_mcp.gate.facts import DIGIT_DOT, KnownFacts, extract_claims, normalise
from sovereign_mcp.kb.models import (
    SPEAKER_PATTERN,
    CapsData,
    DominanceData,
    ExistenceData,
    FabricationData,
    KBEntry,
    MarkupData,
    RepetitionData,
    SubstitutionData,
    VersionData,
)

_CAPS = re.compile(r"[A-Z][A-Z0-9]+")  # boundaries checked in Python: a lookbehind first slows re 4x
_REPEAT = re.compile(r"\b(\w++)(?:\s++\1\b)+", re.IGNORECASE)  # possessive: no backtracking, 1.5x faster
_SENTENCE_ENDS = (re.compile(r"[.!?]\s"), re.compile(r"\n\s*\n"))  # two scans beat one alternation 2x
_NUMBER_AFTER = re.compile(r"[ \t-]?v?\d")


@dataclass(slots=True, frozen=True)
class Match:
    """A span ``[start, end)`` in the document, with an optional per-match message/suggestion."""

    start: int
    end: int
    message: str | None = None
    suggestion: str | None = None


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


@functools.lru_cache(maxsize=256)
def _automaton(phrases: tuple[str, ...], ignorecase: bool) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for phrase in phrases:
        key = phrase.lower() if ignorecase else phrase
        automaton.add_word(key, (len(key), phrase))
    automaton.make_automaton()
    return automaton


def find_phrases(text: str, lowered: str | None, phrases: list[str], ignorecase: bool,
                 word_boundaries: bool) -> Iterator[tuple[int, int, str]]:
    """Every occurrence of each phrase as ``(start, end, phrase)``, by position.

    ``lowered`` is ``text.lower()`` when that keeps offsets (same length), else ``None`` (then a
    per-phrase case-insensitive regex is used).
    """
    if ignorecase and lowered is None:
        found = []
        for phrase in phrases:
            for m in re.finditer(re.escape(phrase), text, re.IGNORECASE):
                if not word_boundaries or _bounded(text, m.start(), m.end(), phrase):
                    found.append((m.start(), m.end(), phrase))
        yield from sorted(found)
        return
    if not phrases:
        return
    haystack = lowered if ignorecase else text
    for last, (length, phrase) in _automaton(tuple(phrases), ignorecase).iter(haystack):
        start, end = last + 1 - length, last + 1
        if not word_boundaries or _bounded(text, start, end, phrase):
            yield start, end, phrase


def _bounded(text: str, start: int, end: int, phrase: str) -> bool:
    if _is_word(phrase[0]) and start > 0 and _is_word(text[start - 1]):
        return False
    return not (_is_word(phrase[-1]) and end < len(text) and _is_word(text[end]))


class Context:
    """Per-check shared state: the document, its lower-cased prose, and the known facts."""

    def __init__(self, doc: Document, facts: KnownFacts) -> None:
        self.doc = doc
        self.facts = facts
        lowered = doc.prose.lower()
        self.lowered = lowered if len(lowered) == len(doc.prose) else None
        self._sentences: list[int] | None = None
        self._versions: list[int] | None = None
        self._turns: dict[str, list[tuple[str, int, int]]] = {}

    def speaker_turns(self, pattern: str = SPEAKER_PATTERN) -> list[tuple[str, int, int]]:
        """``(speaker, start, end)`` of every ``SPEAKER:`` label (cached per pattern)."""
        if pattern not in self._turns:
            text = "\n" + self.doc.prose
            self._turns[pattern] = [(m.group(1), m.start(1) - 1, m.end(1) - 1) for m in re.finditer(pattern, text)]
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
            self._versions = [m.start() for m in DIGIT_DOT.finditer(self.doc.claims)]
        i = bisect.bisect_left(self._versions, lo)
        return i < len(self._versions) and self._versions[i] < hi


def existence(entry: KBEntry, ctx: Context) -> Iterator[Match]:
    data: ExistenceData = entry.data
    for start, end, _ in find_phrases(ctx.doc.prose, ctx.lowered, data.phrases, data.ignorecase,
                                      data.word_boundaries):
        yield Match(start, end)


def substitution(entry: KBEntry, ctx: Context) -> Iterator[Match]:
    data: SubstitutionData = entry.data
    for start, end, phrase in find_phrases(ctx.doc.prose, ctx.lowered, list(data.swap), data.ignorecase,
                                           data.word_boundaries):
        replacement = data.swap[phrase]
        options = replacement if isinstance(replacement, list) else [replacement]
        yield Match(start, end, suggestion="use " + " or ".join(f"'{o}'" for o in options))


def caps(entry: KBEntry, ctx: Context, allow: frozenset[str]) -> Iterator[Match]:
    data: CapsData = entry.data
    text = ctx.doc.prose
    speakers = {start for _, start, _ in ctx.speaker_turns()}
    for m in _CAPS.finditer(text):
        word, start, end = m.group(), m.start(), m.end()
        if (start and (text[start - 1].isalnum() or text[start - 1] in "_-")) or (
            end < len(text) and (text[end].isalnum() or text[end] in "_-")
        ):
            continue  # part of a mixed-case or hyphenated word
        if len(word) < data.min_length or word in allow or start in speakers:
            continue
        if sum(c.isalpha() for c in word) < 2:
            continue
        yield Match(m.start(), m.end(), suggestion=f"add {word} to the CAPS allowlist or write it as a word")


def markup(entry: KBEntry, ctx: Context) -> Iterator[Match]:
    data: MarkupData = entry.data
    for pattern in data.patterns:
        for m in re.finditer(pattern.pattern, ctx.doc.prose, re.MULTILINE):
            if m.end() > m.start():
                yield Match(m.start(), m.end(), message=f"TTS would read {pattern.name} literally: '{m.group()}'",
                            suggestion=pattern.suggestion or None)


def dominance(entry: KBEntry, ctx: Context) -> Iterator[Match]:
    data: DominanceData = entry.data
    turns = ctx.speaker_turns(data.speaker_pattern)
    run_start = 0
    for i in range(1, len(turns) + 1):
        if i < len(turns) and turns[i][0] == turns[run_start][0]:
            continue
        length = i - run_start
        if length > data.max_turns:
            speaker, start, end = turns[run_start + data.max_turns]
            first = ctx.doc.position(turns[run_start][1])[0]
            yield Match(start, end, message=f"{speaker} holds {length} consecutive turns from line {first}; "
                        f"at most {data.max_turns} in a row",
                        suggestion="give the other host a back-channel or a question in between")
        run_start = i


def repetition(entry: KBEntry, ctx: Context) -> Iterator[Match]:
    data: RepetitionData = entry.data
    ignore = {w.lower() for w in data.ignore}
    for m in _REPEAT.finditer(ctx.doc.prose):
        word = m.group(1)
        if word.lower() in ignore or word.isdigit() or len(word) < data.min_word_length:
            continue
        yield Match(m.start(), m.end(), message=f"'{word}' repeated", suggestion=f"keep one '{word}'")


def fabrication(entry: KBEntry, ctx: Context) -> Iterator[Match]:
    data: FabricationData = entry.data
    allow = {normalise(k, a) for a in data.allow for k in ("path", "url", "version")}
    for claim in extract_claims(ctx.doc.claims, set(data.kinds)):
        if normalise(claim.kind, claim.value) in allow or ctx.facts.knows(claim.kind, claim.value, claim.target):
            continue
        yield Match(claim.start, claim.end,
                    message=f"possible fabrication: {claim.kind} '{claim.value}' appears in neither the KB "
                    "nor the published articles",
                    suggestion="check it against the source, cite where it comes from, or remove it")


def version_required(entry: KBEntry, ctx: Context) -> Iterator[Match]:
    """Report a name once, at its first mention, when no mention of it in the document comes with a
    version: a number right after it ("Mistral Small 4", "FLUX.1") or a dotted version in the
    same sentence ("SGLang ... 0.5.2")."""
    data: VersionData = entry.data
    claims = ctx.doc.claims
    first: dict[str, tuple[int, int]] = {}
    versioned: set[str] = set()
    for start, end, name in find_phrases(ctx.doc.prose, ctx.lowered, data.names, True, True):
        if name in versioned:
            continue
        first.setdefault(name, (start, end))
        if _NUMBER_AFTER.match(claims, end) or ctx.has_version(*ctx.sentence_bounds(start, end)):
            versioned.add(name)
    for name, (start, end) in sorted(first.items(), key=lambda kv: kv[1]):
        if name in versioned:
            continue
        yield Match(start, end, message=f"'{claims[start:end]}' is named without a version anywhere in the text",
                    suggestion=f"say which {name} version this was run with (e.g. '{name} 0.5.2')")
