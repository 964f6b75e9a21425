"""``sovereign-mcp affiliate``: affiliate links of files, or of every published article, as text, JSON or SARIF
(exit 1 on a high-severity finding, 2 on a usage or input error)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``affiliate`` on the top-level parser."""
    p = sub.add_parser("affiliate", parents=[common],
                       help="check affiliate links: ids, rel=sponsored, disclosures (exit 1 when one is missing)",
                       description="Check affiliate links in FILEs, or with no FILE in every published article of "
                       "the corpus (--corpus PATH, default corpus.paths), against the programs in the KB "
                       "(type: affiliate) and your ids in [affiliate] ids.")
    p.add_argument("files", nargs="*", metavar="FILE", help="Markdown/HTML files or podcast scripts; '-' reads stdin")
    p.add_argument("--kind", choices=["article", "podcast"], default="article")
    p.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    p.add_argument("--live", action="store_true", help="also fetch each link: redirects, dead links, stripped ids, "
                   "soft 404s ([affiliate] max_hops, budget_seconds, per_host_rate)")
    p.add_argument("--kb", type=Path, action="append", metavar="PATH", help="KB root (repeatable)")


def cmd_affiliate(args: argparse.Namespace) -> int:
    from sovereign_mcp.affiliate.service import AffiliateInputError, AffiliateService
    from sovereign_mcp.cli.common import settings_from, setup_logging
    from sovereign_mcp.corpus.loader import load_corpus, resolve_roots
    from sovereign_mcp.gate.engine import GateInputError, decode_input
    from sovereign_mcp.gate.render import render_sarif, render_text
    from sovereign_mcp.kb.loader import load_kb

    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "warning")
    kb = load_kb(settings.kb.paths)
    service = AffiliateService(settings.affiliate, kb)
    if not service.checker.programs:
        print("sovereign-mcp affiliate: no affiliate programs in the KB (entries of type: affiliate)", file=sys.stderr)
        return 2
    reports = []
    summaries = None
    if args.files:
        for name in args.files:
            try:
                raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
                reports.append((name, service.check(text=decode_input(raw), kind=args.kind, live=args.live)))
            except (OSError, GateInputError, AffiliateInputError) as exc:
                print(f"sovereign-mcp affiliate: {name}: {exc}", file=sys.stderr)
                return 2
    else:
        corpus = load_corpus(resolve_roots(settings.corpus.paths), base_url=settings.corpus.base_url,
                             extensions=settings.corpus.extensions)
        found, summaries = service.audit(corpus.articles, live=args.live)
        reports = [(article.source, report) for article, report in found]
    if args.format == "sarif":
        print(render_sarif(reports, {e.id: e.title for e in kb.entries.values()}))
    elif args.format == "json":
        payload = {"reports": [{"file": name, **r.model_dump(mode="json")} for name, r in reports]}
        if summaries is not None:
            payload["programs"] = [s.model_dump(mode="json") for s in summaries]
        print(json.dumps(payload, indent=2))
    else:
        for name, report in reports:
            print(render_text(report, name))
        for s in summaries or []:
            rules = ", ".join(f"{rule} {n}" for rule, n in sorted(s.findings.items())) or "no findings"
            print(f"{s.program}: {s.links} link(s) in {s.articles} article(s); {rules}")
        if summaries is not None and not reports:
            print("no affiliate links found")
    return 1 if any(r.verdict == "fail" for _, r in reports) else 0
