"""Typed blog operations shared by the MCP tools, the ``/api/*`` routes and the CLI.

Argument types are declared once here (``Query``, ``Tag``, ...), so the MCP input schema and the
HTTP request validation enforce the same limits. Output models give MCP clients an
``outputSchema`` and the web widgets stable JSON.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sovereign_mcp.corpus.models import Article
from sovereign_mcp.search.index import Hit, SearchIndex, SortOrder, TagOrder

MAX_QUERY_CHARS = 1000
PASSAGE_DISPLAY_CHARS = 2400
MIN_BUDGET_CHARS = 1000  # room for the envelope and one hit
MIN_CUT_PASSAGE_CHARS = 120  # a passage shortened below this is left out instead
UPDATED_KEYS = ("lastmod", "updated", "modified", "last_modified")  # Hugo's lastmod, Jekyll/Eleventy's updated

Query = Annotated[
    str, Field(max_length=MAX_QUERY_CHARS, description="Words to look for; empty lists the newest articles.")
]
Tag = Annotated[str | None, Field(max_length=100, description="Only articles with this tag (case-insensitive).")]
Sort = Annotated[SortOrder, Field(description="'relevance' (best first) or 'date_desc' (newest first).")]
Count = Annotated[
    int | None, Field(ge=1, description="How many articles (default 5; capped at the server maximum, 20).")
]
Slug = Annotated[str, Field(min_length=1, max_length=300, description="Article slug, as returned by search_blog.")]
SectionRef = Annotated[
    str | None, Field(max_length=300, description="A heading anchor or heading text; returns only that section.")
]
Offset = Annotated[int, Field(ge=0, description="Character offset into the (section) text, for paging.")]
MaxChars = Annotated[
    int | None, Field(ge=100, le=200_000, description="Page size in characters (default: the server's).")
]
TagSort = Annotated[TagOrder, Field(description="'count_desc' (most used first) or 'alpha'.")]
Detail = Literal["passages", "titles"]
DetailArg = Annotated[Detail, Field(description="'passages' (cited passage text) or 'titles' (no text: cheaper).")]
Budget = Annotated[int | None, Field(ge=MIN_BUDGET_CHARS, le=1_000_000, description=(
    "Most characters for the whole answer (JSON); passages are shortened, then results left out, to fit. "
    "The answer says what it cut."))]
Explain = Annotated[bool, Field(description="Show each ranking stage's score and rank per hit.")]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class StageScore(_Out):
    score: float = Field(description="This stage's score (normalised stages: 0..1).")
    rank: int = Field(description="1-based rank of the article by this stage alone, among the candidates.")


class SearchHitOut(_Out):
    """One cited passage: where it is (``url`` ends in ``#anchor``) and what it says."""

    slug: str
    title: str
    url: str = Field(description="Public URL of the cited section, including the #anchor.")
    anchor: str = Field(description="Stable citation id: 'slug#heading-slug' (or 'slug' for the intro).")
    resource: str = Field(description="MCP resource URI of the whole article: blog://articles/{slug}.")
    date: str = Field(description="Publication date, ISO 8601.")
    updated: str | None = Field(description="Last update from the front matter (lastmod/updated), if any.")
    indexed_at: str = Field(description="When the index holding this hit was built, ISO 8601 UTC.")
    tags: list[str]
    score: float = Field(description="Relevance score (higher is better; 0 for listings).")
    heading_path: list[str] = Field(description="Enclosing headings, outermost first.")
    passage: str = Field(description="The cited passage, Markdown ('' with detail='titles').")
    passage_chars: int = Field(description="Length of the whole passage, characters.")
    passage_truncated: bool = Field(description="True when passage is shorter than passage_chars; read the rest "
                                                "with get_article(slug, section=<anchor after '#'>).")
    explain: dict[str, StageScore] | None = Field(None, description=(
        "With explain=true: per stage ('passage': best passage BM25, 'article': whole-article BM25, 'lexical': "
        "their normalised blend, 'dense': best passage cosine when the dense re-rank is on) score and rank."))


class SearchResults(_Out):
    """Ranked results of ``search_blog``."""

    query: str
    tag: str | None
    sort: SortOrder
    detail: Detail
    count: int
    results: list[SearchHitOut]
    indexed_at: str = Field(description="When the index was built, ISO 8601 UTC.")
    max_chars: int | None = Field(description="The caller's budget for the whole answer, characters.")
    truncated: bool = Field(description="True when the budget shortened passages or left results out.")
    omitted: int = Field(description="Results left out to stay within max_chars.")
    note: str | None = Field(description="What was shortened or left out, and how to get it.")


class SectionOut(_Out):
    level: int
    heading: str
    anchor: str


class ArticleOut(_Out):
    """An article's front matter and one page of its Markdown body (or of one section)."""

    slug: str
    title: str
    url: str
    date: str
    tags: list[str]
    description: str
    front_matter: dict[str, Any]
    sections: list[SectionOut]
    section: str | None = Field(description="Anchor of the returned section, if one was asked for.")
    content: str
    offset: int
    total_chars: int
    next_offset: int | None = Field(description="Pass as offset to read on; null at the end.")


class TagCount(_Out):
    tag: str
    count: int


class TagList(_Out):
    sort: TagOrder
    tags: list[TagCount]


class ArticleSummary(_Out):
    slug: str
    title: str
    url: str
    date: str
    tags: list[str]
    description: str


def _truncate(text: str, limit: int = PASSAGE_DISPLAY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def updated_of(article: Article) -> str | None:
    """The article's last-update date from its front matter (first of :data:`UPDATED_KEYS`), ISO 8601."""
    for key in UPDATED_KEYS:
        value = article.front_matter.get(key)
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def hit_out(hit: Hit, indexed_at: str = "", detail: Detail = "passages") -> SearchHitOut:
    """Convert an engine :class:`Hit` into its output model."""
    a, p = hit.article, hit.passage
    passage = _truncate(p.text) if detail == "passages" else ""
    explain = {k: StageScore(score=v["score"], rank=int(v["rank"])) for k, v in hit.explain.items()} \
        if hit.explain is not None else None
    return SearchHitOut(
        slug=a.slug,
        title=a.title,
        url=a.anchor_url(p.anchor),
        anchor=f"{a.slug}#{p.anchor}" if p.anchor else a.slug,
        resource=f"blog://articles/{a.slug}",
        date=a.date.isoformat(),
        updated=updated_of(a),
        indexed_at=indexed_at,
        tags=list(a.tags),
        score=round(hit.score, 4),
        heading_path=list(p.heading_path),
        passage=passage,
        passage_chars=len(p.text),
        passage_truncated=detail == "passages" and len(passage) < len(p.text),
        explain=explain,
    )


def fit_budget(hits: list[SearchHitOut], room: int) -> tuple[list[SearchHitOut], int, int]:
    """Keep ``hits`` within ``room`` characters of JSON: a passage that does not fit is shortened (to no less
    than :data:`MIN_CUT_PASSAGE_CHARS`), and the hits after the first one that cannot fit are left out.
    The first hit is always kept. Returns ``(kept, shortened, omitted)``."""
    kept: list[SearchHitOut] = []
    shortened = 0
    for position, hit in enumerate(hits):
        size = len(hit.model_dump_json()) + 1  # +1: the comma between results
        if size <= room:
            kept.append(hit)
            room -= size
            continue
        keep_chars = len(hit.passage) - (size - room) - 1
        if keep_chars >= MIN_CUT_PASSAGE_CHARS or not kept:
            cut = _truncate(hit.passage, max(keep_chars, 1)) if hit.passage else ""
            kept.append(hit.model_copy(update={"passage": cut, "passage_truncated": len(cut) < hit.passage_chars}))
            shortened += 1
        return kept, shortened, len(hits) - position - (1 if len(kept) > position else 0)
    return kept, shortened, 0


def _budget_note(shortened: int, omitted: int, max_chars: int) -> str | None:
    if not (shortened or omitted):
        return None
    parts = [f"{shortened} passage(s) shortened"] if shortened else []
    parts += [f"{omitted} result(s) left out"] if omitted else []
    return (f"{' and '.join(parts)} to fit max_chars={max_chars}; raise max_chars, use detail='titles', "
            f"or read a section with get_article(slug, section=...)")


def search_blog(index: SearchIndex, query: str = "", tag: str | None = None,
                sort: SortOrder = "relevance", n: int | None = None, detail: Detail = "passages",
                max_chars: int | None = None, explain: bool = False) -> SearchResults:
    """Run a search; ``n`` defaults to ``search.default_results`` and is capped at ``search.max_results``.

    ``max_chars`` bounds the JSON of the whole answer (see :func:`fit_budget`); ``note`` then says what was cut.
    """
    n = min(n or index.settings.default_results, index.settings.max_results)
    hits = index.search(query, tag=tag, sort=sort, n=n, explain=explain)
    indexed_at = index.built_at.isoformat()
    results = [hit_out(h, indexed_at, detail) for h in hits]
    shortened = omitted = 0
    if max_chars is not None:  # the envelope as it would be with the longest note
        envelope = SearchResults(query=query, tag=tag, sort=sort, detail=detail, count=len(results), results=[],
                                 indexed_at=indexed_at, max_chars=max_chars, truncated=True, omitted=len(results),
                                 note=_budget_note(len(results), len(results), max_chars))
        results, shortened, omitted = fit_budget(results, max_chars - len(envelope.model_dump_json()))
    note = _budget_note(shortened, omitted, max_chars) if max_chars is not None else None
    return SearchResults(query=query, tag=tag, sort=sort, detail=detail, count=len(results), results=results,
                         indexed_at=indexed_at, max_chars=max_chars, truncated=bool(shortened or omitted),
                         omitted=omitted, note=note)


def summary(article: Article) -> ArticleSummary:
    return ArticleSummary(slug=article.slug, title=article.title, url=article.url,
                          date=article.date.isoformat(), tags=list(article.tags),
                          description=article.description)


def get_article(index: SearchIndex, slug: str, section: str | None = None, offset: int = 0,
                max_chars: int | None = None) -> ArticleOut:
    """One page of an article (or of one of its sections).

    Raises:
        ArticleNotFound: unknown slug (message carries "did you mean" suggestions).
        ValueError: unknown section (message lists the article's anchors) or offset past the end.
    """
    article = index.article(slug)
    text, chosen = article.body, None
    if section:
        wanted = section.strip().lstrip("#").lower()
        match = next((s for s in article.sections if wanted in (s.anchor, s.text.lower())), None)
        if match is None:
            anchors = ", ".join(s.anchor for s in article.sections) or "none"
            raise ValueError(f"article {article.slug!r} has no section {section!r}; sections: {anchors}")
        text, chosen = article.body[match.start : match.end], match.anchor
    total = len(text)
    if offset > total:
        raise ValueError(f"offset {offset} is past the end ({total} characters)")
    size = max_chars or index.settings.article_page_chars
    end = min(total, offset + size)
    return ArticleOut(
        slug=article.slug,
        title=article.title,
        url=article.anchor_url(chosen or ""),
        date=article.date.isoformat(),
        tags=list(article.tags),
        description=article.description,
        front_matter=article.front_matter,
        sections=[SectionOut(level=s.level, heading=s.text, anchor=s.anchor) for s in article.sections],
        section=chosen,
        content=text[offset:end],
        offset=offset,
        total_chars=total,
        next_offset=end if end < total else None,
    )


def list_tags(index: SearchIndex, sort: TagOrder = "count_desc") -> TagList:
    """Every tag with the number of articles carrying it."""
    return TagList(sort=sort, tags=[TagCount(tag=t, count=c) for t, c in index.tag_counts(sort)])


def article_markdown(index: SearchIndex, slug: str) -> str:
    """The article as a Markdown document with a YAML front-matter header (for ``blog://`` resources).

    Raises:
        ArticleNotFound: unknown slug.
    """
    import yaml

    article = index.article(slug)
    meta = {"title": article.title, "date": article.date.isoformat(), "url": article.url,
            "tags": list(article.tags)}
    if article.description:
        meta["description"] = article.description
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{article.body.lstrip()}"

