"""The gate's typed report (the MCP tools' output schema). Its renderings (text, SARIF 2.1.0) are in
:mod:`sovereign_mcp.gate.render`; the verdict rule in :func:`sovereign_mcp.gate.plan.verdict_for`.

Levels follow Vale: ``low`` -> suggestion, ``medium`` -> warning, ``high`` -> error; only errors fail.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sovereign_mcp.gate.document import Document
from sovereign_mcp.gate.plan import Verdict, span_position, verdict_for
from sovereign_mcp.kb.entry_types import LEVELS, Severity

Kind = Literal["article", "podcast"]


class Finding(BaseModel):
    """One rule violation. ``line``/``column`` are 1-based; ``span`` is ``[start, end)`` in
    characters of the checked text."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    severity: Severity
    level: Literal["suggestion", "warning", "error"]
    line: int
    column: int
    end_line: int
    end_column: int
    span: tuple[int, int]
    match: str
    message: str
    suggestion: str | None = None


class GateReport(BaseModel):
    """Result of one gate run: ``fail`` when any finding is high severity."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    kind: Kind
    chars: int = Field(description="Length of the checked text, characters.")
    rules_checked: list[str]
    counts: dict[str, int] = Field(description="Findings per level: error, warning, suggestion.")
    findings: list[Finding]


def finding(doc: Document, rule_id: str, severity: Severity, start: int, end: int, message: str,
            suggestion: str | None) -> Finding:
    """A finding on ``doc.text[start:end]`` with 1-based line/column of both ends (the gate's shape)."""
    line, column, end_line, end_column = span_position(doc, start, end)
    return Finding(rule_id=rule_id, severity=severity, level=LEVELS[severity], line=line, column=column,
                   end_line=end_line, end_column=end_column, span=(start, end), match=doc.text[start:end],
                   message=message, suggestion=suggestion)


__all__ = ["Finding", "GateReport", "Kind", "Verdict", "finding", "verdict_for"]
