"""The ``sovereign-mcp`` command line: one module per command, each importing its engine only when it runs.

Exit codes: 0 success, 1 the command ran and found nothing / blocked / failed its check, 2 usage,
configuration or input error (message on stderr, naming the bad key or path).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from sovereign_mcp.cli.parser import build_parser

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "cmd_serve"), "search": ("search", "cmd_search"), "index": ("search", "cmd_index"),
    "gate": ("gate", "cmd_gate"), "diagnose": ("diagnose", "cmd_diagnose"), "l402": ("l402", "cmd_l402"),
    "pipeline": ("pipeline", "cmd_pipeline"), "kb": ("kb", "cmd_kb"), "config": ("kb", "cmd_config"),
    "token": ("token", "cmd_token"), "gpu": ("gpu", "cmd_gpu"), "affiliate": ("affiliate", "cmd_affiliate"),
    "caption": ("alttext", "cmd_caption"), "alt-lint": ("alttext", "cmd_alt_lint"),
}
"""command -> (module under ``sovereign_mcp.cli``, function); the module is imported only for its command."""


def command(name: str) -> Callable[..., int]:
    """The function that runs command ``name`` (imports its module)."""
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(f"sovereign_mcp.cli.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sovereign-mcp`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return command(args.command)(args)
    except Exception as exc:
        # Imported only here: a command that never reads its settings (a cached gate run) never loads them.
        from sovereign_mcp.config import ConfigError
        from sovereign_mcp.db import DatabaseUnavailable

        # DatabaseUnavailable: database_url names a PostgreSQL server that does not answer
        if isinstance(exc, (ConfigError, FileNotFoundError, DatabaseUnavailable)):
            print(f"sovereign-mcp: {exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        return 130


__all__ = ["COMMANDS", "build_parser", "command", "main"]
