"""Split a Markdown body into sections and citable passages.

Block structure comes from markdown-it-py (CommonMark), so fenced and indented code, HTML blocks,
lists and tables are recognised the way a static-site generator sees them. Heading anchors follow
the GitHub / Hugo (goldmark ``autoHeadingID``) rule: lower-case, drop every character that is not a
letter, digit, space, ``-`` or ``_``, turn spaces into ``-``; a repeated anchor gets ``-1``, ``-2``...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

from sovereign_mcp.corpus.models import Passage, PassageTable, Section, SectionTable, heading_slug

_MD = MarkdownIt("commonmark").enable("table")
_PROSE = {"paragraph_open", "bullet_list_open", "ordered_list_open", "blockquote_open", "table_open"}


class AnchorRegistry:
    """Hands out unique anchors within one document, suffixing repeats (``intro``, ``intro-1``...)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._used: set[str] = set()

    def unique(self, text: str) -> str:
        """Return the anchor for heading ``text``, unique among those handed out so far."""
        base = heading_slug(text) or "section"
        n = self._counts.get(base, 0)
        candidate = base if n == 0 else f"{base}-{n}"
        while candidate in self._used:
            n += 1
            candidate = f"{base}-{n}"
        self._counts[base] = n + 1
        self._used.add(candidate)
        return candidate


def inline_text(token: Token) -> str:
    """Plain text of an ``inline`` token: text, inline code and image alt text; link targets dropped."""
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline") or child.type == "image":
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


@dataclass(slots=True)
class _Block:
    kind: str
    tag: str
    first_line: int
    last_line: int
    text: list[str] = field(default_factory=list)


def _blocks(body: str) -> Iterator[_Block]:
    """Top-level blocks of ``body`` with their source line span and the plain text inside them."""
    current: _Block | None = None
    for token in _MD.parse(body):
        if token.level == 0 and token.nesting >= 0 and token.map is not None:
            if current is not None:
                yield current
            current = _Block(token.type, token.tag, token.map[0], token.map[1])
        if token.type == "inline" and current is not None:
            current.text.append(inline_text(token))
    if current is not None:
        yield current


def split_article(body: str, min_chars: int = 200) -> tuple[str | None, list[Section], list[Passage]]:
    """Split a Markdown ``body`` (front matter already removed).

    Returns ``(h1_title, sections, passages)``: ``h1_title`` is the text of a level-1 heading that
    opens the body (the usual title of notes without front matter; it is not part of any heading
    path), ``sections`` every heading with its character span in ``body``, and ``passages`` the
    prose grouped per heading, where a passage shorter than ``min_chars`` characters of plain text is
    merged with its neighbour under the same heading. :func:`split_article_compact` gives the same
    as compact tables.
    """
    h1_title, sections, passages = split_article_compact(body, min_chars)
    return h1_title, list(sections), list(passages)


def split_article_compact(body: str, min_chars: int = 200) -> tuple[str | None, SectionTable, PassageTable]:
    """:func:`split_article` with the sections and passages as compact tables over ``body``."""
    lines = body.split("\n")  # markdown-it counts lines by "\n" only (not str.splitlines' U+2028 etc.)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)

    def span(first: int, last: int) -> tuple[int, int]:
        """The stripped span of source lines ``[first, last)`` in ``body``."""
        start = offsets[min(first, len(lines))]
        end = max(start, offsets[min(last, len(lines))] - 1)
        chunk = body[start:end]
        start += len(chunk) - len(chunk.lstrip())
        return start, start + len(chunk.strip())

    anchors = AnchorRegistry()
    h1_title: str | None = None
    sections: list[Section] = []
    # Per passage: [section index (-1 before the first heading), flat block spans, plain text].
    passages: list[list] = []
    section_start = 0  # index in passages where the current heading's passages begin
    seen_content = False

    def close_section() -> None:
        if len(passages) - section_start >= 2 and len(passages[-1][2]) < min_chars:
            tail = passages.pop()
            prev = passages[-1]
            prev[1] += tail[1]
            prev[2] += " " + tail[2]

    for block in _blocks(body):
        if block.kind == "heading_open":
            text = " ".join(block.text).strip()
            level = int(block.tag[1:])
            if level == 1 and not seen_content and h1_title is None:
                h1_title = text
                continue
            close_section()
            section_start = len(passages)
            anchor = anchors.unique(text)
            sections.append(Section(level, text, anchor, offsets[block.first_line], len(body)))
            seen_content = True
            continue
        seen_content = True
        if block.kind not in _PROSE:
            continue
        plain = " ".join(t.strip() for t in block.text if t.strip())
        if not plain:
            continue
        source = span(block.first_line, block.last_line)
        last = passages[-1] if len(passages) > section_start else None
        if last is not None and len(last[2]) < min_chars:
            last[1] += source
            last[2] += " " + plain
        else:
            passages.append([len(sections) - 1, list(source), plain])
    close_section()
    _close_spans(sections)
    table = SectionTable(sections)
    return h1_title, table, PassageTable(body, table, passages)


def _close_spans(sections: list[Section]) -> None:
    """A section runs until the next heading of the same or a higher level."""
    for i, section in enumerate(sections):
        for later in sections[i + 1 :]:
            if later.level <= section.level:
                section.end = later.start
                break
