"""Known-item search quality: MRR@10 and Recall@5 on real corpora, against two baselines.

Each known item is a query paraphrasing one passage of one article (benchmarks/data/known_items_*.json,
written by hand for this project). Systems compared in the same run, on the same loaded articles:

* ``sovereign-mcp``: this project's passage index with the default settings (or ``--set k=v``).
* ``bm25s+stemming``: bm25s (Lucene BM25) with PyStemmer's English stemmer over whole articles
  (title + body), the strongest library baseline measured in REFERENCE.md.
* ``MVP (refit per query)``: the operator's original ranking re-implemented: scikit-learn
  ``TfidfVectorizer`` fitted on every query over title + description + tags + the first 500 body
  characters, ranked by cosine similarity.

Usage: ``python benchmarks/search_quality.py [--corpora ../shared/corpora] [--tune]``. Exit 1 when
sovereign-mcp ranks below bm25s+stemming on MRR@10 for any corpus.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sovereign_mcp.config import SearchSettings
from sovereign_mcp.corpus import Article, load_corpus
from sovereign_mcp.search.index import SearchIndex

HERE = Path(__file__).resolve().parent
DEFAULT_CORPORA = HERE.parent.parent / "shared" / "corpora"
Ranker = Callable[[str], list[int]]  # query -> article indexes, best first


def known_items(name: str) -> list[dict[str, str]]:
    return json.loads((HERE / "data" / f"known_items_{name}.json").read_text())["items"]


def evaluate(rank: Ranker, items: list[dict[str, str]], source_to_id: dict[str, int]) -> dict[str, float]:
    """MRR@10, Recall@5 and mean latency (ms) of ``rank`` over ``items``."""
    reciprocal, hits5, elapsed = [], 0, 0.0
    for item in items:
        target = source_to_id[item["path"]]
        started = time.perf_counter()
        ranked = rank(item["query"])[:10]
        elapsed += time.perf_counter() - started
        position = ranked.index(target) + 1 if target in ranked else 0
        reciprocal.append(1.0 / position if position else 0.0)
        hits5 += 1 if 0 < position <= 5 else 0
    return {"mrr10": float(np.mean(reciprocal)), "recall5": hits5 / len(items), "ms": 1000 * elapsed / len(items)}


def ours(articles: list[Article], settings: SearchSettings) -> Ranker:
    index = SearchIndex(_copy(articles), settings, datetime.now(UTC))
    ids = {a.source: i for i, a in enumerate(articles)}
    return lambda q: [ids[h.article.source] for h in index.search(q, n=10)]


def _copy(articles: list[Article]) -> object:
    """A fresh Corpus over copies of the passages (building an index consumes their index_text)."""
    from dataclasses import replace

    from sovereign_mcp.corpus.models import Corpus

    copies = [replace(a, passages=[replace(p) for p in a.passages]) for a in articles]
    return Corpus(articles=copies, warnings=[], roots=[])


def bm25s_stemmed(articles: list[Article]) -> Ranker:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    docs = [f"{a.title}\n{a.body}" for a in articles]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)

    def rank(query: str) -> list[int]:
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
        if not tokens.vocab:
            return []
        results, scores = retriever.retrieve(tokens, k=min(10, len(docs)), show_progress=False)
        return [int(r) for r, s in zip(results[0], scores[0], strict=True) if s > 0]

    return rank


def mvp_refit(articles: list[Article]) -> Ranker:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    docs = [f"{a.title} {a.description} {' '.join(a.tags)} {a.body[:500]}" for a in articles]

    def rank(query: str) -> list[int]:
        vectorizer = TfidfVectorizer(stop_words="english")
        matrix = vectorizer.fit_transform(docs)
        scores = cosine_similarity(vectorizer.transform([query]), matrix).ravel()
        top = np.argsort(-scores, kind="stable")[:10]
        return [int(i) for i in top if scores[i] > 0]

    return rank


def reload_with(corpora: Path, name: str, settings: SearchSettings) -> list[Article]:
    return load_corpus([corpora / name], min_passage_chars=settings.min_passage_chars).articles


def tune(corpora: Path, names: list[str]) -> None:
    """Grid-search the ranking knobs; prints the mean MRR@10 over the corpora, best last."""
    grid = {
        "min_passage_chars": [600, 800, 1200],
        "boost_title": [0.3, 0.5],
        "boost_headings": [0.2, 0.3],
        "boost_tags": [0.4],
        "boost_description": [0.3],
        "b": [0.75, 0.9],
        "k1": [0.9, 1.2, 1.6],
    }
    items = {n: known_items(n) for n in names}
    cache: dict[tuple[str, int], list[Article]] = {}
    results = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        settings = SearchSettings(**params)
        scores = []
        for name in names:
            key = (name, settings.min_passage_chars)
            if key not in cache:
                cache[key] = reload_with(corpora, name, settings)
            arts = cache[key]
            ids = {a.source: i for i, a in enumerate(arts)}
            scores.append(evaluate(ours(arts, settings), items[name], ids)["mrr10"])
        results.append((float(np.mean(scores)), scores, params))
    for mean, scores, params in sorted(results, key=lambda r: r[0])[-10:]:
        print(f"{mean:.4f} {[round(s, 4) for s in scores]} {params}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA, help="folder holding jvns/ and til/")
    parser.add_argument("--names", nargs="+", default=["jvns", "til"])
    parser.add_argument("--tune", action="store_true", help="grid-search ranking settings instead")
    args = parser.parse_args(argv)
    if args.tune:
        tune(args.corpora, args.names)
        return 0
    settings = SearchSettings()
    failed = False
    print(f"{'corpus':6} {'system':24} {'MRR@10':>7} {'R@5':>6} {'ms/query':>9}")
    for name in args.names:
        items = known_items(name)
        articles = reload_with(args.corpora, name, settings)
        ids = {a.source: i for i, a in enumerate(articles)}
        rows = {
            "sovereign-mcp": evaluate(ours(articles, settings), items, ids),
            "bm25s+stemming": evaluate(bm25s_stemmed(articles), items, ids),
            "MVP (refit per query)": evaluate(mvp_refit(articles), items, ids),
        }
        for system, row in rows.items():
            print(f"{name:6} {system:24} {row['mrr10']:7.3f} {row['recall5']:6.3f} {row['ms']:9.2f}")
        verdict = rows["sovereign-mcp"]["mrr10"] >= rows["bm25s+stemming"]["mrr10"]
        failed |= not verdict
        print(f"{name:6} target sovereign-mcp >= bm25s+stemming (MRR@10): {'PASS' if verdict else 'FAIL'}"
              f"  ({len(items)} known items, {len(articles)} articles)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
