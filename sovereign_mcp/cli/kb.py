"""``sovereign-mcp kb check``, ``config show``: the KB and the configuration."""

from __future__ import annotations

import argparse
import sys

from sovereign_mcp.cli.common import settings_from, setup_logging
from sovereign_mcp.config import redacted


def cmd_kb(args: argparse.Namespace) -> int:
    from sovereign_mcp.kb.loader import load_kb

    settings = settings_from(args)
    setup_logging("error")  # the errors are printed below, once each
    kb = load_kb(settings.kb.paths)
    by_scope: dict[str, int] = {}
    for entry in kb.entries.values():
        by_scope[entry.scope] = by_scope.get(entry.scope, 0) + 1
    scopes = ", ".join(f"{scope} {n}" for scope, n in sorted(by_scope.items()))
    print(f"{len(kb.entries)} entries ({scopes}) from {', '.join(kb.roots)}")
    for error in kb.errors:
        print(f"error: {error}")
    return 1 if kb.errors else 0


def cmd_config(args: argparse.Namespace) -> int:
    import tomli_w

    settings = settings_from(args)
    print(tomli_w.dumps(redacted(settings)), end="")
    problems = settings.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0
