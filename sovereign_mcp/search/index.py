"""The passage index: fitted once per corpus, queried many times.

Scoring (weights from :class:`~sovereign_mcp.config.SearchSettings`, defaults chosen on the tuning sets of
``benchmarks/search_quality.py``): two BM25 stages over the same query terms,

* ``passage``: each passage's own text (``+ boost_headings *`` its heading path); an article takes the
  score of its best passage;
* ``article``: the whole article (title and body, its own document statistics), ``+ boost_title * title
  + boost_tags * tags + boost_description * description``;

each divided by its maximum over the query's candidates and blended,
``passage_weight * P / max P + (1 - passage_weight) * A / max A``. With a dense backend, the top
``dense_candidates`` articles are then re-ranked: ``(1 - dense_weight) * lexical + dense_weight * cosine``
(best passage cosine, each normalised per query). The passage cited for an article is its best passage by
BM25 with each query term re-weighted by its rarity among that article's passages (plus the dense cosine
when that stage ran).
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from sovereign_mcp.config import SearchSettings
from sovereign_mcp.corpus.models import Article, Corpus, Passage, PassageTable
from sovereign_mcp.search.analyzer import Analyzer
from sovereign_mcp.search.embeddings import Embedder, EmbeddingError, embed_all
from sovereign_mcp.search.fields import FieldIndex

log = logging.getLogger(__name__)

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
    explain: dict[str, dict[str, float | int]] | None = None


class SearchIndex:
    """Immutable search structures over one loaded :class:`Corpus`."""

    def __init__(self, corpus: Corpus, settings: SearchSettings, built_at: datetime,
                 embedder: Embedder | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        """Fit every field on ``corpus``; with ``embedder``, also embed every passage (``progress(done, total)``).

        Raises:
            EmbeddingError: the embedder failed while indexing.
        """
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
        self.counts = counts  # passages per article
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

        def build(docs: Sequence[list[str]], boost: float = 1.0) -> FieldIndex:
            # A field whose boost is 0 never scores: an empty one keeps the cache and memory small.
            return FieldIndex.build(docs if boost else [[] for _ in docs], s.weighting, s.k1, s.b)

        self.body = build([analyze(p.index_text) for a in articles for p in a.passages])
        self.headings = build([analyze(" ".join(p.heading_path)) for a in articles for p in a.passages],
                              s.boost_headings)
        # Whole-article field: title and the full Markdown body (code included), like whole-article BM25.
        self.whole = build([analyze(f"{a.title}\n{a.body}") for a in articles])
        self.title = build([analyze(a.title) for a in articles], s.boost_title)
        self.tags = build([analyze(" ".join(a.tags)) for a in articles], s.boost_tags)
        self.description = build([analyze(a.description) for a in articles], s.boost_description)
        self.embedder: Embedder | None = None
        self.embedding_model: str | None = None
        self.vectors = np.zeros((0, 0), dtype=np.int8)  # int8 codes per passage; row ~= codes * vector_scale
        self.vector_scale = np.zeros(0, dtype=np.float16)
        if embedder is not None:
            texts = [_embedding_text(a, p) for a in articles for p in a.passages]
            self.vectors, self.vector_scale = embed_all(embedder, texts, progress=progress)
            self.embedding_model = embedder.name
            self.embedder = embedder
        for article in articles:  # the plain text was only needed to build the fields
            if isinstance(article.passages, PassageTable):
                article.passages.drop_index_texts()
            else:
                for passage in article.passages:
                    passage.index_text = ""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["embedder"] = None  # a live model or HTTP client: attached again after loading
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def attach_embedder(self, embedder: Embedder | None) -> None:
        """Use ``embedder`` for query vectors; ignored (dense stage off, warning logged) when its model is not
        the one the passages were embedded with."""
        if embedder is not None and embedder.name != self.embedding_model:
            log.warning("embedding model %s differs from the index's (%s): dense re-rank off until a rebuild",
                        embedder.name, self.embedding_model)
            embedder = None
        self.embedder = embedder

    def _dense_ready(self) -> bool:
        return self.embedder is not None and self.settings.dense_weight > 0 and len(self.vectors) > 0

    def _embed_query(self, query: str) -> np.ndarray | None:
        """The query's vector, or ``None`` (logged) when the backend fails: search then stays lexical."""
        assert self.embedder is not None
        try:
            return self.embedder.embed([query])[0]
        except EmbeddingError as exc:
            log.warning("dense re-rank skipped for this query: %s", exc)
            return None

    def _dense_scores(self, candidates: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cosine of ``query`` with every passage of ``candidates``: ``(cosines, offsets, best)``, where candidate
        ``j``'s passages are ``cosines[offsets[j] : offsets[j] + its passage count]`` and ``best[j]`` is their
        maximum. The int8 rows are widened to float32 for one small mat-vec."""
        counts = self.counts[candidates]
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rows = np.repeat(self.starts[candidates] - offsets, counts) + np.arange(int(counts.sum()))
        cos = (self.vectors[rows].astype(np.float32) @ query.astype(np.float32)) * self.vector_scale[rows]
        best = np.maximum.reduceat(cos, offsets) if len(cos) else np.zeros(0, dtype=np.float32)
        return cos, offsets, best.astype(np.float32)

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
        self, query: str = "", tag: str | None = None, sort: SortOrder = "relevance", n: int = 5,
        explain: bool = False,
    ) -> list[Hit]:
        """Top ``n`` articles for ``query``, each with its best passage.

        An empty query lists the newest articles (citing their opening passage). ``tag`` keeps only
        articles carrying that tag (case-insensitive); ``sort="date_desc"`` orders the matching
        articles newest first instead of by score. ``explain`` fills :attr:`Hit.explain` with each
        stage's score and rank.
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
        if not terms or n == 0:
            return []
        s = self.settings
        passage_scores = np.zeros(len(self.passage_article), dtype=np.float32)
        self.body.accumulate(passage_scores, terms)
        self.headings.accumulate(passage_scores, terms, s.boost_headings)
        article_scores = np.zeros(len(self.articles), dtype=np.float32)
        self.whole.accumulate(article_scores, terms)
        self.title.accumulate(article_scores, terms, s.boost_title)
        self.tags.accumulate(article_scores, terms, s.boost_tags)
        self.description.accumulate(article_scores, terms, s.boost_description)
        best_passage = self._best_passage(passage_scores)
        candidates = np.flatnonzero(article_scores > 0) if allowed is None else allowed[article_scores[allowed] > 0]
        if not len(candidates):
            return []
        stages = {"passage": best_passage[candidates], "article": article_scores[candidates]}
        w = s.passage_weight
        final = w * _per_query(stages["passage"]) + (1.0 - w) * _per_query(stages["article"])
        stages["lexical"] = final
        dense_cos: tuple[np.ndarray, np.ndarray] | None = None  # (cosines, offsets) of the candidates' passages
        if sort == "relevance" and self._dense_ready():
            keep = _top(final, max(n, s.dense_candidates))
            candidates, final = candidates[keep], final[keep]
            stages = {k: v[keep] for k, v in stages.items()}
            query_vector = self._embed_query(query)
            if query_vector is not None:
                cos, offsets, dense_best = self._dense_scores(candidates, query_vector)
                dense_cos = (cos, offsets)
                stages["dense"] = dense_best
                d = s.dense_weight
                final = (1.0 - d) * _per_query(final) + d * _per_query(np.maximum(dense_best, 0.0))
        if sort == "date_desc":
            order = np.argsort(-self.dates[candidates], kind="stable")[:n]
        else:
            order = _top(final, n)
            order = order[np.lexsort((candidates[order], -final[order]))]
        ranks = {k: _ranks(v) for k, v in stages.items()} if explain else {}
        hits = []
        citations = self._citation_scores(terms, candidates[order])
        for j, within in zip(order, citations, strict=True):
            i = int(candidates[j])
            count = int(self.counts[i])
            if dense_cos is not None:
                offset = int(dense_cos[1][j])
                within = within + s.dense_weight * dense_cos[0][offset : offset + count]
            details = None
            if explain:
                details = {k: {"score": round(float(stages[k][j]), 4), "rank": int(ranks[k][j])} for k in stages}
            passage = self.articles[i].passages[int(np.argmax(within))]
            hits.append(Hit(self.articles[i], passage, float(final[j]), details))
        return hits

    def _citation_scores(self, terms: dict[str, float], articles: np.ndarray) -> list[np.ndarray]:
        """For each of ``articles``, how well each of its passages answers the query, scaled to a maximum of
        1: the passage's BM25 with each query term weighted again by how rare the term is among this
        article's passages (``ln(1 + (n - df + 0.5) / (df + 0.5))`` over the article's ``n`` passages).

        The terms that name an article's topic occur in most of its passages (and densely in its
        introduction); the words that locate the answer occur in few. Plain BM25 cited the introduction
        too often on fresh questions: passage hit on the tuning sets rose from 0.65 to 0.75 (jvns) and
        0.83 to 0.85 (til) with the article-local weight.
        """
        counts = self.counts[articles]
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        units = np.repeat(self.starts[articles] - offsets, counts) + np.arange(int(counts.sum()))
        if not len(units):
            return []
        weights = self.body.unit_terms(terms, units)  # (terms, all passages of these articles)
        df = np.add.reduceat((weights > 0).astype(np.float32), offsets, axis=1)  # (terms, articles)
        local = np.log1p((counts - df + 0.5) / (df + 0.5))
        scores = (np.repeat(local, counts, axis=1) * weights).sum(axis=0)
        top = np.repeat(np.maximum.reduceat(scores, offsets), counts)
        scores = scores / np.where(top > 0, top, 1.0)
        return np.split(scores, offsets[1:])

    def _best_passage(self, passage_scores: np.ndarray) -> np.ndarray:
        """Per article, the score of its best passage (``max`` over its passages).

        All weights are positive, so a passage scores above zero only if it holds a query term, and
        a query usually reaches a few percent of the passages: the maximum per article is taken over
        those alone (``maximum.at``), or over all passages (``maximum.reduceat``) when a query
        reaches many.
        """
        hit = np.flatnonzero(passage_scores > 0)
        if 4 * len(hit) > len(passage_scores):
            return np.maximum.reduceat(passage_scores, self.starts)
        best = np.zeros(len(self.articles), dtype=np.float32)
        np.maximum.at(best, self.passage_article[hit], passage_scores[hit])
        return best

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


def _embedding_text(article: Article, passage: Passage) -> str:
    return " ".join((article.title, *passage.heading_path, passage.index_text))


def _per_query(scores: np.ndarray) -> np.ndarray:
    """``scores`` divided by their maximum (all zeros stay zeros), so stages on different scales can be mixed."""
    top = float(scores.max()) if len(scores) else 0.0
    return scores / top if top > 0 else scores


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest ``scores`` (unordered)."""
    if len(scores) <= k:
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score, highest first (ties by position)."""
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


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
