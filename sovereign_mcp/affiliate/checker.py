"""The offline affiliate-link checks, reported in the gate's report shape (text, JSON, SARIF alike).

Rules (rule id, severity -> level as in the gate: high = error, medium = warning, low = suggestion):

* ``affiliate-foreign-id`` (high): the link's id parameter is not the operator's (``[affiliate] ids``).
* ``affiliate-missing-id`` (medium): a program link without its id parameter earns nothing.
* ``affiliate-rel-sponsored`` (medium): an HTML ``<a>`` to a program host without ``sponsored`` in ``rel``
  (Google Search Central, "Qualify your outbound links": paid links carry ``rel="sponsored"``, ``nofollow``
  may accompany it). Markdown links cannot carry ``rel``; the site generator's templates must add it.
* ``affiliate-no-disclosure`` / ``affiliate-late-disclosure`` (high): none of the program's disclosure texts,
  or the first one after the first link (FTC, 16 CFR Part 255, and its "Disclosures 101": clear,
  conspicuous, before the link, not only at the end of the page).
* ``affiliate-spoken-disclosure`` (high, podcast scripts): an ad read (a line with a program link, or the
  program's name with an ad cue such as "link" or "code") before any spoken disclosure.
* ``affiliate-short-link`` (low): a short link (``amzn.to``) whose id is behind a redirect; ``--live``
  follows it.
* ``affiliate-unconfigured-id`` (low, once per id key): the operator set no id to compare with.

Links to hosts of no program are never flagged.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from sovereign_mcp.affiliate.links import Link, find_links
from sovereign_mcp.affiliate.programs import AFFILIATE, AffiliateProgram
from sovereign_mcp.gate.document import Document, prepare
from sovereign_mcp.gate.report import Finding, GateReport, Kind, finding, verdict_for
from sovereign_mcp.kb.loader import KnowledgeBase

AD_CUES = ("link", "code", "discount", "deal", "buy", "order", "pick up", "check out", "show notes", "affiliate",
           "coupon", "promo")
"""Words that, beside a program's name on one script line, make the line an ad read."""


@dataclass(frozen=True, slots=True)
class ProgramLink:
    """A link that belongs to ``program``: ``domain`` is the program domain its host is on."""

    link: Link
    program: AffiliateProgram
    entry_id: str
    domain: str

    def id_values(self) -> list[str]:
        query = parse_qs(urlsplit(self.link.url).query, keep_blank_values=True)
        return [v for p in self.program.id_params for v in query.get(p, []) if v.strip()]


