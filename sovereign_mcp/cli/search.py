"""``sovereign-mcp search`` and ``index``: query the corpus from the shell, build and cache the index."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from sovereign_mcp.cli.common import pid_file, settings_from, setup_logging
from sovereign_mcp.config import ConfigError


def cmd_search(args: argparse.Namespace) -> int:
    from sovereign_mcp.search import api
    from sovereign_mcp.search.store import open_index

    if args.n is not None and args.n < 1:
        raise ConfigError("-n must be at least 1")
    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "warning")
    index, _ = open_index(settings)
    results = api.search_blog(index, args.query, args.tag, args.sort, args.n)
    if args.json:
        print(results.model_dump_json(indent=2))
    else:
        for i, hit in enumerate(results.results, 1):
            where = " > ".join(hit.heading_path)
            print(f"{i}. {hit.title}  [{hit.score:.2f}]  {hit.date[:10]}")
            print(f"   {hit.url}" + (f"  ({where})" if where else ""))
            print("   " + " ".join(hit.passage.split())[:300])
        if not results.results:
            print("no matching articles", file=sys.stderr)
    return 0 if results.results else 1


def cmd_index(args: argparse.Namespace) -> int:
    from sovereign_mcp.search.store import open_index

    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "warning")
    started = time.perf_counter()
    index, cached = open_index(settings)
    elapsed = time.perf_counter() - started
    print(f"{len(index.articles)} articles, {len(index.passages)} passages, "
          f"{len(index.corpus.warnings)} warnings, {elapsed:.2f} s ({'cached' if cached else 'built'})")
    if args.signal:
        pidf = pid_file(settings)
        try:
            pid = int(pidf.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            print(f"could not signal the server via {pidf}: {exc}", file=sys.stderr)
            return 1
        print(f"sent SIGHUP to server pid {pid}")
    return 0
