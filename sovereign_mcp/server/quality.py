"""Registers the quality gate on a FastMCP server: ``validate_quality``, ``list_kb_rules``, the
``kb://entries/{id}`` resource and the ``write_article`` / ``write_podcast_script`` prompts.

Pricing is not decided here: the payments layer gates ``validate_quality`` by name.
"""

from typing import Annotated, Literal

from fastmcp import FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from pydantic import BaseModel, Field

from sovereign_mcp.gate.engine import MAX_INPUT_BYTES, GateInputError
from sovereign_mcp.gate.report import GateReport, Kind
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.kb.prompts import build_prompt
from sovereign_mcp.server.annotations import READ_ONLY

CHECK = READ_ONLY

Text = Annotated[str, Field(max_length=MAX_INPUT_BYTES, description="The article or script (Markdown), up to 2 MB.")]
KindArg = Annotated[Kind, Field(description="'article' or 'podcast' (a 'SPEAKER: text' script).")]
RuleIds = Annotated[list[Annotated[str, Field(max_length=200)]] | None,
                    Field(max_length=200, description="Only these rule ids (default: all).")]
Scope = Annotated[str | None, Field(max_length=40, description="Only entries of this scope, e.g. 'podcast'.")]
L402Arg = Annotated[str | None, Field(max_length=8000, description=(
    "Paid tool: the credential 'L402 <macaroon>:<hex preimage>' after paying, for clients that cannot "
    "send an Authorization header or request _meta."))]
Topic = Annotated[str, Field(min_length=1, max_length=2000, description="What the piece is about.")]
Sources = Annotated[str, Field(max_length=MAX_INPUT_BYTES, description="Source material to draw on, up to 2 MB.")]


class KBRuleOut(BaseModel):
    """A knowledge-base entry as listed by ``list_kb_rules``."""

    id: str
    type: str
    scope: str
    severity: Literal["low", "medium", "high"]
    level: str
    title: str
    message: str | None
    suggestion: str | None
    uri: str


class KBRuleList(BaseModel):
    scope: str | None
    entries: list[KBRuleOut]


def register_quality(mcp: FastMCP, gates: GateService) -> None:
    """Add the gate's tools, resource and prompts to ``mcp``."""

    @mcp.tool(annotations=CHECK)
    def validate_quality(text: Text, kind: KindArg = "article", rules: RuleIds = None,
                         l402: L402Arg = None) -> GateReport:
        """Check a generated article or podcast script against the knowledge base (deterministic).

        Returns the verdict (pass | pass_with_warnings | fail: any high-severity finding fails) and
        every finding with rule id, severity, line, column, span, matched text, message and
        suggestion. Front matter, code, inline code and URLs are skipped for style rules.
        """
        try:
            return gates.gate().check(text, kind, rules)
        except GateInputError as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(annotations=CHECK)
    def list_kb_rules(scope: Scope = None) -> KBRuleList:
        """List the knowledge-base entries (rules and guidance), optionally of one scope."""
        entries = sorted(gates.kb.entries.values(), key=lambda e: (e.scope, e.id))
        return KBRuleList(scope=scope, entries=[
            KBRuleOut(id=e.id, type=e.type, scope=e.scope, severity=e.severity, level=e.level, title=e.title,
                      message=e.message, suggestion=e.suggestion, uri=f"kb://entries/{e.id}")
            for e in entries if scope is None or e.scope == scope
        ])

    @mcp.resource("kb://entries/{entry_id}", name="kb-entry", mime_type="text/markdown",
                  description="One knowledge-base entry, as its Markdown source.")
    def kb_entry(entry_id: str) -> str:
        entry = gates.kb.entries.get(entry_id)
        if entry is None or entry.path is None:
            raise ResourceError(f"no KB entry {entry_id!r}; list them with list_kb_rules")
        return entry.path.read_text(encoding="utf-8")

    @mcp.prompt
    def write_article(topic: Topic, sources: Sources = "") -> str:
        """Prompt for a blog article, with the article-scope KB rules injected."""
        return build_prompt(gates.kb, "article", topic, sources)

    @mcp.prompt
    def write_podcast_script(topic: Topic, sources: Sources = "") -> str:
        """Prompt for a HEXABELLA / CIPHERFOX podcast script, with the podcast-scope KB rules injected."""
        return build_prompt(gates.kb, "podcast", topic, sources)
