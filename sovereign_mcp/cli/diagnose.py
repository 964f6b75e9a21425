"""``sovereign-mcp diagnose``: SGLang failure modes from a log, a launch command or a live probe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sovereign_mcp.cli.common import settings_from, setup_logging
from sovereign_mcp.config import ConfigError


def cmd_diagnose(args: argparse.Namespace) -> int:
    from sovereign_mcp.diagnostics.engine import DiagnoseInputError
    from sovereign_mcp.diagnostics.service import DiagnosticsService
    from sovereign_mcp.kb.loader import load_kb

    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "error")
    log_text = None
    if args.log:
        try:
            raw = sys.stdin.buffer.read() if args.log == "-" else Path(args.log).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read log {args.log}: {exc}") from None
        log_text = raw.decode("utf-8", "replace")
    probe_url = None
    if args.probe is not None:
        probe_url = args.probe or settings.diagnostics.sglang_url
        if not probe_url:
            raise ConfigError("--probe needs a URL or diagnostics.sglang_url in the config")
    if not (log_text or args.cmd or args.env or probe_url):
        raise ConfigError("nothing to diagnose: give --log, --cmd, --env or --probe")
    from sovereign_mcp.search.store import open_index

    try:
        index, _ = open_index(settings)
        urls = {a.slug: a.url for a in index.articles}
    except FileNotFoundError:
        urls = {}
    service = DiagnosticsService(settings, load_kb(settings.kb.paths), urls.get)
    try:
        report = service.run(error_log=log_text, launch_command=args.cmd, env="\n".join(args.env or []) or None,
                             hardware=args.hardware, probe_url=probe_url)
    except DiagnoseInputError as exc:
        raise ConfigError(str(exc)) from None
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(f"verdict: {report.verdict}  (hardware: {report.hardware})")
        for f in report.findings:
            print(f"\n[{f.severity}] {f.title} ({f.rule_id})\n  evidence: {f.evidence}\n  fix: {f.fix}")
            for source in f.sources:
                print(f"  see: {source}")
        if report.apply:
            print("\napply:\n" + "\n".join(f"  {step}" for step in report.apply))
        if report.probe is not None:
            p = report.probe
            print(f"\nprobe {p.url}: reachable={p.reachable} ready={p.ready} metrics={p.metrics} "
                  f"MemAvailable={p.mem_available_gb} GB")
        for note in report.notes:
            print(f"note: {note}")
    return 1 if report.verdict == "invalid" else 0
