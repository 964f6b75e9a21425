"""The ``sovereign-mcp`` command line (argparse).

Exit codes: 0 success, 1 the command ran and found nothing / blocked / failed its check, 2 usage,
configuration or input error (message on stderr, naming the bad key or path).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sovereign_mcp import __version__
from sovereign_mcp.config import ConfigError, Settings, load_settings, redacted
from sovereign_mcp.db import DatabaseUnavailable

log = logging.getLogger("sovereign_mcp")


def _common(nested: bool = False) -> argparse.ArgumentParser:
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
    common = _common()
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
    tokens = l402_sub.add_parser("tokens", parents=[_common(nested=True)], help="list issued tokens, newest first")
    tokens.add_argument("--state", choices=["pending", "paid", "expired", "revoked"])
    tokens.add_argument("--limit", type=int, default=50)
    tokens.add_argument("--json", action="store_true")
    revoke = l402_sub.add_parser("revoke", parents=[_common(nested=True)], help="revoke a token by id")
    revoke.add_argument("token_id", help="the token id (hex), as listed by 'l402 tokens'")
    stats = l402_sub.add_parser("stats", parents=[_common(nested=True)], help="sats earned per tool, tokens out")
    stats.add_argument("--json", action="store_true")
    pay = l402_sub.add_parser("pay", parents=[_common(nested=True)],
                              help="dev backend only: settle an invoice and print its preimage")
    pay.add_argument("invoice", metavar="BOLT11")

    pipeline = sub.add_parser("pipeline", parents=[common],
                              help="content pipeline: queue a job, follow or cancel it, show the GPU services")
    pipeline_sub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    p_run = pipeline_sub.add_parser("run", parents=[_common(nested=True)],
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
    p_status = pipeline_sub.add_parser("status", parents=[_common(nested=True)], help="one job, or the newest jobs")
    p_status.add_argument("job_id", nargs="?", help="job id (omit to list the newest jobs)")
    p_status.add_argument("--wait", action="store_true", help="follow the job until it ends (see run --wait)")
    p_status.add_argument("--json", action="store_true")
    p_cancel = pipeline_sub.add_parser("cancel", parents=[_common(nested=True)],
                                       help="cancel a job (at the next step boundary if a step is running)")
    p_cancel.add_argument("job_id")
    p_cancel.add_argument("--json", action="store_true")
    p_services = pipeline_sub.add_parser("services", parents=[_common(nested=True)],
                                         help="GPU services, the step roles they serve, pending steps per role")
    p_services.add_argument("--json", action="store_true")

    from sovereign_mcp.auth.cli import add_parser as add_token_parser

    add_token_parser(sub, common, _common(nested=True))

    kb = sub.add_parser("kb", parents=[common], help="knowledge-base maintenance")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True, metavar="ACTION")
    kb_check = kb_sub.add_parser("check", parents=[_common(nested=True)],
                                 help="validate every KB entry (exit 1 when any is broken)")
    kb_check.add_argument("--kb", type=Path, action="append", metavar="PATH", help="KB root (repeatable)")

    config = sub.add_parser("config", parents=[common], help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("show", parents=[_common(nested=True)], help="print the effective config, secrets redacted")
    return parser


def _settings(args: argparse.Namespace, **server: Any) -> Settings:
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
    return load_settings(args.config, **overrides)


def _setup_logging(level: str, log_format: str = "text") -> None:
    """stderr logging at ``level``, ``text`` or ``json`` lines, request ids, secrets redacted
    (:func:`sovereign_mcp.observability.logs.setup_logging`)."""
    from sovereign_mcp.observability.logs import setup_logging

    setup_logging(level, "json" if log_format == "json" else "text")


def pid_file(settings: Settings) -> Path:
    """Where a running HTTP server records its pid (read by ``index --signal``)."""
    return settings.data_dir / "server.pid"


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: exit 2 when the port is in use or the data dir's pid file names a live server (checked
    before anything is written: :mod:`sovereign_mcp.server.instance`)."""
    settings = _settings(args, host=args.host, port=args.port, workers=args.workers)
    if args.no_watch:
        settings.corpus.watch = False
    workers = settings.server.workers if args.transport == "http" else 1
    if workers > 1:  # an MCP session lives in one process's memory: several processes serve stateless HTTP
        settings.server.stateless_http = True
    _setup_logging(settings.log_level, settings.observability.log_format)
    sock = None
    if args.transport == "http":  # before touching the data dir: a running server's files stay its own
        from sovereign_mcp.server.instance import bind_listener, refuse_if_running

        refuse_if_running(pid_file(settings))
        sock = bind_listener(settings.server.host, settings.server.port)
    try:
        return _serve(args, settings, workers, sock)
    finally:
        if sock is not None:
            sock.close()


