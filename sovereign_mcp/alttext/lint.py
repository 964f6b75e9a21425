"""Checks of an alt text, after the W3C WAI Images Tutorial (w3.org/WAI/tutorials/images/, its "decision
tree" and "tips and tricks"): a decorative image takes ``alt=""``; every other image needs alt text that
says what the image means here, without "image of" (the screen reader already says "image"), not a file
name, not a placeholder word; long text belongs in a long description (about 125 characters is a common
screen-reader heuristic, not a rule, so it is only a suggestion).

:func:`lint_alt` checks one alt text; :func:`lint_document` finds every ``![alt](src)`` and ``<img>`` in a
Markdown/HTML text (outside code) and checks each, in the gate's report shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

from sovereign_mcp.gate.document import link_view, prepare
from sovereign_mcp.gate.report import Finding, GateReport, finding, verdict_for
from sovereign_mcp.kb.entry_types import Severity

Role = Literal["informative", "decorative", "functional", "complex", "text"]
ROLES: tuple[Role, ...] = ("informative", "decorative", "functional", "complex", "text")

REDUNDANT = re.compile(r"^(?:an?\s+|the\s+)?(?:image|picture|photo|photograph|graphic|illustration)\s+(?:of|showing)\b",
                       re.IGNORECASE)
FILENAME = re.compile(r"(?:\.(?:png|jpe?g|gif|webp|svg|avif)$|^(?:img|dsc|dscn|screenshot)[_ -]?\d+)", re.IGNORECASE)
PLACEHOLDERS = frozenset({"image", "img", "photo", "picture", "graphic", "alt", "alt text", "untitled", "placeholder",
                          "hero", "hero image", "banner", "icon", "spacer", "todo"})


@dataclass(frozen=True, slots=True)
class AltProblem:
    """One problem of one alt text: rule id, severity, message, suggestion."""

    rule_id: str
    severity: Severity
    message: str
    suggestion: str


def lint_alt(alt: str | None, role: Role | None = None, max_chars: int = 125) -> list[AltProblem]:
    """Problems of ``alt`` for an image of ``role`` (``None``: unknown; an empty alt is then taken as meant to
    be decorative and only noted). ``alt=None`` means the attribute is missing."""
    if alt is None:
        return [AltProblem("alt-missing", "high", "image without an alt attribute: a screen reader reads its file "
                           "name", 'add alt="" if it is decorative, else say what it shows here')]
    text = " ".join(alt.split())
    if role == "decorative":
        return [] if not text else [AltProblem("alt-decorative-not-empty", "medium", "a decorative image with alt "
                                               "text: screen readers read it out", 'use alt=""')]
    if not text:
        if role is None:
            return [AltProblem("alt-empty", "low", 'alt="": right only if the image is decorative',
                               "describe it if it carries information")]
        return [AltProblem("alt-empty-informative", "high", f"empty alt on a {role} image",
                           "say what the image means in its context")]
    out = []
    if text.lower().strip(" .") in PLACEHOLDERS:
        out.append(AltProblem("alt-placeholder", "high", f"'{text}' is a placeholder, not a description",
                              "say what the image shows and why it is there"))
    elif FILENAME.search(text):
        out.append(AltProblem("alt-filename", "medium", f"'{text}' looks like a file name",
                              "describe the image instead"))
    if REDUNDANT.match(text):
        out.append(AltProblem("alt-redundant-prefix", "medium", "starts with 'image of' or the like: the screen "
                              "reader already says it is an image", "start with what it shows"))
    if len(text) > max_chars:
        out.append(AltProblem("alt-too-long", "low", f"{len(text)} characters (over about {max_chars})",
                              "keep the alt short and move the detail into a long description or the text"))
    return out


_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]+)")
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


class _ImgAttrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and self.attrs is None:
            self.attrs = {name.lower(): value for name, value in attrs}

    handle_startendtag = handle_starttag


def lint_document(text: str, max_chars: int = 125) -> GateReport:
    """Every image of ``text`` (Markdown ``![alt](src)`` and HTML ``<img>``, code skipped) with its problems;
    ``role="presentation"`` / ``aria-hidden="true"`` mark an ``<img>`` decorative. Raises nothing."""
    doc = prepare(text)
    view = link_view(doc)
    findings: list[Finding] = []
    for m in _MD_IMAGE.finditer(view):
        for p in lint_alt(m.group(1), None, max_chars):
            findings.append(finding(doc, p.rule_id, p.severity, m.start(), m.end(), p.message, p.suggestion))
    for m in _IMG_TAG.finditer(view):
        reader = _ImgAttrs()
        reader.feed(m.group(0))
        attrs = reader.attrs or {}
        decorative = attrs.get("role") in ("presentation", "none") or attrs.get("aria-hidden") == "true"
        alt = (attrs["alt"] or "") if "alt" in attrs else None  # a bare 'alt' attribute is an empty one
        for p in lint_alt(alt, "decorative" if decorative else None, max_chars):
            findings.append(finding(doc, p.rule_id, p.severity, m.start(), m.end(), p.message, p.suggestion))
    findings.sort(key=lambda f: f.span)
    counts = {level: sum(1 for f in findings if f.level == level) for level in ("error", "warning", "suggestion")}
    return GateReport(verdict=verdict_for(findings), kind="article", chars=len(text), rules_checked=["alt-text"],
                      counts=counts, findings=findings)
