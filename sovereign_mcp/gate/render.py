"""Renderings of gate reports: text (one line per finding) and SARIF 2.1.0; without pydantic, so they take
a :class:`~sovereign_mcp.gate.report.GateReport` or a plain :class:`~sovereign_mcp.gate.plan.ReportRecord`.

SARIF maps the levels to ``note`` / ``warning`` / ``error`` (OASIS SARIF 2.1.0, section 3.27.10).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sovereign_mcp import __version__

SARIF_LEVEL = {"suggestion": "note", "warning": "warning", "error": "error"}


def render_text(report: Any, source: str = "<text>") -> str:
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


def render_sarif(reports: Sequence[tuple[str, Any]], rule_titles: dict[str, str]) -> str:
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