def _serve(args: argparse.Namespace, settings: Settings, workers: int, sock: Any) -> int:
    """The rest of :func:`cmd_serve`, with the HTTP port already bound (``sock``; ``None`` on stdio)."""
    import threading

    import uvicorn

    from sovereign_mcp.observability.logs import UVICORN_LOG_OPTIONS
    from sovereign_mcp.search.service import BlogService
    from sovereign_mcp.server.app import build_http_app, build_mcp, payments_for
    from sovereign_mcp.server.instance import PidFile

    pidf: PidFile | None = None
    service = BlogService(settings)
    h = service.health()
    log.info("index ready: %s articles, %s passages (%s, %.2f s)", h["articles"], h["passages"],
             "from cache" if service.from_cache else "built", service.load_seconds)
    if settings.corpus.watch and workers == 1:  # with N > 1 each worker watches (server/asgi.py)
        service.start_watching()
    if hasattr(signal, "SIGHUP") and workers == 1:  # N > 1: SIGHUP makes uvicorn replace the workers
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=service.reload, daemon=True).start())
    try:
        if args.transport == "stdio":
            build_mcp(service, payments=payments_for(settings)).run(transport="stdio", show_banner=False)
            return 0
        _, app = build_http_app(service, settings)  # N > 1: proves the workers' build (server/asgi.py) will work
        options: dict[str, Any] = dict(host=settings.server.host, port=settings.server.port,
                                       log_level=settings.log_level, timeout_graceful_shutdown=5, lifespan="on",
                                       proxy_headers=False,  # X-Forwarded-For: only server.trusted_proxies (app.py)
                                       **UVICORN_LOG_OPTIONS)  # our handler and access line (observability/logs.py)
        pidf = PidFile(pid_file(settings))
        with pidf:  # removed on every exit of this process, SIGTERM included
            if workers > 1:
                from uvicorn.supervisors import Multiprocess

                from sovereign_mcp.observability.metrics import prepare_multiprocess_dir
                from sovereign_mcp.server.asgi import export_settings

                export_settings(settings)
                prepare_multiprocess_dir(settings.data_dir / f"prometheus-{settings.server.port}")  # sums all
            log.info("serving MCP on http://%s:%d%s", settings.server.host, settings.server.port,
                     settings.server.path)
            if workers > 1:  # uvicorn's supervisor: SIGTERM stops all, SIGHUP replaces the workers one by one
                config = uvicorn.Config("sovereign_mcp.server.asgi:create_app", factory=True, workers=workers,
                                        **options)
                Multiprocess(config, sockets=[sock]).run()  # what uvicorn.run does, on the socket bound above
                return 0
            server = uvicorn.Server(uvicorn.Config(app, **options))
            server.run(sockets=[sock])
            if not server.started:  # the app's startup failed (logged by uvicorn)
                return 1
        return 0
    finally:
        service.close()
        if pidf is not None and pidf.terminated:  # SIGTERM, after the graceful shutdown: do not wait for tool
            logging.shutdown()  # threads still running (a timed-out call keeps its thread), as SIGTERM's default
            os._exit(0)  # action would not


def cmd_search(args: argparse.Namespace) -> int:
    from sovereign_mcp.search import api
    from sovereign_mcp.search.store import open_index

    if args.n is not None and args.n < 1:
        raise ConfigError("-n must be at least 1")
    settings = _settings(args)
    _setup_logging(settings.log_level if args.log_level else "warning")
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

    settings = _settings(args)
    _setup_logging(settings.log_level if args.log_level else "warning")
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


