"""Text analysis shared by indexing and querying: tokenise, drop English stop words, stem.

Tokens are runs of letters and digits (``--mem-fraction-static`` -> ``mem``, ``fraction``,
``static``; ``sm_121a`` -> ``sm``, ``121a``), lower-cased, minus scikit-learn's English stop-word
list, reduced with the Snowball English stemmer (PyStemmer), so "crashes", "crashed" and "crashing"
meet at "crash".
"""

from __future__ import annotations

import re
from functools import cached_property

import Stemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


class Analyzer:
    """Callable ``text -> list[str]`` of stemmed terms. Instances are cheap and picklable."""

    def __init__(self, stem: bool = True) -> None:
        self.stem = stem

    @cached_property
    def _stemmer(self) -> Stemmer.Stemmer:
        return Stemmer.Stemmer("english", 100_000)

    def __getstate__(self) -> dict[str, bool]:
        return {"stem": self.stem}

    def __setstate__(self, state: dict[str, bool]) -> None:
        self.stem = state["stem"]

    def __call__(self, text: str) -> list[str]:
        words = [w for w in _TOKEN.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]
        return self._stemmer.stemWords(words) if self.stem else words
