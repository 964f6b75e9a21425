"""The gate as a long-lived service: the loaded KB plus facts drawn from the KB and the live corpus.

Facts (the strings that back paths, versions, URLs and titles) are rebuilt lazily when the blog
index snapshot changes, so an article published after start-up counts as a source.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.models import Article
from sovereign_mcp.gate.engine import QualityGate
from sovereign_mcp.gate.facts import KnownFacts
from sovereign_mcp.kb.loader import KnowledgeBase, load_kb
from sovereign_mcp.kb.models import KBEntry


def entry_text(entry: KBEntry) -> str:
    """Everything an entry says (title, prose, data) as one text, for fact extraction."""
    data = entry.data.model_dump_json() if entry.data is not None else ""
    return f"{entry.title}\n{entry.body}\n{data}"


def kb_facts(kb: KnowledgeBase) -> KnownFacts:
    """Facts from every KB entry (its title, prose and data)."""
    entries = list(kb.entries.values())
    return KnownFacts.from_sources([entry_text(e) for e in entries], [e.title for e in entries])


def article_facts(articles: Iterable[Article]) -> KnownFacts:
    """Facts from published articles: paths, versions and URLs in their bodies, their URLs, titles and slugs."""
    articles = list(articles)
    return KnownFacts.from_sources([a.body for a in articles] + [a.url for a in articles],
                                   [a.title for a in articles], [a.slug for a in articles])


def build_facts(kb: KnowledgeBase, articles: Iterable[Article]) -> KnownFacts:
    """Facts from every KB entry and every published article (bodies and titles)."""
    return kb_facts(kb).union(article_facts(articles))


class GateService:
    """Holds the KB; hands out a :class:`QualityGate` whose facts match the current corpus.

    ``articles`` is a callable returning the current published articles (the blog service's index
    snapshot), so this module does not depend on the search engine.
    """

    def __init__(self, settings: Settings, articles=lambda: (), kb: KnowledgeBase | None = None) -> None:
        self.settings = settings
        self.kb = kb if kb is not None else load_kb(settings.kb.paths)  # bootstrap hands in the shared KB
        self._articles = articles
        self._lock = threading.Lock()
        self._source: object = None
        self._gate: QualityGate | None = None

    def gate(self) -> QualityGate:
        """The gate for the current corpus snapshot (facts rebuilt when the snapshot changed)."""
        current = self._articles()
        with self._lock:
            if self._gate is None or current is not self._source:
                self._gate = QualityGate(self.kb, build_facts(self.kb, current))
                self._source = current
            return self._gate

    def health(self) -> dict[str, object]:
        """KB figures for ``/health``: entry count and every broken entry (file, field, message)."""
        return {"kb_entries": len(self.kb.entries), "kb_errors": [str(e) for e in self.kb.errors]}
