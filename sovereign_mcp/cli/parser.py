"""The argument parser of ``sovereign-mcp`` (argparse): every command and its flags, nothing imported beyond
what ``--help`` needs."""

from __future__ import annotations

import argparse
from pathlib import Path

from sovereign_mcp import __version__


def common_options(nested: bool = False) -> argparse.ArgumentParser:
    """Options every command takes. ``nested`` parsers (``config show``) leave unset options
    untouched, so ``config --config F show`` and ``config show --config F`` both work."""
    common = argparse.ArgumentParser(add_help=False)
    unset = {"default": argparse.SUPPRESS} if nested else {}
    common.add_argument("--config", type=Path, metavar="PATH", **unset,
                        help="TOML config file (default: ./sovereign-mcp.toml, then the user config dir)")
    common.add_argument("--corpus", type=Path, action="append", metavar="PATH", **unset,
                        help="Markdown folder to serve; repeat for several (default: the shipped corpus/)")
    common.add_argument("--data-dir", type=Path, metavar="PATH", help="where the index cache is kept", **unset)
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], **unset)
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and ``--help``)."""
    common = common_options()
    nested = common_options(nested=True)
    parser = argparse.ArgumentParser(
        prog="sovereign-mcp",
        description="Self-hosted MCP server: cited search over your blog, for AI agents.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the MCP server (HTTP on :8002, or stdio)")
    serve.add_argument("--transport", choices=["http", "stdio"], default="http")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8002)")
    serve.add_argument("--no-watch", action="store_true", help="do not rebuild the index on file changes")
    serve.add_argument("--workers", type=int, metavar="N", help="HTTP worker processes (default 1; N > 1 "
                       "serves stateless HTTP; share tokens and jobs across hosts with database_url)")

    search = sub.add_parser("search", parents=[common], help="search the corpus from the shell")
    search.add_argument("query", nargs="?", default="", help="words to look for (empty: newest articles)")
    search.add_argument("--tag")
    search.add_argument("--sort", choices=["relevance", "date_desc"], default="relevance")
    search.add_argument("-n", type=int, help="number of results (default: search.default_results)")
    search.add_argument("--json", action="store_true", help="print the same JSON the MCP tool returns")

    index = sub.add_parser("index", parents=[common], help="build and cache the passage index")
    index.add_argument("--signal", action="store_true",
                       help="then tell the running server (SIGHUP via its pid file) to load it")

    gate = sub.add_parser("gate", parents=[common], help="run the quality gate on files (exit 1 when blocked)")
    gate.add_argument("files", nargs="+", metavar="FILE", help="Markdown/text files to check; '-' reads stdin")
    gate.add_argument("--kind", choices=["article", "podcast"], default="article")
    gate.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    gate.add_argument("--rules", help="comma-separated rule ids to apply (default: all of the kind's scopes)")
    gate.add_argument("--kb", type=Path, action="append", metavar="PATH", help="KB root (repeatable)")

    diagnose = sub.add_parser("diagnose", parents=[common],
                              help="diagnose SGLang from a log, a launch command, a live probe (exit 1 if invalid)")
    diagnose.add_argument("--log", metavar="FILE", help="SGLang log file; '-' reads stdin")
    diagnose.add_argument("--cmd", metavar="COMMAND", help="launch command (python -m sglang.launch_server ..., "
                          "docker run ..., or a systemd ExecStart= snippet)")
    diagnose.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable (repeatable)")
    diagnose.add_argument("--hardware", help="hardware description (default: diagnostics.hardware, the GB10)")
    diagnose.add_argument("--probe", nargs="?", const="", metavar="URL",
                          help="probe a running server (default URL: diagnostics.sglang_url)")
    diagnose.add_argument("--json", action="store_true", help="print the full report as JSON")
    diagnose.add_argument("--kb", type=Path, action="append", metavar="PATH", help="KB root (repeatable)")

    l402 = sub.add_parser("l402", parents=[common], help="L402 payments: tokens, revocation, earnings, dev pay")
    l402_sub = l402.add_subparsers(dest="l402_command", required=True, metavar="ACTION")
    tokens = l402_sub.add_parser("tokens", parents=[nested], help="list issued tokens, newest first")
    tokens.add_argument("--state", choices=["pending", "paid", "expired", "revoked"])
    tokens.add_argument("--limit", type=int, default=50)
    tokens.add_argument("--json", action="store_true")
    revoke = l402_sub.add_parser("revoke", parents=[nested], help="revoke a token by id")
    revoke.add_argument("token_id", help="the token id (hex), as listed by 'l402 tokens'")
    stats = l402_sub.add_parser("stats", parents=[nested], help="sats earned per tool, tokens out")
    stats.add_argument("--json", action="store_true")
    pay = l402_sub.add_parser("pay", parents=[nested],
                              help="dev backend only: settle an invoice and print its preimage")
    pay.add_argument("invoice", metavar="BOLT11")

    pipeline = sub.add_parser("pipeline", parents=[common],
                              help="content pipeline: queue a job, follow or cancel it, show the GPU services")
    pipeline_sub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    p_run = pipeline_sub.add_parser("run", parents=[nested],
                                    help="queue a job: article | podcast | hero_image | full")
    p_run.add_argument("kind", choices=["article", "podcast", "hero_image", "full"])
    p_run.add_argument("topic", help="what the piece is about")
    p_run.add_argument("--source", action="append", metavar="SLUG", help="published article injected as a source "
                       "(repeatable)")
    p_run.add_argument("--option", action="append", metavar="KEY=VALUE", help="job option (repeatable): speed=0.9, "
                       "seed=7, image_prompt=..., gate_retries=1, voices='{\"HEXABELLA\": \"...\"}'")
    p_run.add_argument("--wait", action="store_true", help="follow the job until it ends (runs the worker here "
                       "when no server is running one); exit 1 unless it is done")
    p_run.add_argument("--json", action="store_true")
    p_status = pipeline_sub.add_parser("status", parents=[nested], help="one job, or the newest jobs")
    p_status.add_argument("job_id", nargs="?", help="job id (omit to list the newest jobs)")
    p_status.add_argument("--wait", action="store_true", help="follow the job until it ends (see run --wait)")
    p_status.add_argument("--json", action="store_true")
    p_cancel = pipeline_sub.add_parser("cancel", parents=[nested],
                                       help="cancel a job (at the next step boundary if a step is running)")
    p_cancel.add_argument("job_id")
    p_cancel.add_argument("--json", action="store_true")
    p_retry = pipeline_sub.add_parser("retry", parents=[nested],
                                      help="queue a failed or cancelled job again from its last finished step "
                                      "(finished steps and artifacts kept; nothing is charged again)")
    p_retry.add_argument("job_id")
    p_retry.add_argument("--wait", action="store_true", help="follow the job until it ends (see run --wait)")
    p_retry.add_argument("--json", action="store_true")
    p_services = pipeline_sub.add_parser("services", parents=[nested],
                                         help="GPU services, the step roles they serve, pending steps per role")
    p_services.add_argument("--json", action="store_true")

    from sovereign_mcp.cli.affiliate import add_parser as add_affiliate_parser

    add_affiliate_parser(sub, common)

    from sovereign_mcp.cli.alttext import add_parsers as add_alttext_parsers

    add_alttext_parsers(sub, common)

    from sovereign_mcp.cli.token import add_parser as add_token_parser

    add_token_parser(sub, common, nested)

    from sovereign_mcp.cli.gpu import add_parser as add_gpu_parser

    add_gpu_parser(sub, common, nested)

    kb = sub.add_parser("kb", parents=[common], help="knowledge-base maintenance")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True, metavar="ACTION")
    kb_check = kb_sub.add_parser("check", parents=[nested],
                                 help="validate every KB entry (exit 1 when any is broken)")
    kb_check.add_argument("--kb", type=Path, action="append", metavar="PATH", help="KB root (repeatable)")

    config = sub.add_parser("config", parents=[common], help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("show", parents=[nested], help="print the effective config, secrets redacted")
    return parser
