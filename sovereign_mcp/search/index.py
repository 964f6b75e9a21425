"""The passage index: fitted once per corpus, queried many times.

Scoring (all weights from :class:`~sovereign_mcp.config.SearchSettings`): each passage scores
``body + boost_headings * headings`` over its own text and heading path, plus its article's
``boost_title * title + boost_tags * tags + boost_description * description``. An article ranks by
its best passage, which is the passage cited for it.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from sovereign_mcp.config import SearchSettings
from sovereign_mcp.corpus.models import Article, Corpus, Passage, PassageTable
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
                article.passages = [Passage((), "", article.description, article.title)]
        counts = np.fromiter((len(a.passages) for a in articles), dtype=np.int64, count=len(articles))
        self.starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self.passage_article = np.repeat(np.arange(len(articles), dtype=np.int32), counts)
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
        body_docs, heading_docs = [], []
        for passage in (p for a in articles for p in a.passages):
            body_docs.append(analyze(passage.index_text))
            heading_docs.append(analyze(" ".join(passage.heading_path)))
        self.body = build(body_docs)
        self.headings = build(heading_docs)
        del body_docs, heading_docs
        self.title = build([analyze(a.title) for a in articles])
        self.tags = build([analyze(" ".join(a.tags)) for a in articles])
        self.description = build([analyze(a.description) for a in articles])
        for article in articles:  # the plain text was only needed to build the fields
            if isinstance(article.passages, PassageTable):
                article.passages.drop_index_texts()
            else:
                for passage in article.passages:
                    passage.index_text = ""

    @property
    def passages(self) -> Sequence[Passage]:
        """Every passage of every article, in article order (built on access)."""
        return _AllPassages(self.corpus.articles, self.starts, len(self.passage_article))

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
            return [Hit(self.articles[i], self.articles[i].passages[0], 0.0) for i in order]
        if not terms:
            return []
        s = self.settings
        passage_scores = np.zeros(len(self.passage_article), dtype=np.float32)
        self.body.accumulate(passage_scores, terms)
        self.headings.accumulate(passage_scores, terms, s.boost_headings)
        article_scores = np.zeros(len(self.articles), dtype=np.float32)
        self.title.accumulate(article_scores, terms, s.boost_title)
        self.tags.accumulate(article_scores, terms, s.boost_tags)
        self.description.accumulate(article_scores, terms, s.boost_description)
        best = self._best(passage_scores, article_scores)
        candidates = allowed[best[allowed] > 0] if allowed is not None else np.flatnonzero(best > 0)
        if sort == "date_desc":
            order = candidates[np.argsort(-self.dates[candidates], kind="stable")][:n]
        else:
            if len(candidates) > n:
                candidates = candidates[np.argpartition(-best[candidates], n - 1)[:n]] if n else candidates[:0]
            order = candidates[np.lexsort((candidates, -best[candidates]))]
        hits = []
        for i in order:
            passages = self.articles[i].passages
            lo = int(self.starts[i])
            total = passage_scores[lo : lo + len(passages)] + article_scores[i]
            hits.append(Hit(self.articles[i], passages[int(np.argmax(total))], float(best[i])))
        return hits

    def _best(self, passage_scores: np.ndarray, article_scores: np.ndarray) -> np.ndarray:
        """Per article, the score of its best passage: ``max(passage_score) + article_score``.

        All weights are positive, so a passage scores above zero only if it holds a query term, and
        a query usually reaches a few percent of the passages: the maximum per article is taken over
        those alone (``maximum.at``), or over all passages (``maximum.reduceat``) when a query
        reaches many. Rounding is monotonic, so this equals the maximum of ``passage + article``
        over an article's passages, bit for bit.
        """
        hit = np.flatnonzero(passage_scores > 0)
        if 4 * len(hit) > len(passage_scores):
            return np.maximum.reduceat(passage_scores, self.starts) + article_scores
        best_passage = np.zeros_like(article_scores)
        np.maximum.at(best_passage, self.passage_article[hit], passage_scores[hit])
        return best_passage + article_scores

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


class _AllPassages(Sequence[Passage]):
    """Read-only view of all passages of ``articles`` in order; ``starts[i]`` is article ``i``'s first."""

    __slots__ = ("_articles", "_len", "_starts")

    def __init__(self, articles: list[Article], starts: np.ndarray, length: int) -> None:
        self._articles, self._starts, self._len = articles, starts, length

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(self._len))]
        k = range(self._len)[k]  # negative indexes; IndexError when out of range
        i = int(np.searchsorted(self._starts, k, side="right")) - 1
        return self._articles[i].passages[k - int(self._starts[i])]

    def __iter__(self):
        for article in self._articles:
            yield from article.passages
