"""Plain data records for loaded articles and their citable passages.

These are slotted dataclasses rather than pydantic models: a 20k-article corpus holds hundreds of
thousands of passages, and the MCP output models in :mod:`sovereign_mcp.search.results` are built
from them only for the handful of hits a query returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(slots=True)
class Section:
    """A heading of an article: ``level`` 1-6, display ``text``, unique ``anchor`` (heading slug),
    and the character span ``[start, end)`` of the section in :attr:`Article.body`."""

    level: int
    text: str
    anchor: str
    start: int
    end: int


@dataclass(slots=True)
class Passage:
    """A citable unit: consecutive prose blocks under one heading.

    ``heading_path`` lists the enclosing headings outermost first (the article title excluded);
    ``anchor`` is the heading slug of the innermost one ("" before the first heading); ``text`` is the
    Markdown source of the blocks (code fences and HTML blocks left out); ``index_text`` is the plain
    text that gets indexed (empty once the index is built, to save memory).
    """

    heading_path: tuple[str, ...]
    anchor: str
    text: str
    index_text: str = ""


@dataclass(slots=True)
class Article:
    """One published article.

    ``url`` is the public URL without fragment (absolute when a base URL is configured, else a site
    path such as ``/blog/2014/05/12/computers-are-fast/``); ``date`` is timezone-aware (UTC when the
    source had no zone); ``source`` is the file path relative to its corpus root ``root``.
    """

    slug: str
    title: str
    date: datetime
    url: str
    tags: tuple[str, ...]
    description: str
    body: str
    source: str
    root: str
    front_matter: dict[str, object] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """Absolute path of the source file."""
        return Path(self.root) / self.source

    def anchor_url(self, anchor: str) -> str:
        """The public URL of a section: ``url#anchor`` (or ``url`` for the top of the article)."""
        return f"{self.url}#{anchor}" if anchor else self.url


@dataclass(slots=True)
class CorpusWarning:
    """A file that could not be loaded (or was dropped), with the reason."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(slots=True)
class Corpus:
    """The result of loading one or more corpus folders.

    ``skipped_drafts`` and ``skipped_future`` count deliberately unpublished files (no warning);
    ``next_publish_at`` is the earliest date among future-dated posts, after which the corpus must be
    reloaded to include it (``None`` when there is none).
    """

    articles: list[Article]
    warnings: list[CorpusWarning]
    roots: list[str]
    skipped_drafts: int = 0
    skipped_future: int = 0
    next_publish_at: datetime | None = None
