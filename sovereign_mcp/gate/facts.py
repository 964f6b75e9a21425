"""Checkable claims (file paths, version strings, URLs, cited titles) and the facts that back them.

A claim is "backed" when the same string occurs in the knowledge base or in a published article
(the operator's scorer flags invented file paths, missing versions and citations absent from the
KB). :class:`KnownFacts` extracts the same claim kinds from those sources once, so checking a
claim is a set lookup, whatever the size of the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

URL = re.compile(r"\bhttps?://[^\s<>\"'`)\]]+")
PATH = re.compile(
    r"(?<![\w:/.~-])(?:~|\.\.?)?/(?:[\w.@+-]+/)+[\w.@+-]*"  # /abs/path, ~/path, ./rel/path
    r"|(?<![\w/.-])[\w-]+(?:/[\w.-]+)+\.[A-Za-z0-9]{1,6}\b"  # rel/path/file.ext
)
VERSION = re.compile(r"(?<![\w.])(?:v?\d+\.\d+\.\d+(?:[-.+][0-9A-Za-z]+)*|v\d+\.\d+)(?!\w|\.\w)")
TITLE = re.compile(r"[\"“]([A-Z][^\"”\n]{3,100}?)[\"”]|\[([A-Z][^\]\n]{3,100})\]\((?:/|\./)[^)]*\)")
_TRAILING = ".,;:!?"


@dataclass(slots=True, frozen=True)
class Claim:
    """A checkable string found at ``[start, end)``; ``kind`` is path | version | url | title."""

    kind: str
    value: str
    start: int
    end: int


def _looks_like_title(text: str) -> bool:
    words = [w for w in re.split(r"\s+", text.strip()) if w]
    if len(words) < 2:
        return False
    capitalised = sum(1 for w in words if w[0].isupper() or not w[0].isalpha())
    return capitalised / len(words) >= 0.6


def extract_claims(text: str, kinds: set[str]) -> Iterator[Claim]:
    """Claims of the requested ``kinds`` in ``text``, in order of appearance per kind."""
    url_spans: list[tuple[int, int]] = []
    if "url" in kinds or "path" in kinds:
        for m in URL.finditer(text):
            value = m.group().rstrip(_TRAILING)
            url_spans.append((m.start(), m.start() + len(value)))
            if "url" in kinds:
                yield Claim("url", value, m.start(), m.start() + len(value))
    if "path" in kinds:
        for m in PATH.finditer(text):
            value = m.group().rstrip(_TRAILING)
            if len(value) < 4 or (value.count("/") < 2 and not value.startswith(("~", ".")) and "." not in value):
                continue
            if any(lo <= m.start() < hi for lo, hi in url_spans):
                continue
            yield Claim("path", value, m.start(), m.start() + len(value))
    if "version" in kinds:
        for m in VERSION.finditer(text):
            yield Claim("version", m.group(), m.start(), m.end())
    if "title" in kinds:
        for m in TITLE.finditer(text):
            group = 1 if m.group(1) is not None else 2
            value = m.group(group).strip()
            if _looks_like_title(value):
                yield Claim("title", value, m.start(group), m.start(group) + len(value))


def normalise(kind: str, value: str) -> str:
    """Comparison form of a claim: lower-case; URLs without fragment or trailing slash; paths
    without trailing slash."""
    value = value.strip().lower()
    if kind == "url":
        value = value.split("#")[0]
    return value.rstrip("/") if kind in ("url", "path") else value


@dataclass(slots=True)
class KnownFacts:
    """Normalised claim strings found in the KB and the corpus, by kind (titles included)."""

    by_kind: dict[str, set[str]] = field(
        default_factory=lambda: {k: set() for k in ("path", "version", "url", "title")}
    )

    @classmethod
    def from_sources(cls, texts: Iterable[str], titles: Iterable[str]) -> KnownFacts:
        """Extract every path, version and URL from ``texts``; ``titles`` are the citable titles."""
        facts = cls()
        for text in texts:
            for claim in extract_claims(text, {"path", "version", "url"}):
                facts.by_kind[claim.kind].add(normalise(claim.kind, claim.value))
        facts.by_kind["title"] = {normalise("title", t) for t in titles if t.strip()}
        return facts

    def knows(self, kind: str, value: str) -> bool:
        """Whether ``value`` (a claim of ``kind``) is backed by a source."""
        return normalise(kind, value) in self.by_kind.get(kind, set())
