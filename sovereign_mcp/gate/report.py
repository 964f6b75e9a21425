"""The gate's typed report and its renderings: text (one line per finding), JSON and SARIF 2.1.0.

Levels follow Vale: ``low`` -> suggestion, ``medium`` -> warning, ``high`` -> error; only errors
fail. SARIF maps them to ``note`` / ``warning`` / ``error`` (OASIS SARIF 2.1.0, section 3.27.10).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sovereign_mcp import __version__
from sovereign_mcp.gate.document import Document
from sovereign_mcp.kb.entry_types import LEVELS, Severity

Verdict = Literal["pass", "pass_with_warnings", "fail"]
Kind = Literal["article", "podcast"]
SARIF_LEVEL = {"suggestion": "note", "warning": "warning", "error": "error"}


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
    line, column = doc.position(start)
    end_line, end_column = doc.position(max(start, end - 1))
    return Finding(rule_id=rule_id, severity=severity, level=LEVELS[severity], line=line, column=column,
                   end_line=end_line, end_column=end_column + 1, span=(start, end), match=doc.text[start:end],
                   message=message, suggestion=suggestion)


def verdict_for(findings: Sequence[Finding]) -> Verdict:
    if any(f.severity == "high" for f in findings):
        return "fail"
    return "pass_with_warnings" if findings else "pass"


def render_text(report: GateReport, source: str = "<text>") -> str:
    """``file:line:col: level [rule] message (suggestion)`` lines and a summary line."""
    lines = [
        f"{source}:{f.line}:{f.column}: {f.level} [{f.rule_id}] {f.message}"
        + (f" ({f.suggestion})" if f.suggestion else "")
        for f in report.findings
    ]
    c = report.counts
    lines.append(f"{source}: {report.verdict} ({c['error']} errors, {c['warning']} warnings, "
                 f"{c['suggestion']} suggestions)")
    return "\n".join(lines)


def render_sarif(reports: Sequence[tuple[str, GateReport]], rule_titles: dict[str, str]) -> str:
    """One SARIF 2.1.0 log with one run covering every ``(uri, report)``."""
    used = sorted({f.rule_id for _, r in reports for f in r.findings})
    results = [
        {
            "ruleId": f.rule_id,
            "level": SARIF_LEVEL[f.level],
            "message": {"text": f.message + (f" ({f.suggestion})" if f.suggestion else "")},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": uri},
                "region": {"startLine": f.line, "startColumn": f.column,
                           "endLine": f.end_line, "endColumn": f.end_column},
            }}],
        }
        for uri, report in reports
        for f in report.findings
    ]
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sovereign-mcp gate",
                "version": __version__,
                "rules": [{"id": r, "shortDescription": {"text": rule_titles.get(r, r)}} for r in used],
            }},
            "results": results,
        }],
    }
    return json.dumps(log, indent=2)
