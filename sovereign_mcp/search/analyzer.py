"""Text analysis shared by indexing and querying: tokenise, drop English stop words, stem.

Tokens are runs of letters and digits (``--mem-fraction-static`` -> ``mem``, ``fraction``,
``static``; ``sm_121a`` -> ``sm``, ``121a``), lower-cased, minus scikit-learn's English stop-word
list, reduced with the Snowball English stemmer (PyStemmer), so "crashes", "crashed" and "crashing"
meet at "crash".

The stop-word list is taken from scikit-learn when an analyzer is created (at index build time) and
travels with the pickled analyzer, so a server loading a cached index never imports scikit-learn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import Any

import Stemmer

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def english_stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (imports scikit-learn, ~70 MB: call at build time only)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class Analyzer:
    """Callable ``text -> list[str]`` of stemmed terms. Instances are cheap and picklable.

    ``stop_words`` defaults to :func:`english_stop_words`.
    """

    def __init__(self, stem: bool = True, stop_words: Iterable[str] | None = None) -> None:
        self.stem = stem
        self.stop_words = frozenset(english_stop_words() if stop_words is None else stop_words)

    @cached_property
    def _stemmer(self) -> Stemmer.Stemmer:
        return Stemmer.Stemmer("english", 100_000)

    def __getstate__(self) -> dict[str, Any]:
        return {"stem": self.stem, "stop_words": sorted(self.stop_words)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.stem = state["stem"]
        stop_words = state.get("stop_words")
        self.stop_words = frozenset(english_stop_words() if stop_words is None else stop_words)

    def __call__(self, text: str) -> list[str]:
        stop = self.stop_words
        words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
        return self._stemmer.stemWords(words) if self.stem else words
