"""Prompt building with the KB injected, as the operator's kb_service does at prompt-build time.

Each entry of the prompt's scopes becomes a short section: its title and severity, its prose, and
its data as a list (each data model's ``prompt_lines``: phrases to avoid, replacements, allowed acronyms,
examples). High-severity entries come first, because violating them blocks publishing.
"""

from __future__ import annotations

from sovereign_mcp.diagnostics.models import SGLANG_RULE_TYPES
from sovereign_mcp.kb.entry_types import KIND_SCOPES
from sovereign_mcp.kb.loader import KnowledgeBase
from sovereign_mcp.kb.models import KBEntry

_ORDER = {"high": 0, "medium": 1, "low": 2}


def render_rules(entries: list[KBEntry]) -> str:
    """The KB section of a prompt for ``entries``."""
    blocks = []
    for entry in sorted(entries, key=lambda e: (_ORDER[e.severity], e.id)):
        lines = [f"### {entry.title} ({entry.level}, {entry.id})"]
        if entry.body:
            lines.append(entry.body.strip())
        lines += entry.data.prompt_lines() if entry.data is not None else []
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def build_prompt(kb: KnowledgeBase, kind: str, topic: str, sources: str = "") -> str:
    """The generation prompt for an article or a two-host podcast script about ``topic``.

    Raises:
        KeyError: unknown ``kind`` (use ``article`` or ``podcast``).
    """
    entries = [e for e in kb.in_scopes(KIND_SCOPES[kind]) if e.type not in SGLANG_RULE_TYPES]
    if kind == "article":
        task = (f"Write a blog article about: {topic}\n\nFirst person, engineering-log style: what was run, "
                "what broke, the exact fix. Every path, version and URL must come from the sources below.")
    else:
        task = (f"Write a two-host podcast script about: {topic}\n\nHosts: HEXABELLA (curious, asks what a "
                "technically curious listener would ask) and CIPHERFOX (the operator, answers from real "
                "experience). One turn per line as 'SPEAKER: text'. Plain spoken text only.")
    parts = [task, "## Rules from the knowledge base (a high-severity violation blocks publishing)",
             render_rules(entries)]
    if sources:
        parts += ["## Sources", sources]
    return "\n\n".join(parts)
