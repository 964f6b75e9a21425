"""The affiliate checker as a service: one text, one published article by slug, or a whole blog.

Used by ``sovereign-mcp affiliate`` and the ``check_affiliate_links`` tool; neither needs the other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from sovereign_mcp.affiliate.checker import AffiliateChecker, ProgramLink
from sovereign_mcp.affiliate.config import AffiliateSettings
from sovereign_mcp.affiliate.live import live_findings
from sovereign_mcp.corpus.models import Article
from sovereign_mcp.gate.document import prepare
from sovereign_mcp.gate.engine import GateInputError, validate_input
from sovereign_mcp.gate.report import GateReport, Kind, verdict_for
from sovereign_mcp.kb.loader import KnowledgeBase


def article_text(article: Article) -> str:
    """The article's file as written (front matter included, so findings carry the file's line numbers), or
    its body when the file cannot be read any more."""
    try:
        return (Path(article.root) / article.source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return article.body


class AffiliateInputError(ValueError):
    """Nothing to check: neither text nor slug, both, an unknown slug, or text the gate refuses (too large,
    binary)."""


class AffiliateReport(GateReport):
    """The gate's report shape plus what was looked at: program links found (per program) and whether the live
    pass ran; ``source`` is the article's slug when one was checked by slug."""

    source: str | None = None
    links: dict[str, int] = Field(default_factory=dict, description="Program links found, per program.")
    live: bool = False


class ProgramSummary(BaseModel):
    """One program across a whole blog: links, articles that carry them, findings per rule id."""

    program: str
    links: int = 0
    articles: int = 0
    findings: dict[str, int] = Field(default_factory=dict)


class AffiliateService:
    """The checker over ``kb`` with ``settings.ids``; ``articles`` returns the published articles (for slugs and
    the whole-blog audit)."""

    def __init__(self, settings: AffiliateSettings, kb: KnowledgeBase,
                 articles: Callable[[], Sequence[Article]] = lambda: ()) -> None:
        self.settings = settings
        self.checker = AffiliateChecker(kb, settings.ids)
        self._articles = articles

    def check(self, text: str | None = None, slug: str | None = None, kind: Kind = "article", live: bool = False,
              transport: httpx.BaseTransport | None = None) -> AffiliateReport:
        """Check ``text`` or the published article ``slug`` (exactly one); ``live`` adds the HTTP pass (the
        caller decides who may ask for it).

        Raises:
            AffiliateInputError: see the class.
        """
        if (text is None) == (slug is None):
            raise AffiliateInputError("give either text or slug (one of them)")
        if slug is not None:
            article = next((a for a in self._articles() if a.slug == slug), None)
            if article is None:
                raise AffiliateInputError(f"no published article with slug {slug!r}; list_tags or search_blog "
                                          "show the slugs")
            text = article_text(article)
        assert text is not None
        try:
            validate_input(text)
        except GateInputError as exc:
            raise AffiliateInputError(str(exc)) from None
        return self._check(text, kind, live, transport, slug)[0]

    def _check(self, text: str, kind: Kind, live: bool, transport: httpx.BaseTransport | None,
               slug: str | None = None) -> tuple[AffiliateReport, list[ProgramLink]]:
        """The report of validated ``text`` and the program links it was built from (one parse)."""
        doc = prepare(text)
        links = self.checker.program_links(doc)
        report = self.checker.check_prepared(doc, links, kind)
        findings = list(report.findings)
        if live and links:
            findings += live_findings(doc, links, self.checker, self.settings, transport)
            findings.sort(key=lambda f: (f.span[0], f.rule_id))
        counts = {level: sum(1 for f in findings if f.level == level) for level in ("error", "warning", "suggestion")}
        per_program = Counter(pl.program.program for pl in links)
        return AffiliateReport(verdict=verdict_for(findings), kind=kind, chars=len(text),
                               rules_checked=report.rules_checked, counts=counts, findings=findings, source=slug,
                               links=dict(per_program), live=live), links

    def audit(self, articles: Iterable[Article], live: bool = False,
              transport: httpx.BaseTransport | None = None) -> tuple[list[tuple[Article, AffiliateReport]],
                                                                     list[ProgramSummary]]:
        """Every article's report (those with a program link or a finding) and a summary per program."""
        reports = []
        summaries = {program.program: ProgramSummary(program=program.program)
                     for _, program in self.checker.programs}
        for article in articles:
            text = article_text(article)
            try:
                validate_input(text)
            except GateInputError as exc:
                raise AffiliateInputError(f"{article.source}: {exc}") from None
            report, links = self._check(text, "article", live, transport)
            if not report.links and not report.findings:
                continue
            reports.append((article, report))
            for program, n in report.links.items():
                summaries[program].links += n
                summaries[program].articles += 1
            at = {pl.link.start: pl.program.program for pl in links}
            for f in report.findings:  # every finding sits on the program link it is about
                program = at.get(f.span[0])
                if program is not None:
                    found = summaries[program].findings
                    found[f.rule_id] = found.get(f.rule_id, 0) + 1
        return reports, list(summaries.values())
