"""``sovereign-mcp l402``: issued tokens, revocation, earnings, and dev-backend payments."""

from __future__ import annotations

import argparse
import json
import sys

from sovereign_mcp.cli.common import settings_from
from sovereign_mcp.config import ConfigError


def cmd_l402(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from sovereign_mcp.payments.backends.base import BackendUnavailable
    from sovereign_mcp.payments.backends.dev import DevBackend
    from sovereign_mcp.payments.service import open_payments

    settings = settings_from(args)
    try:
        service = open_payments(settings)
    except ValueError as exc:  # a backend without its URL or key
        raise ConfigError(str(exc)) from None
    action = args.l402_command
    if action == "pay":
        if not isinstance(service.backend, DevBackend):
            raise ConfigError(f"'l402 pay' settles invoices of the dev backend only; this server uses "
                              f"payments.backend = {settings.payments.backend!r}: pay with a Lightning wallet")
        try:
            print(service.backend.pay(args.invoice))
        except BackendUnavailable as exc:
            raise ConfigError(str(exc)) from None
        return 0
    if action == "revoke":
        if not service.store.revoke(args.token_id.strip().lower()):
            print(f"no such token, or already revoked: {args.token_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.token_id}")
        return 0
    if action == "stats":
        stats = service.store.stats()
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print(f"sats earned: {stats['sats_total']}; paid tokens with calls left: {stats['outstanding']}")
            for tools, row in sorted(stats["earned"].items()):
                print(f"  {tools}: {row['sats']} sats, {row['tokens']} tokens, {row['calls']} calls used")
            print("tokens by state: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["by_state"].items())))
        return 0
    rows = service.store.tokens(args.state, args.limit)
    if args.json:
        print(json.dumps([{k: v for k, v in asdict(r).items() if k != "root_key"} for r in rows], indent=2))
    else:
        for r in rows:
            print(f"{r.token_id}  {r.state:8} {r.tools:20} {r.price_sat:>6} sat  calls {r.calls_used}/{r.max_calls}")
    return 0
