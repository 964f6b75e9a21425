"""The blog tools and resources on a FastMCP server (the server itself is built in :mod:`.bootstrap`).

Nothing here computes anything; every handler delegates to :mod:`sovereign_mcp.search.api` on the
current index snapshot of a :class:`~sovereign_mcp.search.service.BlogService`.
"""

from __future__ import annotations

import json

from fastmcp import FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.tools import ToolResult
from mcp.types import ResourceLink, TextContent
from pydantic import TypeAdapter

from sovereign_mcp.search import api
from sovereign_mcp.search.api import (
    ArticleOut,
    Budget,
    Count,
    DetailArg,
    Explain,
    MaxChars,
    Offset,
    Query,
    SearchResults,
    SectionRef,
    Slug,
    Sort,
    Tag,
    TagList,
    TagSort,
)
from sovereign_mcp.search.index import ArticleNotFound
from sovereign_mcp.search.service import BlogService
from sovereign_mcp.server.annotations import READ_ONLY

INSTRUCTIONS = """\
Tools over the operator's published blog about running a sovereign AI stack (DGX Spark, SGLang,
Voxtral, ComfyUI, knowledge base, Lightning). Search before you claim: search_blog returns ranked,
cited passages (url with #anchor); get_article returns the full Markdown, paged. validate_quality
checks a generated article or podcast script against the knowledge base (list_kb_rules)."""

SEARCH_SCHEMA = TypeAdapter(SearchResults).json_schema(mode="serialization")


def search_result(results: SearchResults) -> ToolResult:
    """``search_blog``'s MCP result: the JSON as text and as structured content, then one ``resource_link`` per
    hit to its article (MCP 2025-06-18 and later, "Resource Links" in tool results)."""
    data = results.model_dump(mode="json")
    links = [ResourceLink(type="resource_link", uri=hit.resource, name=hit.slug, title=hit.title,
                          mime_type="text/markdown", description=f"The whole article, cited at {hit.anchor}")
             for hit in results.results]
    return ToolResult(content=[TextContent(type="text", text=json.dumps(data)), *links], structured_content=data)


def register_blog(mcp: FastMCP, service: BlogService) -> None:
    """Register ``search_blog``, ``get_article``, ``list_tags`` and the ``blog://articles`` resources, each
    reading the current index snapshot of ``service``."""

    @mcp.tool(annotations=READ_ONLY, output_schema=SEARCH_SCHEMA)
    def search_blog(query: Query = "", tag: Tag = None, sort: Sort = "relevance", n: Count = None,
                    detail: DetailArg = "passages", max_chars: Budget = None, explain: Explain = False) -> ToolResult:
        """Search the published articles; returns ranked, cited passages.

        Each result has the article slug, title, date, tags, score, the heading path and text of the
        best-matching passage, a url ending in that section's #anchor, and a resource link to the whole
        article (blog://articles/{slug}). An empty query lists the newest articles; `tag` filters;
        `sort="date_desc"` orders matches newest first; `n` is capped at the server's maximum (20 by
        default). `detail="titles"` leaves the passage text out; `max_chars` bounds the whole answer (the
        answer's `note` says what was cut); `explain=true` shows each ranking stage's score and rank.
        """
        results = api.search_blog(service.index, query, tag, sort, n, detail, max_chars, explain)
        return search_result(results)

    @mcp.tool(annotations=READ_ONLY)
    def get_article(slug: Slug, section: SectionRef = None, offset: Offset = 0,
                    max_chars: MaxChars = None) -> ArticleOut:
        """Fetch an article's front matter and Markdown body, or one section of it, paged.

        Long bodies come in pages: when `next_offset` is not null, call again with that offset.
        `section` takes a heading anchor (as in a search result's url) or the heading text.
        """
        try:
            return api.get_article(service.index, slug, section, offset, max_chars)
        except (ArticleNotFound, ValueError) as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(annotations=READ_ONLY)
    def list_tags(sort: TagSort = "count_desc") -> TagList:
        """List every tag with the number of published articles carrying it."""
        return api.list_tags(service.index, sort)

    @mcp.resource("blog://articles", name="articles", mime_type="application/json",
                  description="Every published article: slug, title, url, date, tags, description.")
    def list_articles() -> str:
        return json.dumps([api.summary(a).model_dump() for a in service.index.articles])

    @mcp.resource("blog://articles/{slug}", name="article", mime_type="text/markdown",
                  description="One published article as Markdown with a front-matter header.")
    def article_resource(slug: str) -> str:
        try:
            return api.article_markdown(service.index, slug)
        except ArticleNotFound as exc:
            raise ResourceError(str(exc)) from None
