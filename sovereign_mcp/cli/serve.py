"""``sovereign-mcp serve``: the MCP server over HTTP (one process or ``--workers N``) or stdio."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from sovereign_mcp.cli.common import pid_file, settings_from, setup_logging
from sovereign_mcp.config import Settings

log = logging.getLogger("sovereign_mcp")


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: exit 2 when the port is in use or the data dir's pid file names a live server (checked
    before anything is written: :mod:`sovereign_mcp.server.instance`)."""
    settings = settings_from(args, host=args.host, port=args.port, workers=args.workers)
    if args.no_watch:
        settings.corpus.watch = False
    workers = settings.server.workers if args.transport == "http" else 1  # > 1 is stateless (ServerSettings)
    problems = settings.problems()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.observability.log_format, server_loggers=True)
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
    from sovereign_mcp.server.bootstrap import build_http_app, build_mcp, serving_components
    from sovereign_mcp.server.instance import PidFile

    pidf: PidFile | None = None
    components = serving_components(settings, watch=workers == 1)  # with N > 1 each worker watches (asgi.py)
    service = components.blog
    if hasattr(signal, "SIGHUP") and workers == 1:  # N > 1: SIGHUP makes uvicorn replace the workers
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=service.reload, daemon=True).start())
    try:
        if args.transport == "stdio":
            build_mcp(components).run(transport="stdio", show_banner=False)
            return 0
        _, app = build_http_app(components)  # N > 1: proves the workers' build (server/asgi.py) will work
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
        components.close()
        if pidf is not None and pidf.terminated:  # SIGTERM, after the graceful shutdown: do not wait for tool
            logging.shutdown()  # threads still running (a timed-out call keeps its thread), as SIGTERM's default
            os._exit(0)  # action would not
