"""``sovereign-mcp gate``: the quality gate over files, as text, JSON or SARIF (exit 1 when blocked).

A run with the same settings inputs as an earlier one loads that run's compiled gate from the user cache
(:mod:`sovereign_mcp.gate.snapshot`) and never imports pydantic. Otherwise the full path runs (settings, KB
validation, facts) and stores a fresh snapshot when the KB loaded cleanly and no source file changed while
it ran; ``--rules`` and ``--log-level`` always take the full path and store nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sovereign_mcp.cli.common import overrides_from


def cmd_gate(args: argparse.Namespace) -> int:
    from sovereign_mcp.gate.plan import GateInputError, decode_input
    from sovereign_mcp.gate.render import render_sarif, render_text
    from sovereign_mcp.gate.snapshot import load_snapshot, snapshot_key

    key = None if (args.rules or args.log_level) else snapshot_key(args.config, overrides_from(args))
    snapshot = load_snapshot(key) if key else None
    if snapshot is not None:
        titles = snapshot.titles
        plan, facts = snapshot.plans[args.kind], snapshot.facts

        def check(text: str) -> Any:
            return plan.run(text, facts)
    else:
        check, titles = _full_gate(args, key)
    reports = []
    for name in args.files:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            reports.append((name, check(decode_input(raw))))
        except (OSError, GateInputError) as exc:
            print(f"sovereign-mcp gate: {name}: {exc}", file=sys.stderr)
            return 2
    if args.format == "sarif":
        print(render_sarif(reports, titles))
    elif args.format == "json":
        worst = next((v for v in ("fail", "pass_with_warnings") if any(r.verdict == v for _, r in reports)), "pass")
        payload = {"verdict": worst, "reports": [{"file": name, **_as_json(report)} for name, report in reports]}
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(render_text(report, name) for name, report in reports))
    return 1 if any(report.verdict == "fail" for _, report in reports) else 0


def _full_gate(args: argparse.Namespace, key: str | None) -> tuple[Callable[[str], Any], dict[str, str]]:
    """Settings, KB and facts loaded and validated: the check function and the rule titles. Stores the
    snapshot under ``key`` when the KB has no errors (so its warnings show on every run until fixed) and no
    KB or corpus file changed while it ran."""
    from sovereign_mcp.cli.common import settings_from, setup_logging
    from sovereign_mcp.gate.engine import QualityGate
    from sovereign_mcp.gate.published import published_facts_until
    from sovereign_mcp.gate.service import kb_facts
    from sovereign_mcp.gate.snapshot import source_digests
    from sovereign_mcp.kb.loader import load_kb

    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "warning")

    def sources() -> list[tuple[str, tuple[str, ...], str]]:
        return source_digests(settings.kb.paths, settings.corpus.paths, settings.corpus.extensions)

    before = sources() if key is not None else None  # what the plans are about to be built from
    kb = load_kb(settings.kb.paths)
    # The facts of the published articles come from their own small cache: no search index, no NumPy.
    published, expires = published_facts_until(settings)
    gate = QualityGate(kb, kb_facts(kb).union(published))
    titles = {e.id: e.title for e in kb.entries.values()}
    only = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else None
    if key is not None and before is not None and not kb.errors and sources() == before:
        _store(key, gate, titles, expires, before)

    def check(text: str) -> Any:
        return gate.check(text, args.kind, only)

    return check, titles


def _store(key: str, gate: Any, titles: dict[str, str], expires: datetime | None,
           sources: list[tuple[str, tuple[str, ...], str]]) -> None:
    from sovereign_mcp.gate.snapshot import GateSnapshot, save_snapshot
    from sovereign_mcp.kb.entry_types import KIND_SCOPES

    plans = {kind: gate.plan(kind) for kind in KIND_SCOPES}
    save_snapshot(GateSnapshot(key, sources, plans, gate.facts, titles,
                               expires.timestamp() if expires is not None else None))


def _as_json(report: Any) -> dict[str, Any]:
    """A report's fields as JSON data: a pydantic report's ``model_dump(mode="json")``, or the same fields of
    a plain :class:`~sovereign_mcp.gate.plan.ReportRecord`."""
    return report.model_dump(mode="json") if hasattr(report, "model_dump") else asdict(report)
