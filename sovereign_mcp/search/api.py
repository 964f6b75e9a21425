"""Typed blog operations shared by the MCP tools, the ``/api/*`` routes and the CLI.

Argument types are declared once here (``Query``, ``Tag``, ...), so the MCP input schema and the
HTTP request validation enforce the same limits. Output models give MCP clients an
``outputSchema`` and the web widgets stable JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from sovereign_mcp.corpus.models import Article
from sovereign_mcp.search.index import Hit, SearchIndex, SortOrder, TagOrder

MAX_QUERY_CHARS = 1000
PASSAGE_DISPLAY_CHARS = 2400

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


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class SearchHitOut(_Out):
    """One cited passage: where it is (``url`` ends in ``#anchor``) and what it says."""

    slug: str
    title: str
    url: str = Field(description="Public URL of the cited section, including the #anchor.")
    anchor: str = Field(description="Stable citation id: 'slug#heading-slug' (or 'slug' for the intro).")
    date: str = Field(description="Publication date, ISO 8601.")
    tags: list[str]
    score: float = Field(description="Relevance score (higher is better; 0 for listings).")
    heading_path: list[str] = Field(description="Enclosing headings, outermost first.")
    passage: str = Field(description="The cited passage, Markdown.")


class SearchResults(_Out):
    """Ranked results of ``search_blog``."""

    query: str
    tag: str | None
    sort: SortOrder
    count: int
    results: list[SearchHitOut]


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


def hit_out(hit: Hit) -> SearchHitOut:
    """Convert an engine :class:`Hit` into its output model."""
    a, p = hit.article, hit.passage
    return SearchHitOut(
        slug=a.slug,
        title=a.title,
        url=a.anchor_url(p.anchor),
        anchor=f"{a.slug}#{p.anchor}" if p.anchor else a.slug,
        date=a.date.isoformat(),
        tags=list(a.tags),
        score=round(hit.score, 4),
        heading_path=list(p.heading_path),
        passage=_truncate(p.text),
    )


def search_blog(index: SearchIndex, query: str = "", tag: str | None = None,
                sort: SortOrder = "relevance", n: int | None = None) -> SearchResults:
    """Run a search; ``n`` defaults to ``search.default_results`` and is capped at ``search.max_results``."""
    n = min(n or index.settings.default_results, index.settings.max_results)
    hits = index.search(query, tag=tag, sort=sort, n=n)
    return SearchResults(query=query, tag=tag, sort=sort, count=len(hits), results=[hit_out(h) for h in hits])


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

