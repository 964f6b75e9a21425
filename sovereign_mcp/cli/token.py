"""``sovereign-mcp token create|list|revoke``: operator token administration, on the local machine only
(whoever can run this against the server's data dir or database is the operator; there is no MCP tool
for it)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from sovereign_mcp.auth.scopes import SCOPES

if TYPE_CHECKING:
    from sovereign_mcp.config import Settings


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
               nested: argparse.ArgumentParser) -> None:
    """Add ``token`` with its actions to the ``sovereign-mcp`` subcommands (``common``/``nested``: shared options)."""
    token = sub.add_parser("token", parents=[common], help="operator bearer tokens: create, list, revoke")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[nested], help="create a token and print it (shown only once)")
    create.add_argument("--scope", choices=SCOPES, required=True, help="what the token may do")
    create.add_argument("--label", default="", help="where the token is used, e.g. 'laptop claude-code'")
    create.add_argument("--expires-days", type=float, metavar="N", help="lifetime in days (default: until revoked)")
    create.add_argument("--json", action="store_true")
    listing = actions.add_parser("list", parents=[nested], help="list tokens (ids, scopes, labels; never secrets)")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", parents=[nested], help="revoke a token by id (effective at once)")
    revoke.add_argument("token_id", help="the id shown by 'token list' (or the whole token)")


def _when(stamp: int | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``token`` action; returns the exit code.

    Raises:
        ConfigError: bad ``--expires-days`` or label (exit 2).
    """
    from sovereign_mcp.auth.tokens import OperatorTokenStore, TokenInputError
    from sovereign_mcp.config import ConfigError

    store = OperatorTokenStore.for_settings(settings.data_dir, settings.database_url)
    try:
        if args.token_command == "create":
            days = args.expires_days
            try:
                token, record = store.create(args.scope, args.label, None if days is None else days * 86_400)
            except TokenInputError as exc:
                raise ConfigError(f"--expires-days/--label: {exc}") from None
            if args.json:
                print(json.dumps({"token": token, **asdict(record)}, indent=2))
                return 0
            print(token)
            print(f"\nid {record.token_id}, scope {record.scope}, expires {_when(record.expires_at)}. This is the only "
                  "time the token is shown; store it now.\nSend it with every request: 'Authorization: Bearer "
                  "<token>' (fastmcp: Client(url, auth=token); Claude Code: --header 'Authorization: Bearer "
                  f"<token>'). Revoke it with: sovereign-mcp token revoke {record.token_id}", file=sys.stderr)
            return 0
        if args.token_command == "list":
            rows = store.list()
            if args.json:
                print(json.dumps([{**asdict(r), "state": r.state()} for r in rows], indent=2))
                return 0
            for r in rows:
                print(f"{r.token_id}  {r.state():8} {r.scope:9} created {_when(r.created_at)}  expires "
                      f"{_when(r.expires_at)}  last used {_when(r.last_used_at)}  {r.label}")
            if not rows:
                print("no operator tokens; create one with: sovereign-mcp token create --scope operator",
                      file=sys.stderr)
            return 0
        token_id = args.token_id.strip()
        if token_id.startswith("smcp_"):
            token_id = token_id.split("_")[1]
        if not store.revoke(token_id):
            print(f"sovereign-mcp: no such token, or already revoked: {token_id}", file=sys.stderr)
            return 1
        print(f"revoked {token_id}")
        return 0
    finally:
        store.close()


def cmd_token(args: argparse.Namespace) -> int:
    """``token``: the settings from the config and flags, then :func:`run`."""
    from sovereign_mcp.cli.common import settings_from  # the settings models load only when a token command runs

    return run(args, settings_from(args))
