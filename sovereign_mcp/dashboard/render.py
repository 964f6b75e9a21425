"""The whole dashboard as one view model (:class:`Overview`) and its HTML (Jinja2 templates beside this file).

The page is rendered on the server; its script only polls ``/dashboard/fragment`` (the same panels as HTML)
and posts the controls. Every asset is served by the server (``/dashboard/static/...``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel

from sovereign_mcp import __version__
from sovereign_mcp.config import DashboardSettings
from sovereign_mcp.dashboard.controls import Action, ActionLog
from sovereign_mcp.dashboard.views import (
    EarningsPanel,
    GPUPanel,
    IndexPanel,
    JobsPanel,
    LimitsPanel,
    Sources,
    earnings_panel,
    gpu_panel,
    index_panel,
    jobs_panel,
    limits_panel,
)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


class Overview(BaseModel):
    """Every panel at ``generated_at`` (unix s): what holds the GPU, what is queued, what was earned."""

    generated_at: float
    version: str
    gpu: GPUPanel
    jobs: JobsPanel
    earnings: EarningsPanel
    index: IndexPanel
    limits: LimitsPanel
    actions: list[Action]


def overview(src: Sources, actions: ActionLog, config: DashboardSettings) -> Overview:
    """Gather every panel (blocking: database reads; call from a worker thread)."""
    return Overview(generated_at=src.now(), version=__version__, gpu=gpu_panel(src, config.gpu_events),
                    jobs=jobs_panel(src, config.recent_jobs, config.chart_days),
                    earnings=earnings_panel(src, config.chart_days), index=index_panel(src),
                    limits=limits_panel(src), actions=actions.items())


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "never"
    return f"{_duration(max((now or time.time()) - ts, 0.0))} ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86_400:
        return f"{s // 3600} h {(s % 3600) // 60} min"
    return f"{s // 86_400} d {(s % 86_400) // 3600} h"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment over ``templates/`` (HTML autoescaped; filters ``when``, ``ago``, ``duration``,
    ``size``, ``svg`` for the server-built charts)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, ago=_ago, duration=_duration, size=_size, svg=Markup)
    return env


def render_login(nonce: str, error: str | None = None) -> str:
    """The login form (no data): token field and the double-submit ``nonce``."""
    return environment().get_template("login.html").render(nonce=nonce, error=error, version=__version__)


def render_page(view: Overview, csrf: str, refresh_seconds: float, label: str) -> str:
    """The whole page for a logged-in operator (``csrf`` goes into a meta tag for the script)."""
    template = environment().get_template("dashboard.html")
    return template.render(o=view, csrf=csrf, refresh_ms=int(refresh_seconds * 1000), label=label)


def render_panels(view: Overview) -> str:
    """Only the panels (what the page swaps in on every poll)."""
    return environment().get_template("panels.html").render(o=view)


def static_file(name: str) -> tuple[bytes, str] | None:
    """``(content, media type)`` of a file under ``static/`` (no sub-folders, known types only), else ``None``."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or not path.is_file():
        return None
    return path.read_bytes(), kind