def cmd_gate(args: argparse.Namespace) -> int:
    from sovereign_mcp.gate.engine import GateInputError, decode_input
    from sovereign_mcp.gate.report import render_sarif, render_text
    from sovereign_mcp.gate.service import GateService
    from sovereign_mcp.search.store import open_index

    settings = _settings(args)
    _setup_logging(settings.log_level if args.log_level else "warning")
    index, _ = open_index(settings)
    gates = GateService(settings, lambda: index.articles)
    only = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else None
    gate = gates.gate()
    reports = []
    for name in args.files:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            reports.append((name, gate.check(decode_input(raw), args.kind, only)))
        except (OSError, GateInputError) as exc:
            print(f"sovereign-mcp gate: {name}: {exc}", file=sys.stderr)
            return 2
    if args.format == "sarif":
        print(render_sarif(reports, {e.id: e.title for e in gates.kb.entries.values()}))
    elif args.format == "json":
        worst = next((v for v in ("fail", "pass_with_warnings") if any(r.verdict == v for _, r in reports)), "pass")
        payload = {"verdict": worst,
                   "reports": [{"file": name, **report.model_dump(mode="json")} for name, report in reports]}
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(render_text(report, name) for name, report in reports))
    return 1 if any(report.verdict == "fail" for _, report in reports) else 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from sovereign_mcp.diagnostics.engine import DiagnoseInputError
    from sovereign_mcp.diagnostics.service import DiagnosticsService
    from sovereign_mcp.kb.loader import load_kb

    settings = _settings(args)
    _setup_logging(settings.log_level if args.log_level else "error")
    log = None
    if args.log:
        try:
            raw = sys.stdin.buffer.read() if args.log == "-" else Path(args.log).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read log {args.log}: {exc}") from None
        log = raw.decode("utf-8", "replace")
    probe_url = None
    if args.probe is not None:
        probe_url = args.probe or settings.diagnostics.sglang_url
        if not probe_url:
            raise ConfigError("--probe needs a URL or diagnostics.sglang_url in the config")
    if not (log or args.cmd or args.env or probe_url):
        raise ConfigError("nothing to diagnose: give --log, --cmd, --env or --probe")
    from sovereign_mcp.search.store import open_index

    try:
        index, _ = open_index(settings)
        urls = {a.slug: a.url for a in index.articles}
    except FileNotFoundError:
        urls = {}
    service = DiagnosticsService(settings, load_kb(settings.kb.paths), urls.get)
    try:
        report = service.run(error_log=log, launch_command=args.cmd, env="\n".join(args.env or []) or None,
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


def cmd_l402(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from sovereign_mcp.payments.backends.base import BackendUnavailable
    from sovereign_mcp.payments.backends.dev import DevBackend
    from sovereign_mcp.payments.service import open_payments

    settings = _settings(args)
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


def _pipeline_service(settings: Settings) -> Any:
    from sovereign_mcp.pipeline.service import PipelineService
    from sovereign_mcp.search.store import open_index

    loaded: list[Any] = []

    def articles() -> Any:  # the index is opened only when sources or the gate need it
        if not loaded:
            loaded.append(open_index(settings)[0])
        return loaded[0].articles

    return PipelineService(settings, articles=articles)


def _print_job(status: Any, service: Any) -> None:
    print(f"job {status.job_id}  {status.kind}  {status.topic!r}")
    print(f"state: {status.state}  ({status.done_steps} of {status.total_steps} steps)  {status.message}")
    if status.error:
        print(f"error: {status.error}")
    for step in status.steps:
        where = step.service or "cpu"
        extra = f"  {step.error}" if step.error else ""
        print(f"  {step.index + 1:>2}. {step.name:<20} {where:<8} {step.state:<9} attempt {step.attempt}{extra}")
    for gate in status.gate:
        c = gate.counts
        print(f"gate: {gate.track} attempt {gate.attempt}: {gate.verdict} ({c.get('error', 0)} errors, "
              f"{c.get('warning', 0)} warnings)")
        for finding in gate.findings[:10] if gate.verdict == "fail" else []:
            print(f"    [{finding.get('rule_id')}] {finding.get('message')}")
    for artifact in status.artifacts:
        path, _ = service.artifact(status.job_id, artifact.name)
        print(f"artifact: {artifact.name}  {artifact.mime_type}  {artifact.bytes} bytes  sha256 {artifact.sha256}  "
              f"{path}")


def _follow(service: Any, job_id: str, as_json: bool) -> int:
    service.start_worker()  # stands by while another process (the server) holds the worker lock
    last = None
    try:
        while True:
            status = service.status(job_id)
            line = f"[{status.done_steps}/{status.total_steps}] {status.state}: {status.message}"
            if line != last and not as_json:
                print(line, flush=True)
                last = line
            if status.state in ("done", "failed", "cancelled"):
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print(f"stopped following {job_id}; it stays queued (a server worker or 'pipeline status {job_id} --wait' "
              "continues it)", file=sys.stderr)
        return 130
    finally:
        service.worker.stop()
    if as_json:
        print(status.model_dump_json(indent=2))
    else:
        _print_job(status, service)
    return 0 if status.state == "done" else 1


def cmd_pipeline(args: argparse.Namespace) -> int:
    from sovereign_mcp.pipeline.service import PipelineInputError
    from sovereign_mcp.pipeline.store import JobNotFound

    settings = _settings(args)
    _setup_logging(settings.log_level if args.log_level else "warning")
    service = _pipeline_service(settings)
    action = args.pipeline_command
    try:
        if action == "run":
            options: dict[str, Any] = {}
            for item in args.option or []:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ConfigError(f"--option needs KEY=VALUE, got {item!r}")
                try:
                    options[key.strip()] = json.loads(value)
                except ValueError:
                    options[key.strip()] = value
            try:
                ticket = service.submit(args.kind, args.topic, args.source, options)
            except PipelineInputError as exc:
                raise ConfigError(str(exc)) from None
            if not args.wait:
                print(ticket.model_dump_json(indent=2) if args.json else
                      f"queued job {ticket.job_id} ({args.kind}, {len(ticket.steps)} steps); "
                      f"follow it with: sovereign-mcp pipeline status {ticket.job_id} --wait")
                return 0
            if not args.json:
                print(f"queued job {ticket.job_id}", flush=True)
            return _follow(service, ticket.job_id, args.json)
        if action == "status":
            if args.job_id is None:
                jobs = service.list().jobs
                if args.json:
                    print(json.dumps([j.model_dump(mode="json") for j in jobs], indent=2))
                for j in [] if args.json else jobs:
                    print(f"{j.job_id}  {j.kind:<10} {j.state:<9} {j.done_steps}/{j.total_steps}  {j.topic[:60]!r}  "
                          f"{j.message}")
                return 0
            if args.wait:
                service.status(args.job_id)
                return _follow(service, args.job_id, args.json)
            status = service.status(args.job_id)
            if args.json:
                print(status.model_dump_json(indent=2))
            else:
                _print_job(status, service)
            return 0
        if action == "cancel":
            status = service.cancel(args.job_id)
            print(status.model_dump_json(indent=2) if args.json else f"{status.job_id}: {status.state} "
                  f"({status.message})")
            return 0
        info = service.services()
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        roles = ", ".join(f"{role} -> {name or 'not managed'}" for role, name in info["roles"].items())
        print(f"roles: {roles}")
        pending = ", ".join(f"{k} {v}" for k, v in sorted(info["pending_steps"].items())) or "none"
        print(f"active jobs: {info['active_jobs']}; pending steps: {pending}")
        gpu = info.get("gpu")
        if gpu is None:
            print("GPU management off (pipeline.manage_gpu = false)")
            return 0
        for s in gpu["services"]:
            print(f"  {s['name']:<20} {s['kind']:<8} {s['state']:<9} {s['memory_gb']:>6.1f} GB  leases {s['leases']}"
                  + (f"  {s['detail']}" if s["detail"] else ""))
        if gpu.get("cooldown_until"):
            left = gpu["cooldown_until"] - time.time()
            if left > 0:
                print(f"cooldown: {left:.0f} s left after {gpu['last_stop_service']} stopped")
        if gpu.get("mem_available_gb") is not None:
            print(f"MemAvailable: {gpu['mem_available_gb']} GB")
        return 0
    except JobNotFound as exc:
        print(f"sovereign-mcp: {exc}", file=sys.stderr)
        return 1
    finally:
        service.close()


def cmd_token(args: argparse.Namespace) -> int:
    from sovereign_mcp.auth.cli import run

    return run(args, _settings(args))


def cmd_kb(args: argparse.Namespace) -> int:
    from sovereign_mcp.kb.loader import load_kb

    settings = _settings(args)
    _setup_logging("error")  # the errors are printed below, once each
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

    print(tomli_w.dumps(redacted(_settings(args))), end="")
    return 0


COMMANDS = {"serve": cmd_serve, "search": cmd_search, "index": cmd_index, "gate": cmd_gate,
            "diagnose": cmd_diagnose, "l402": cmd_l402, "pipeline": cmd_pipeline, "kb": cmd_kb,
            "config": cmd_config, "token": cmd_token}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sovereign-mcp`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"sovereign-mcp: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"sovereign-mcp: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:  # database_url names a PostgreSQL server that does not answer
        print(f"sovereign-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
