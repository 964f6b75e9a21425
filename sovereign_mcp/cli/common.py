"""What every command shares: settings from the config plus the command's flags, logging, the pid file.

Imports the settings models (a leaf: no engine, no HTTP client) only when a command asks for its settings,
so every command starts fast and loads its own engine when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sovereign_mcp.config import Settings


def settings_from(args: argparse.Namespace, **server: Any) -> Settings:
    """The effective settings: config file and ``SOVEREIGN_MCP_*`` environment, then the command's flags
    (``--corpus``, ``--data-dir``, ``--log-level``, ``--kb`` and the ``server`` fields given in ``server``).

    Raises:
        ConfigError: the config file or a value is invalid (the message names the key).
    """
    from sovereign_mcp.config import load_settings

    return load_settings(args.config, **overrides_from(args, **server))


def overrides_from(args: argparse.Namespace, **server: Any) -> dict[str, Any]:
    """The settings the command's flags override, as nested dicts (``{"corpus": {"paths": [...]}, ...}``)."""
    overrides: dict[str, Any] = {}
    if args.corpus:
        overrides["corpus"] = {"paths": args.corpus}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.log_level:
        overrides["log_level"] = args.log_level
    if getattr(args, "kb", None):
        overrides["kb"] = {"paths": args.kb}
    server = {k: v for k, v in server.items() if v is not None}
    if server:
        overrides["server"] = server
    return overrides


def setup_logging(level: str, log_format: str = "text", server_loggers: bool = False) -> None:
    """stderr logging at ``level``, ``text`` or ``json`` lines, request ids, secrets redacted
    (:func:`sovereign_mcp.observability.logs.setup_logging`)."""
    from sovereign_mcp.observability import logs

    logs.setup_logging(level, "json" if log_format == "json" else "text", server_loggers=server_loggers)


def pid_file(settings: Settings) -> Path:
    """Where a running HTTP server records its pid (read by ``index --signal``)."""
    return settings.data_dir / "server.pid"
