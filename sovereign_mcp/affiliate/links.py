"""Links in Markdown and HTML, with their character spans: Markdown inline links ``[text](url "title")``,
autolinks ``<https://...>``, bare ``http(s)://`` URLs and HTML ``<a href=... rel=...>`` tags.

Code blocks, inline code, front matter and HTML comments are skipped (the gate's masking,
:func:`sovereign_mcp.gate.document.link_view`), so a link shown as an example is not a link. HTML tag
attributes are read by the standard library's :class:`html.parser.HTMLParser` (quoted, unquoted and
entity-escaped values), not by a pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

from sovereign_mcp.gate.document import Document, link_view

LinkForm = Literal["markdown", "autolink", "bare", "html"]

_MD_LINK = re.compile(r"\]\(\s*<?(https?://[^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_BARE = re.compile(r"https?://[^\s<>\"'`)\]]+")
_A_TAG = re.compile(r"<a\s[^>]*>", re.IGNORECASE)
_TRAILING = ".,;:!?"  # sentence punctuation after a bare URL is not part of it


@dataclass(frozen=True, slots=True)
class Link:
    """One link: ``url`` as written, ``[start, end)`` the span of the URL (or of the whole ``<a>`` tag) in the
    text, ``rel`` the tag's ``rel`` tokens (HTML only; ``None`` for Markdown, which cannot carry one)."""

    url: str
    start: int
    end: int
    form: LinkForm
    rel: frozenset[str] | None = None


class _TagReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a" and not self.attrs:
            self.attrs = {name.lower(): value or "" for name, value in attrs}


def _tag_attrs(tag: str) -> dict[str, str]:
    reader = _TagReader()
    reader.feed(tag)
    reader.close()
    return reader.attrs


def find_links(doc: Document) -> list[Link]:
    """Every http(s) link of ``doc`` in text order, each once (a Markdown link's URL is not found again as a
    bare URL, nor an ``<a href>`` value)."""
    view = link_view(doc)
    links: list[Link] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return not any(s < end and start < e for s, e in taken)

    for m in _A_TAG.finditer(view):
        attrs = _tag_attrs(m.group(0))
        href = attrs.get("href", "")
        if href.startswith(("http://", "https://")):
            rel = frozenset(attrs.get("rel", "").lower().split())
            links.append(Link(href, m.start(), m.end(), "html", rel))
        taken.append(m.span())
    for pattern, form in ((_MD_LINK, "markdown"), (_AUTOLINK, "autolink")):
        for m in pattern.finditer(view):
            if free(*m.span(1)):
                links.append(Link(m.group(1), m.start(1), m.end(1), form))  # type: ignore[arg-type]
                taken.append(m.span())
    for m in _BARE.finditer(view):
        url = m.group(0).rstrip(_TRAILING)
        start, end = m.start(), m.start() + len(url)
        if free(start, end):
            links.append(Link(url, start, end, "bare"))
    return sorted(links, key=lambda link: link.start)