class AffiliateChecker:
    """The programs of ``kb`` (entries of type ``affiliate``) and the operator's ``ids``."""

    def __init__(self, kb: KnowledgeBase, ids: Mapping[str, str]) -> None:
        self.programs = [(e.id, e.data) for e in kb.entries.values()
                         if e.type == AFFILIATE and isinstance(e.data, AffiliateProgram)]
        self.ids = dict(ids)

    def program_links(self, doc: Document) -> list[ProgramLink]:
        """The links of ``doc`` that belong to a program, in text order."""
        found = []
        for link in find_links(doc):
            host = urlsplit(link.url).hostname or ""
            for entry_id, program in self.programs:
                domain = program.owns(host)
                if domain is not None:
                    found.append(ProgramLink(link, program, entry_id, domain))
                    break
        return found

    def expected_id(self, pl: ProgramLink) -> tuple[str, str | None]:
        """``(config key, the operator's id or None)`` for a program link."""
        key = pl.program.id_key(pl.domain)
        return key, self.ids.get(key, self.ids.get(pl.program.program))

    def check(self, text: str, kind: Kind = "article") -> GateReport:
        """Findings for ``text`` (Markdown, HTML or a podcast script). Raises nothing on any text."""
        doc = prepare(text)
        return self.check_prepared(doc, self.program_links(doc), kind)

    def check_prepared(self, doc: Document, links: list[ProgramLink], kind: Kind = "article") -> GateReport:
        """:meth:`check` on a prepared document and its :meth:`program_links` (for callers that need them too)."""
        text = doc.text
        findings: list[Finding] = []
        add = lambda *args: findings.append(finding(doc, *args))  # noqa: E731
        unconfigured: set[str] = set()
        for pl in links:
            name, link = pl.program.program, pl.link
            if pl.program.is_short(pl.domain):
                add("affiliate-short-link", "low", link.start, link.end,
                    f"{pl.domain} short link: its {name} id is behind a redirect and cannot be checked offline",
                    "run the check with --live, or link the full URL with its id")
            else:
                key, expected = self.expected_id(pl)
                values = pl.id_values()
                param = pl.program.id_params[0]
                if not values:
                    add("affiliate-missing-id", "medium", link.start, link.end,
                        f"{name} link without its '{param}' parameter: a sale through it earns nothing",
                        f"add {param}={expected}" if expected else f"add {param}=<your id> (and set "
                        f"[affiliate] ids.{key})")
                elif expected is not None and expected not in values:
                    add("affiliate-foreign-id", "high", link.start, link.end,
                        f"{name} link with {param}={values[0]}, not your id {expected}",
                        f"replace it with {param}={expected}")
                elif expected is None and key not in unconfigured:
                    unconfigured.add(key)
                    add("affiliate-unconfigured-id", "low", link.start, link.end,
                        f"no {name} id configured for {pl.domain}: {param}={values[0]} is not checked",
                        f"set [affiliate] ids.{key} = \"<your id>\"")
            if link.form == "html" and "sponsored" not in (link.rel or frozenset()):
                add("affiliate-rel-sponsored", "medium", link.start, link.end,
                    f"<a> to {pl.domain} without rel=\"sponsored\"",
                    "add rel=\"sponsored\" (nofollow may stay beside it)")
        if kind == "podcast":
            findings += self._spoken(doc, links)
        else:
            findings += self._disclosures(doc, links)
        findings.sort(key=lambda f: (f.span[0], f.rule_id))
        counts = {level: sum(1 for f in findings if f.level == level) for level in ("error", "warning", "suggestion")}
        return GateReport(verdict=verdict_for(findings), kind=kind, chars=len(text),
                          rules_checked=sorted({entry_id for entry_id, _ in self.programs}), counts=counts,
                          findings=findings)

    def _disclosures(self, doc: Document, links: list[ProgramLink]) -> list[Finding]:
        out = []
        prose = _Folded(doc.prose)
        for entry_id, program in self.programs:
            mine = [pl for pl in links if pl.entry_id == entry_id]
            if not mine:
                continue
            first = mine[0].link
            at = prose.find(program.disclosures)
            if at is None:
                out.append(finding(doc, "affiliate-no-disclosure", "high", first.start, first.end,
                                    f"{program.program} links but no disclosure",
                                    f"put \"{program.disclosures[0]}\" before the first link"))
            elif at > first.start:
                line = doc.position(at)[0]
                out.append(finding(doc, "affiliate-late-disclosure", "high", first.start, first.end,
                                    f"the {program.program} disclosure (line {line}) comes after the first link",
                                    "move the disclosure above the first affiliate link"))
        return out

    def _spoken(self, doc: Document, links: list[ProgramLink]) -> list[Finding]:
        out = []
        lines = doc.claims.split("\n")
        starts = doc.line_starts
        for entry_id, program in self.programs:
            said = [*program.spoken_disclosures, *program.disclosures]
            link_lines = {doc.position(pl.link.start)[0] for pl in links if pl.entry_id == entry_id}
            names = [re.compile(rf"\b{re.escape(n)}\b", re.IGNORECASE) for n in program.mentions]
            for number, line in enumerate(lines, start=1):
                folded = _Folded(line)
                if folded.find(said) is not None:
                    break  # disclosed before any ad read of this program
                mention = next((m for p in names for m in [p.search(line)] if m), None)
                if number in link_lines or (mention and any(cue in folded.folded for cue in AD_CUES)):
                    begin = starts[number - 1] + (mention.start() if mention else 0)
                    end = starts[number - 1] + (mention.end() if mention else len(line.rstrip()))
                    out.append(finding(doc, "affiliate-spoken-disclosure", "high", begin, end,
                                        f"{program.program} ad read without a spoken disclosure before it",
                                        f"have the host say \"{(program.spoken_disclosures or said)[0]}\" first"))
                    break
        return out


class _Folded:
    """``text`` lower-cased, curly apostrophes straightened and every whitespace run (newlines included) one
    space, so a disclosure wrapped over two lines still matches; :meth:`find` answers offsets in ``text``."""

    def __init__(self, text: str) -> None:
        words = list(re.finditer(r"\S+", text.lower().replace("’", "'")))
        self.folded = " ".join(m.group(0) for m in words)
        self._starts: list[int] = []  # folded offset of each word
        self._origin: list[int] = []  # its offset in text
        at = 0
        for m in words:
            self._starts.append(at)
            self._origin.append(m.start())
            at += len(m.group(0)) + 1

    def find(self, phrases: Iterable[str]) -> int | None:
        """The offset in the original text of the earliest of ``phrases``, or ``None``."""
        hits = [i for p in phrases if (i := self.folded.find(" ".join(p.lower().replace("’", "'").split()))) >= 0]
        if not hits:
            return None
        first = min(hits)
        k = bisect.bisect_right(self._starts, first) - 1
        return self._origin[k] + (first - self._starts[k])
