"""``sovereign-mcp gate``: the quality gate over files, as text, JSON or SARIF (exit 1 when blocked)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sovereign_mcp.cli.common import settings_from, setup_logging


def cmd_gate(args: argparse.Namespace) -> int:
    from sovereign_mcp.gate.engine import GateInputError, QualityGate, decode_input
    from sovereign_mcp.gate.published import published_facts
    from sovereign_mcp.gate.render import render_sarif, render_text
    from sovereign_mcp.gate.service import kb_facts
    from sovereign_mcp.kb.loader import load_kb

    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "warning")
    kb = load_kb(settings.kb.paths)
    # The facts of the published articles come from their own small cache: no search index, no NumPy.
    gate = QualityGate(kb, kb_facts(kb).union(published_facts(settings)))
    only = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else None
    reports = []
    for name in args.files:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            reports.append((name, gate.check(decode_input(raw), args.kind, only)))
        except (OSError, GateInputError) as exc:
            print(f"sovereign-mcp gate: {name}: {exc}", file=sys.stderr)
            return 2
    if args.format == "sarif":
        print(render_sarif(reports, {e.id: e.title for e in kb.entries.values()}))
    elif args.format == "json":
        worst = next((v for v in ("fail", "pass_with_warnings") if any(r.verdict == v for _, r in reports)), "pass")
        payload = {"verdict": worst,
                   "reports": [{"file": name, **report.model_dump(mode="json")} for name, report in reports]}
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(render_text(report, name) for name, report in reports))
    return 1 if any(report.verdict == "fail" for _, report in reports) else 0
