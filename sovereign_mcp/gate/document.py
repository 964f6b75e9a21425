"""A document prepared for the gate: Markdown-aware masks that keep every character offset.

Masking replaces skipped characters with spaces (newlines kept), so a match found in a masked view
has the same offset, line and column as in the original text. Two views, following Vale's
Markdown handling (vale.sh docs, "Scoping": front matter, code and URLs are not prose):

* ``prose``: front matter, fenced and indented code blocks, inline code spans, URLs (bare and link
  targets), HTML comments and ``<!-- gate off -->`` ... ``<!-- gate on -->`` regions blanked. Style
  rules run on this.
* ``claims``: only front matter, code blocks, HTML comments and gate-off regions blanked; inline
  code and URLs stay, because fabricated paths, versions and links hide there.

Inline directives (HTML comments): ``<!-- gate off -->`` / ``<!-- gate on -->`` for every rule;
``<!-- gate off: id1, id2 -->`` / ``<!-- gate on: id1 -->`` for named rules; and
``<!-- gate ignore id1, id2 -->`` for the comment's own line and the next non-blank line.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_FRONT_MATTER = re.compile(r"\A(?:---[ \t]*\n.*?\n---|\+\+\+[ \t]*\n.*?\n\+\+\+)[ \t]*(?:\n|\Z)", re.DOTALL)
# Matched against "\n" + text: opening on a literal newline lets ``re`` skip ahead (2.5x faster than ^ + MULTILINE).
_FENCE = re.compile(r"\n[ ]{0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:\n[ ]{0,3}\1[`~]*[ \t]*(?=\n|\Z)|\Z)", re.DOTALL)
# Code lines, and blank lines between code lines; opens on a literal newline so ``re`` skips ahead.
_INDENTED_CODE = re.compile(r"\n[ \t]*\n((?:(?: {4}|\t)[^\n]*(?:\n|\Z)|[ \t]*\n(?=(?: {4}|\t)))+)")
_LIST_ITEM = re.compile(r"[ ]{0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
# A run of n backticks closes on the next run of exactly n, within one paragraph (no blank line). The first
# backtick is written as a literal so ``re`` skips ahead to it (13x faster than opening on the group "(`++)").
_INLINE_CODE = re.compile(r"`(`*+)(?:[^`\n]++|\n(?![ \t]*\n)|(?!`\1)`++)+?`\1(?!`)")
# One pattern per URL form, each opening with a literal so ``re`` can skip ahead (an alternation
# of the three scans every position and costs ~60x more on 1 MB).
_URLS = (
    re.compile(r"https?://[^\s<>\"'`)\]]+"),
    re.compile(r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)"),
    re.compile(r"<(?:https?|mailto):[^>\s]+>"),
)
_NEWLINE = re.compile("\n")
_DIRECTIVE = re.compile(r"^\s*gate\s+(off|on|ignore)\b\s*:?\s*(.*?)\s*$", re.DOTALL | re.IGNORECASE)


def blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with every span replaced by spaces, newlines kept (offsets unchanged)."""
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if end <= pos:
            continue
        start = max(start, pos)
        out.append(text[pos:start])
        out.append("\n".join(" " * len(part) for part in text[start:end].split("\n")))
        pos = end
    out.append(text[pos:])
    return "".join(out)


