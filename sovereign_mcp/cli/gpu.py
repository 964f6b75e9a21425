"""``sovereign-mcp gpu events``: the GPU manager's event log, with the one-service-at-a-time check.

Exit codes: 0 no overlap in the log, 1 two services were up at once (each overlap on stderr), 2 bad
``--since``. The overlap check reads the whole retained log, so a service started before ``--since`` still
counts as up; only overlaps from events inside the window are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
               nested: argparse.ArgumentParser) -> None:
    """Add ``gpu`` with its actions to the ``sovereign-mcp`` subcommands (``common``/``nested``: shared options)."""
    gpu = sub.add_parser("gpu", parents=[common], help="GPU services: the event log and the overlap check")
    actions = gpu.add_subparsers(dest="gpu_command", required=True, metavar="ACTION")
    events = actions.add_parser("events", parents=[nested], help="print the GPU event log; exit 1 if two services "
                                "were ever up at once")
    events.add_argument("--since", metavar="ISO|SECONDS", help="only events from this time on: an ISO 8601 time "
                        "(2025-06-01T12:00, local time unless it has an offset) or seconds back from now (3600)")
    events.add_argument("--service", metavar="NAME", help="only events of this service")
    events.add_argument("--json", action="store_true", help="print {events, overlaps} as JSON")


def parse_since(text: str, now: float) -> float:
    """``--since`` as unix seconds: an ISO 8601 time (naive = local time) or a number of seconds before ``now``.

    Raises:
        ValueError: neither form (the message shows both).
    """
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise ValueError(f"--since {text!r}: seconds back must be >= 0")
        return now - seconds
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r}: give an ISO 8601 time (2025-06-01T12:00:00+00:00) or seconds back "
                         "from now (3600)") from None


def cmd_gpu(args: argparse.Namespace) -> int:
    """``gpu events``: print the event log of the data dir's GPU manager and check it for overlaps."""
    from sovereign_mcp.cli.common import settings_from
    from sovereign_mcp.config import ConfigError
    from sovereign_mcp.gpu.manager import GPUServiceManager
    from sovereign_mcp.gpu.records import find_overlaps

    settings = settings_from(args)
    try:
        since = None if args.since is None else parse_since(args.since, time.time())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    manager = GPUServiceManager(settings.gpu, settings.data_dir)
    try:
        every = manager.events()
    finally:
        manager.close()
    window = [e for e in every if since is None or e.ts >= since]
    shown = [e for e in window if args.service is None or e.service == args.service]
    first_id = min((e.id for e in window), default=None)
    overlaps = [] if first_id is None else find_overlaps(every, after_id=first_id - 1)
    if args.json:
        print(json.dumps({"events": [e.model_dump() for e in shown], "overlaps": overlaps}, indent=2))
    else:
        for e in shown:
            stamp = datetime.fromtimestamp(e.ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            job = f" [{e.job_id}]" if e.job_id else ""
            print(f"{stamp}  {e.service:16} {e.event:15}{job} {e.detail}  (pid {e.pid})".rstrip())
        if not shown:
            print("no GPU events" + (" in that window" if since is not None or args.service else ""), file=sys.stderr)
    for problem in overlaps:
        print(f"overlap: {problem}", file=sys.stderr)
    return 1 if overlaps else 0
