"""Deterministic synthetic blog corpus for the speed benchmark (``benchmarks/search_speed.py``).

``write_corpus(folder, n_articles, seed)`` writes ``n_articles`` Markdown files with YAML front
matter (``title``, ``date`` in the past, ``tags`` from a pool of 200, ``description``), each with
8-12 ``## `` sections (mean 10) of one paragraph. Words come from a Zipf-distributed vocabulary
(exponent 1.0): ~150 common English words (stop words included, as in real prose) at the top
ranks, then 30,000 generated pronounceable words. Every paragraph has 40-70 words and at least 250
characters. The loader merges short paragraphs only under the same heading
(``search.min_passage_chars``), so each section stays exactly one passage: 20,000 articles give
~200,000 passages. The same ``(n_articles, seed)`` always gives the same files.

Run directly to write a corpus: ``python benchmarks/_synthetic.py OUT_DIR [--articles N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

_COMMON_TEXT = """
the of and to a in is it you that he was for on are with as his they be at one have this from or
had by not word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after
back little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large spell add
even land here must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father server memory model
"""
COMMON_WORDS = _COMMON_TEXT.split()

ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
          "br", "ch", "cl", "dr", "fl", "gr", "kr", "pl", "pr", "sh", "sk", "sl", "sp", "st", "th", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
CODAS = ["", "", "", "n", "r", "s", "l", "m", "t", "x", "nd", "rk", "st", "ng"]

N_GENERATED = 30_000
N_TAGS = 200
MIN_PARAGRAPH_CHARS = 250
DATE_FROM = datetime(2005, 1, 1, tzinfo=UTC)
DATE_TO = datetime(2024, 12, 31, tzinfo=UTC)


def _pseudo_words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    words: list[str] = []
    seen = set(taken)
    while len(words) < count:
        syllables = rng.choice((1, 2, 2, 2, 3))
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)) + rng.choice(CODAS)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Vocabulary:
    """Ranked words with Zipf sampling (``p(rank r) ~ 1 / r**exponent``)."""

    def __init__(self, seed: int, n_generated: int = N_GENERATED, exponent: float = 1.0) -> None:
        rng = random.Random(seed)
        common = list(dict.fromkeys(COMMON_WORDS))
        self.words = np.array(common + _pseudo_words(rng, n_generated, set(common)), dtype=object)
        self.n_common = len(common)
        weights = 1.0 / np.arange(1, len(self.words) + 1, dtype=np.float64) ** exponent
        self.cdf = np.cumsum(weights / weights.sum())
        self.tags = _pseudo_words(rng, N_TAGS, set(self.words.tolist()))

    def sample(self, rng: np.random.Generator, n: int, content_only: bool = False) -> list[str]:
        """``n`` words drawn by Zipf rank; ``content_only`` skips the common-English top ranks."""
        if content_only:
            lo = self.cdf[self.n_common - 1]
            draws = lo + rng.random(n) * (1.0 - lo)
        else:
            draws = rng.random(n)
        ranks = np.minimum(np.searchsorted(self.cdf, draws, side="right"), len(self.words) - 1)
        return self.words[ranks].tolist()


def _paragraph(vocab: Vocabulary, rng: np.random.Generator) -> str:
    words = vocab.sample(rng, int(rng.integers(40, 71)))
    while len(" ".join(words)) < MIN_PARAGRAPH_CHARS:
        words += vocab.sample(rng, 5)
    # Sentence breaks every 8-16 words, so the text reads like prose to the Markdown parser.
    out, start = [], 0
    while start < len(words):
        end = min(len(words), start + int(rng.integers(8, 17)))
        sentence = " ".join(words[start:end])
        out.append(sentence[0].upper() + sentence[1:] + ".")
        start = end
    return " ".join(out)


def _title(words: list[str]) -> str:
    return " ".join(w.capitalize() for w in words)


def article_text(vocab: Vocabulary, rng: np.random.Generator, tag_cdf: np.ndarray) -> tuple[str, str, datetime]:
    """``(title, markdown_with_front_matter, date)`` of one synthetic article."""
    title = _title(vocab.sample(rng, int(rng.integers(3, 8)), content_only=True))
    span = (DATE_TO - DATE_FROM).total_seconds()
    date = DATE_FROM + timedelta(seconds=int(rng.random() * span))
    n_tags = int(rng.integers(1, 5))
    tag_ids = sorted(set(np.searchsorted(tag_cdf, rng.random(n_tags), side="right").tolist()))
    tags = [vocab.tags[min(i, N_TAGS - 1)] for i in tag_ids]
    description = " ".join(vocab.sample(rng, int(rng.integers(10, 21)))).capitalize() + "."
    lines = [
        "---",
        f'title: "{title}"',
        f"date: {date.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"tags: [{', '.join(tags)}]",
        f'description: "{description}"',
        "---",
        "",
    ]
    for _ in range(int(rng.integers(8, 13))):
        heading = _title(vocab.sample(rng, int(rng.integers(2, 6)), content_only=True))
        lines += [f"## {heading}", "", _paragraph(vocab, rng), ""]
    return title, "\n".join(lines), date


def write_corpus(folder: Path, n_articles: int, seed: int = 1234) -> int:
    """Write ``n_articles`` synthetic articles under ``folder/<year>/``; returns the bytes written."""
    vocab = Vocabulary(seed)
    rng = np.random.default_rng(seed)
    tag_weights = 1.0 / np.arange(1, N_TAGS + 1, dtype=np.float64) ** 0.8
    tag_cdf = np.cumsum(tag_weights / tag_weights.sum())
    total = 0
    made: set[Path] = set()
    for i in range(n_articles):
        title, text, date = article_text(vocab, rng, tag_cdf)
        stem = "-".join(title.lower().split()[:4])
        sub = folder / str(date.year)
        if sub not in made:
            sub.mkdir(parents=True, exist_ok=True)
            made.add(sub)
        data = text.encode("utf-8")
        (sub / f"{i:06d}-{stem}.md").write_bytes(data)
        total += len(data)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic benchmark corpus.")
    parser.add_argument("out", type=Path, help="folder to write into (created)")
    parser.add_argument("--articles", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    written = write_corpus(args.out, args.articles, args.seed)
    print(f"{args.articles} articles, {written / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