@dataclass(slots=True)
class Document:
    """The original ``text`` plus its masked views and the suppressions from inline directives."""

    text: str
    prose: str
    claims: str
    line_starts: list[int]
    rule_off: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    ignored_lines: dict[int, set[str]] = field(default_factory=dict)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based ``(line, column)`` of a character offset."""
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return line + 1, offset - self.line_starts[line] + 1

    def suppressed(self, rule_id: str, start: int) -> bool:
        """Whether a finding of ``rule_id`` at ``start`` is switched off by a directive."""
        if not self.rule_off and not self.ignored_lines:
            return False  # no directive in the document: nothing to look up
        if any(lo <= start < hi for lo, hi in self.rule_off.get(rule_id, ())):
            return True
        line = self.position(start)[0]
        return rule_id in self.ignored_lines.get(line, ()) or "*" in self.ignored_lines.get(line, ())


def _code_spans(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end() - 1) for m in _FENCE.finditer("\n" + text)]  # "\n" + text: shift back by one
    fenced = "\n\n" + blank(text, spans)  # so a code block on the first line is preceded by a blank line
    for m in _INDENTED_CODE.finditer(fenced):
        if not _continues_list(fenced, m.start()):
            spans.append((m.start(1) - 2, m.end(1) - 2))
    return spans


def _continues_list(text: str, before: int) -> bool:
    """Whether the indented block after offset ``before`` continues a list item (CommonMark: an
    indented paragraph after a list item belongs to the item, it is not code)."""
    lines = text[max(0, before - 2000) : before].split("\n")
    previous = next((line for line in reversed(lines) if line.strip()), "")
    return bool(_LIST_ITEM.match(previous)) or previous.startswith(("    ", "\t"))


def link_view(doc: Document) -> str:
    """Where links are looked for: the ``claims`` view with inline code spans blanked too (front matter,
    code, comments and gate-off regions already are), URLs and HTML tags kept; offsets unchanged."""
    return blank(doc.claims, [m.span() for m in _INLINE_CODE.finditer(doc.claims)])


def prepare(text: str) -> Document:
    """Build the masked views and directive tables of ``text`` (any Markdown or plain text).

    Carriage returns are treated as spaces (same length), so CRLF files mask like LF files and
    every offset still points into the original text.
    """
    starts = [0, *(m.end() for m in _NEWLINE.finditer(text))]
    work = text.replace("\r", " ") if "\r" in text else text
    fm = _FRONT_MATTER.match(work)
    structural = [fm.span()] if fm else []
    structural += _code_spans(blank(work, structural))
    base = blank(work, structural)
    doc = Document(text=text, prose="", claims="", line_starts=starts)
    comments = list(_COMMENT.finditer(base))
    off_all: list[tuple[int, int]] = []
    open_all: int | None = None
    open_rule: dict[str, int] = {}
    for m in comments:
        directive = _DIRECTIVE.match(m.group(1))
        if not directive:
            continue
        action, ids = directive.group(1).lower(), [i.strip() for i in directive.group(2).split(",") if i.strip()]
        if action == "ignore":
            line = doc.position(m.start())[0]
            following = _next_content_line(base, m.end(), starts)
            for ln in {line, following}:
                doc.ignored_lines.setdefault(ln, set()).update(ids or ["*"])
        elif action == "off":
            if ids:
                for rid in ids:
                    open_rule.setdefault(rid, m.end())
            elif open_all is None:
                open_all = m.end()
        else:
            if ids:
                for rid in ids:
                    if rid in open_rule:
                        doc.rule_off.setdefault(rid, []).append((open_rule.pop(rid), m.start()))
            elif open_all is not None:
                off_all.append((open_all, m.start()))
                open_all = None
    if open_all is not None:
        off_all.append((open_all, len(text)))
    for rid, begin in open_rule.items():
        doc.rule_off.setdefault(rid, []).append((begin, len(text)))
    hidden = [m.span() for m in comments] + off_all
    doc.claims = blank(base, hidden)
    inline = [m.span() for m in _INLINE_CODE.finditer(doc.claims)]
    urls = [m.span() for pattern in _URLS for m in pattern.finditer(doc.claims)]
    doc.prose = blank(doc.claims, inline + urls)
    return doc


def _next_content_line(text: str, offset: int, starts: list[int]) -> int:
    """1-based number of the first line after ``offset``'s line that has non-blank text."""
    line = bisect.bisect_right(starts, offset) - 1
    for ln in range(line + 1, len(starts)):
        end = starts[ln + 1] if ln + 1 < len(starts) else len(text)
        if text[starts[ln]:end].strip():
            return ln + 1
    return line + 1
