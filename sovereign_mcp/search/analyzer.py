"""Text analysis shared by indexing and querying: tokenise, drop English stop words, stem.

Tokens are runs of letters and digits (``--mem-fraction-static`` -> ``mem``, ``fraction``,
``static``; ``sm_121a`` -> ``sm``, ``121a``), lower-cased, minus a short English stop-word list, reduced
with the Snowball English stemmer (PyStemmer), so "crashes", "crashed" and "crashing" meet at "crash".

The stop words are Lucene's English set (``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``, 33 function
words; apache/lucene ``lucene/analysis/common/src/java/org/apache/lucene/analysis/en/EnglishAnalyzer.java``).
scikit-learn's 318-word list was used before; it drops words that carry meaning in technical writing
("system", "call", "find", "empty", "first", "show", "keep"), which cost whole-article recall on fresh
questions (``benchmarks/search_quality.py``, tuning sets).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import Any

import Stemmer

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)

ENGLISH_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "was", "will", "with",
})


class Analyzer:
    """Callable ``text -> list[str]`` of stemmed terms. Instances are cheap and picklable.

    ``stop_words`` defaults to :data:`ENGLISH_STOP_WORDS`.
    """

    def __init__(self, stem: bool = True, stop_words: Iterable[str] | None = None) -> None:
        self.stem = stem
        self.stop_words = frozenset(ENGLISH_STOP_WORDS if stop_words is None else stop_words)

    @cached_property
    def _stemmer(self) -> Stemmer.Stemmer:
        return Stemmer.Stemmer("english", 100_000)

    def __getstate__(self) -> dict[str, Any]:
        return {"stem": self.stem, "stop_words": sorted(self.stop_words)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.stem = state["stem"]
        stop_words = state.get("stop_words")
        self.stop_words = frozenset(ENGLISH_STOP_WORDS if stop_words is None else stop_words)

    def __call__(self, text: str) -> list[str]:
        stop = self.stop_words
        words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
        return self._stemmer.stemWords(words) if self.stem else words
