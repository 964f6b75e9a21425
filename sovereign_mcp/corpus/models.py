"""Plain data records for loaded articles and their citable passages.

These are slotted dataclasses rather than pydantic models: a 20k-article corpus holds hundreds of
thousands of sections and passages, and the MCP output models in :mod:`sovereign_mcp.search.api`
are built from them only for the handful of hits a query returns.

To keep a large corpus small in memory (and in the index cache), a loaded article stores its
headings and passages compactly (:class:`SectionTable`, :class:`PassageTable`): a passage is kept
as the character spans of its blocks in :attr:`Article.body` plus the index of its heading, and the
:class:`Section` / :class:`Passage` records are built when read.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar, overload

_R = TypeVar("_R")
_SEP = "\0"  # never part of a heading: markdown-it turns U+0000 (and &#0;) into U+FFFD
_ANCHOR_DROP = re.compile(r"[^\w\- ]", re.UNICODE)


def heading_slug(text: str) -> str:
    """GitHub/Hugo heading slug of ``text`` (no de-duplication): ``"Why 60 s?"`` -> ``"why-60-s"``."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    return _ANCHOR_DROP.sub("", text).replace(" ", "-")


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


class _RecordTable(Sequence[_R]):
    """Read-only sequence whose records are built on access by ``_make(i, names)``; subclasses
    provide ``__len__``, ``_make`` and ``_name_list`` (the decoded heading names, shared per pass)."""

    __slots__ = ()

    def _name_list(self) -> Sequence[str]:
        raise NotImplementedError

    def _make(self, i: int, names: Sequence[str]) -> _R:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> _R: ...
    @overload
    def __getitem__(self, i: slice) -> list[_R]: ...
    def __getitem__(self, i: int | slice) -> _R | list[_R]:
        if isinstance(i, slice):
            return list(self)[i]
        return self._make(range(len(self))[i], self._name_list())  # range: negative i, IndexError

    def __iter__(self) -> Iterator[_R]:
        names = self._name_list()
        for i in range(len(self)):
            yield self._make(i, names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class SectionTable(_RecordTable[Section]):
    """An article's headings in document order, stored compactly; items are built on access.

    Texts and anchors are kept in one ``"\0"``-joined string, and level, start and end in one
    integer array, instead of one object (and three or four more) per heading. An anchor that is
    just :func:`heading_slug` of its text (the usual case) is stored as ``""`` and derived again.
    """

    __slots__ = ("_names", "_numbers")

    def __init__(self, sections: Iterable[Section] = ()) -> None:
        sections = list(sections)
        self._numbers = array("i", [n for s in sections for n in (s.level, s.start, s.end)])
        names = [n for s in sections for n in (s.text, "" if s.anchor == heading_slug(s.text) else s.anchor)]
        # Parsed Markdown never gives a name holding the separator, nor an empty anchor (a heading
        # without a slug gets "section"); a table with either keeps the names as given, in a tuple.
        if any(_SEP in n for n in names) or any(not s.anchor and heading_slug(s.text) for s in sections):
            self._names: str | tuple[str, ...] = tuple(n for s in sections for n in (s.text, s.anchor))
        else:
            self._names = _SEP.join(names)

    def _name_list(self) -> Sequence[str]:
        if isinstance(self._names, tuple):
            return self._names
        return self._names.split(_SEP) if self._numbers else ()

    def _anchor(self, names: Sequence[str], i: int) -> str:
        anchor = names[2 * i + 1]
        return anchor if anchor or isinstance(self._names, tuple) else heading_slug(names[2 * i])

    def _make(self, i: int, names: Sequence[str]) -> Section:
        nums = self._numbers
        return Section(nums[3 * i], names[2 * i], self._anchor(names, i), nums[3 * i + 1], nums[3 * i + 2])

    def __len__(self) -> int:
        return len(self._numbers) // 3

    def __getstate__(self) -> tuple[object, array]:
        return self._names, self._numbers

    def __setstate__(self, state: tuple[str | tuple[str, ...], array]) -> None:
        self._names, self._numbers = state

    def heading(self, i: int, names: Sequence[str] | None = None) -> tuple[tuple[str, ...], str]:
        """``(heading_path, anchor)`` of the content under heading ``i`` (``((), "")`` for ``i < 0``).

        The path is heading ``i`` and each nearest earlier heading of a lower level, outermost first,
        which is the stack of open headings at that point of the document.
        """
        if i < 0:
            return (), ""
        names = self._name_list() if names is None else names
        nums = self._numbers
        level = nums[3 * i]
        path = [names[2 * i]]
        for j in range(i - 1, -1, -1):
            if level <= 1:
                break
            if nums[3 * j] < level:
                level = nums[3 * j]
                path.append(names[2 * j])
        return tuple(reversed(path)), self._anchor(names, i)


class PassageTable(_RecordTable[Passage]):
    """An article's passages, stored as spans of its body; items are built on access.

    Per passage: the index of its heading in ``sections`` (-1 before the first heading) and the
    ``[start, end)`` character spans of its blocks in ``source`` (the article body), joined with a
    blank line to give :attr:`Passage.text`. ``index_texts`` (the plain text to index) is dropped by
    :meth:`drop_index_texts` once the search index is built.
    """

    __slots__ = ("_index_texts", "_meta", "_sections", "_source", "_spans")

    def __init__(self, source: str, sections: SectionTable,
                 rows: Iterable[tuple[int, Sequence[int], str]] = ()) -> None:
        """``rows``: ``(section_index, flat_spans, index_text)`` per passage, where ``flat_spans`` is
        ``(start0, end0, start1, end1, ...)``."""
        self._source = source
        self._sections = sections
        self._meta = array("i")  # (section index, offset of its first span in _spans) per passage
        self._spans = array("i")
        texts: list[str] = []
        for section, spans, index_text in rows:
            self._meta.extend((section, len(self._spans)))
            self._spans.extend(spans)
            texts.append(index_text)
        self._index_texts: list[str] | None = texts

    def __len__(self) -> int:
        return len(self._meta) // 2

    def _text(self, i: int) -> str:
        lo = self._meta[2 * i + 1]
        hi = self._meta[2 * i + 3] if 2 * i + 3 < len(self._meta) else len(self._spans)
        spans, body = self._spans, self._source
        if hi - lo == 2:
            return body[spans[lo] : spans[lo + 1]]
        return "\n\n".join(body[spans[k] : spans[k + 1]] for k in range(lo, hi, 2))

    def _make(self, i: int, names: Sequence[str]) -> Passage:
        path, anchor = self._sections.heading(self._meta[2 * i], names)
        index_text = self._index_texts[i] if self._index_texts is not None else ""
        return Passage(path, anchor, self._text(i), index_text)

    def _name_list(self) -> Sequence[str]:
        return self._sections._name_list()

    def __getstate__(self) -> tuple[object, ...]:
        return self._source, self._sections, self._meta, self._spans, self._index_texts

    def __setstate__(self, state: tuple) -> None:
        self._source, self._sections, self._meta, self._spans, self._index_texts = state

    def drop_index_texts(self) -> None:
        """Forget the plain text to index (:attr:`Passage.index_text` reads ``""`` afterwards)."""
        self._index_texts = None


@dataclass(slots=True)
class Article:
    """One published article.

    ``url`` is the public URL without fragment (absolute when a base URL is configured, else a site
    path such as ``/blog/2014/05/12/computers-are-fast/``); ``date`` is timezone-aware (UTC when the
    source had no zone); ``source`` is the file path relative to its corpus root ``root``.
    ``sections`` and ``passages`` are read-only sequences (compact tables when loaded from files).
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
    sections: Sequence[Section] = field(default_factory=list)
    passages: Sequence[Passage] = field(default_factory=list)

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
