"""The ASGI app factory for several worker processes (``sovereign-mcp serve --workers N``).

``uvicorn`` starts each worker as a fresh process (``multiprocessing`` spawn) and calls :func:`create_app`
there. The command line's effective settings (config file, ``SOVEREIGN_MCP_*`` environment and flags such
as ``--corpus``, ``--data-dir``, ``--port``) reach the workers as JSON in the ``SETTINGS_ENV`` variable
(:func:`export_settings`); without it (e.g. ``uvicorn --factory sovereign_mcp.server.asgi:create_app``) the
factory loads the settings the usual way.

What several processes share and what they do not:

* HTTP is stateless (``server.stateless_http`` is forced on): an MCP session held in one process's memory
  would be unknown to the next request's process.
* L402 tokens and pipeline job records are shared through ``database_url`` (PostgreSQL), or through the
  SQLite files in the shared data dir when every worker runs on this host.
* Every process runs a pipeline worker thread; the worker lock (:mod:`sovereign_mcp.pipeline.lock`) lets
  one of them run jobs while the others stand by and take over if it exits.
* Each process holds its own search index (loaded from the cache the parent built) and, with
  ``corpus.watch``, its own file watcher. ``SIGHUP`` to the parent (the pid in ``<data_dir>/server.pid``,
  which ``sovereign-mcp index --signal`` uses) makes uvicorn replace the workers one by one; each new
  worker loads the current index.
* Per-process state: rate-limit counters with ``rate_limit.storage_uri = "memory://"`` and metrics.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.types import ASGIApp

from sovereign_mcp.config import Settings, load_settings

SETTINGS_ENV = "_SOVEREIGN_MCP_WORKER_SETTINGS"  # no SOVEREIGN_MCP_ prefix: not read as a setting itself

log = logging.getLogger("sovereign_mcp")


def _plain(value: Any) -> Any:
    """Settings data as JSON-able values with secrets revealed (the workers need the real keys)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def export_settings(settings: Settings) -> None:
    """Put ``settings`` into this process's environment for the worker processes it will start.

    The variable holds secrets (Lightning keys, the database password): it is readable only by this user
    (``/proc/<pid>/environ`` is mode 0400) and by the child processes, like the config file it came from;
    each worker drops it from its environment once read (:func:`worker_settings`).
    """
    os.environ[SETTINGS_ENV] = json.dumps(_plain(settings.model_dump()))


def worker_settings() -> Settings:
    """The settings :func:`export_settings` left for this worker, else the usual config lookup.

    The variable is removed from this process's environment once read, so the processes the worker starts
    (GPU launchers, ffmpeg, systemctl) do not inherit the secrets it holds.
    """
    raw = os.environ.pop(SETTINGS_ENV, None)
    if raw is None:
        return load_settings()
    return Settings(**json.loads(raw))


def create_app() -> ASGIApp:
    """Build one worker's app: the index (from the parent's cache), the tools, routes and payments.

    Raises:
        sovereign_mcp.config.ConfigError: invalid settings (only when loaded here, not exported).
        DatabaseUnavailable: ``database_url`` names a PostgreSQL server that cannot be reached.
    """
    from sovereign_mcp.observability.logs import setup_logging
    from sovereign_mcp.server.bootstrap import build_http_app, serving_components

    settings = worker_settings()
    setup_logging(settings.log_level, settings.observability.log_format)  # the parent's log format
    components = serving_components(settings)
    atexit.register(components.close)
    _, app = build_http_app(components)
    log.info("worker %d ready: %s articles", os.getpid(), components.blog.health()["articles"])
    return app
