"""The passage index: fitted once per corpus, queried many times.

Scoring (all weights from :class:`~sovereign_mcp.config.SearchSettings`): each passage scores
``body + boost_headings * headings`` over its own text and heading path, plus its article's
``boost_title * title + boost_tags * tags + boost_description * description``. An article ranks by
its best passage, which is the passage cited for it.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from sovereign_mcp.config import SearchSettings
from sovereign_mcp.corpus.models import Article, Corpus, Passage
from sovereign_mcp.search.analyzer import Analyzer
from sovereign_mcp.search.fields import FieldIndex

SortOrder = Literal["relevance", "date_desc"]
TagOrder = Literal["count_desc", "alpha"]


class ArticleNotFound(LookupError):
    """No article has the requested slug; ``suggestions`` holds close slugs (possibly empty)."""

    def __init__(self, slug: str, suggestions: list[str]) -> None:
        self.slug = slug
        self.suggestions = suggestions
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"no article with slug {slug!r}{hint}")


@dataclass(slots=True, frozen=True)
class Hit:
    """One ranked result: the article, the cited passage and the score (0.0 for listings)."""

    article: Article
    passage: Passage
    score: float


class SearchIndex:
    """Immutable search structures over one loaded :class:`Corpus`."""

    def __init__(self, corpus: Corpus, settings: SearchSettings, built_at: datetime) -> None:
        self.corpus = corpus
        self.settings = settings
        self.built_at = built_at
        self.analyzer = Analyzer()
        articles = corpus.articles
        for article in articles:
            if not article.passages:  # code-only or empty body: cite the description / title
                article.passages.append(Passage((), "", article.description, article.title))
        counts = np.fromiter((len(a.passages) for a in articles), dtype=np.int64, count=len(articles))
        self.starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self.passage_article = np.repeat(np.arange(len(articles), dtype=np.int32), counts)
        self.passages: list[Passage] = [p for a in articles for p in a.passages]
        self.dates = np.array([a.date.timestamp() for a in articles], dtype=np.float64)
        self.by_slug = {a.slug: i for i, a in enumerate(articles)}
        self.by_tag: dict[str, np.ndarray] = {}
        tag_lists: dict[str, list[int]] = {}
        for i, article in enumerate(articles):
            for tag in {t.lower() for t in article.tags}:
                tag_lists.setdefault(tag, []).append(i)
        self.by_tag = {t: np.array(ids, dtype=np.int32) for t, ids in tag_lists.items()}

        s, analyze = settings, self.analyzer
        build = lambda docs: FieldIndex.build(docs, s.weighting, s.k1, s.b)  # noqa: E731
        self.body = build([analyze(p.index_text) for p in self.passages])
        self.headings = build([analyze(" ".join(p.heading_path)) for p in self.passages])
        self.title = build([analyze(a.title) for a in articles])
        self.tags = build([analyze(" ".join(a.tags)) for a in articles])
        self.description = build([analyze(a.description) for a in articles])
        for passage in self.passages:
            passage.index_text = ""

    @property
    def articles(self) -> list[Article]:
        return self.corpus.articles

    def article(self, slug: str) -> Article:
        """The article with ``slug``.

        Raises:
            ArticleNotFound: unknown slug, with up to 3 close matches as suggestions.
        """
        found = self.by_slug.get(slug)
        if found is None:
            found = self.by_slug.get(slug.strip().strip("/").lower())
        if found is not None:
            return self.articles[found]
        slugs = list(self.by_slug)
        close = difflib.get_close_matches(slug.lower(), slugs, n=3, cutoff=0.6)
        close += [c for c in slugs if slug and slug.lower() in c and c not in close][: 3 - len(close)]
        raise ArticleNotFound(slug, close)

    def search(
        self, query: str = "", tag: str | None = None, sort: SortOrder = "relevance", n: int = 5
    ) -> list[Hit]:
        """Top ``n`` articles for ``query``, each with its best passage.

        An empty query lists the newest articles (citing their opening passage). ``tag`` keeps only
        articles carrying that tag (case-insensitive); ``sort="date_desc"`` orders the matching
        articles newest first instead of by score.
        """
        n = max(0, n)
        allowed: np.ndarray | None = None
        if tag:
            allowed = self.by_tag.get(tag.strip().lower(), np.empty(0, dtype=np.int32))
        terms = Counter(self.analyzer(query))
        if not query.strip():
            ids = allowed if allowed is not None else np.arange(len(self.articles))
            order = ids[np.argsort(-self.dates[ids], kind="stable")][:n]
            return [Hit(self.articles[i], self.passages[self.starts[i]], 0.0) for i in order]
        if not terms:
            return []
        s = self.settings
        passage_scores = np.zeros(len(self.passages), dtype=np.float32)
        self.body.accumulate(passage_scores, terms)
        self.headings.accumulate(passage_scores, terms, s.boost_headings)
        article_scores = np.zeros(len(self.articles), dtype=np.float32)
        self.title.accumulate(article_scores, terms, s.boost_title)
        self.tags.accumulate(article_scores, terms, s.boost_tags)
        self.description.accumulate(article_scores, terms, s.boost_description)
        total = passage_scores + article_scores[self.passage_article]
        best = np.maximum.reduceat(total, self.starts) if len(self.starts) else total[:0]
        candidates = allowed[best[allowed] > 0] if allowed is not None else np.flatnonzero(best > 0)
        if sort == "date_desc":
            order = candidates[np.argsort(-self.dates[candidates], kind="stable")][:n]
        else:
            if len(candidates) > n:
                candidates = candidates[np.argpartition(-best[candidates], n - 1)[:n]] if n else candidates[:0]
            order = candidates[np.lexsort((candidates, -best[candidates]))]
        hits = []
        for i in order:
            lo = int(self.starts[i])
            hi = lo + len(self.articles[i].passages)
            k = lo + int(np.argmax(total[lo:hi]))
            hits.append(Hit(self.articles[i], self.passages[k], float(best[i])))
        return hits

    def tag_counts(self, sort: TagOrder = "count_desc") -> list[tuple[str, int]]:
        """``(tag, article_count)`` pairs, most used first (ties alphabetical) or alphabetical.

        Tags are counted case-insensitively (as the search filter matches them), shown in the
        spelling first seen."""
        spelling: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for article in self.articles:
            for tag in {t.lower(): t for t in article.tags}.values():
                counts[spelling.setdefault(tag.lower(), tag)] += 1
        if sort == "alpha":
            return sorted(counts.items(), key=lambda kv: (kv[0].lower(), kv[0]))
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].lower()))
