"""The dashboard's panels as pydantic view models, gathered from the engines (read-only).

Each ``*_panel`` function reads one engine and returns one model; :func:`overview` returns them all (what
``GET /dashboard/api/overview`` answers and the HTML renders). Times are unix seconds, memory GB (10^9
bytes), amounts sats; days are UTC ``YYYY-MM-DD``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

from pydantic import BaseModel, Field

from sovereign_mcp.config import Settings
from sovereign_mcp.dashboard.charts import bar_chart, day_key, day_series, last_days
from sovereign_mcp.dashboard.eta import Eta, estimate, expected_durations
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.gpu.manager import GPUEvent, GPUServiceManager
from sovereign_mcp.gpu.records import ACTIVE_STATES
from sovereign_mcp.payments.service import L402Service
from sovereign_mcp.pipeline.models import ACTIVE_STATES as JOB_ACTIVE
from sovereign_mcp.pipeline.models import GateAttempt, JobStatus
from sovereign_mcp.pipeline.service import PipelineService
from sovereign_mcp.search.service import BlogService

DAY = 86_400


@dataclass
class Sources:
    """The engines the dashboard reads and controls (the same objects the MCP tools use).

    ``payments`` is ``None`` when payments are disabled; the GPU manager is ``pipeline.gpu``.
    """

    settings: Settings
    pipeline: PipelineService
    blog: BlogService
    gates: GateService
    payments: L402Service | None = None
    clock: object = field(default=time.time)

    @property
    def gpu(self) -> GPUServiceManager:
        """The GPU manager the pipeline uses (one-at-a-time rule, cooldown, memory guard)."""
        return self.pipeline.gpu

    def now(self) -> float:
        """Unix seconds from the injected clock."""
        return float(self.clock())  # type: ignore[operator]


# -- GPU ---------------------------------------------------------------------------------------------
class ServiceView(BaseModel):
    """One GPU service: recorded state, what it would take to start or stop it."""

    name: str
    kind: str
    role: str | None = Field(description="The pipeline role it serves (sglang, voxtral, comfyui) or null.")
    state: str
    memory_gb: float
    need_gb: float = Field(description="memory_gb + memory_margin_gb: MemAvailable needed to start it.")
    leases: int
    jobs: list[str | None]
    changed_at: float
    detail: str
    last_ready_at: float | None = Field(description="When it last became ready (event log), unix s.")
    cooldown_remaining_seconds: float = Field(description="Wait before it may start, from the last stop, s.")
    breaker_retry_at: float | None = Field(description="Start breaker open until (unix s), else null.")
    fits_now: bool | None = Field(description="MemAvailable covers need_gb now (null: MemAvailable unreadable).")
    stops: list[str] = Field(description="Services a start would stop first (one at a time).")
    start_plan: str = Field(description="What a start does and how long it may wait (the confirm dialog).")
    stop_plan: str = Field(description="What a stop does and how long it may wait (the confirm dialog).")


class GPUPanel(BaseModel):
    """The GPU pool: services, free memory, what would fit, and the newest event log rows."""

    services: list[ServiceView]
    active: list[str]
    waiting: int
    mem_available_gb: float | None
    memory_margin_gb: float
    fits_now: list[str] = Field(description="Services whose need_gb MemAvailable covers now.")
    cooldown_until: float | None
    events: list[GPUEvent]


def _plans(name: str, need: float, cooldown: float, stops: list[str], held: list[str | None], ready_timeout: float,
           busy_timeout: float, available: float | None) -> tuple[str, str]:
    mem = "MemAvailable unknown" if available is None else f"MemAvailable {available:.1f} GB now"
    stop_part = (f"stops {', '.join(stops)} first (once their leases are released, up to {busy_timeout:g} s)"
                 if stops else "stops nothing (no other service is up)")
    wait = f"waits {cooldown:.0f} s of cooldown, " if cooldown > 0 else ""
    start = (f"Start {name}: {stop_part}, {wait}needs {need:.1f} GB ({mem}), then waits up to "
             f"{ready_timeout:g} s until it answers ready.")
    leased = [j or "?" for j in held]
    stop = (f"Stop {name}: waits until {len(leased)} lease(s) ({', '.join(leased)}) are released (up to "
            f"{busy_timeout:g} s), then runs its stop command." if leased else
            f"Stop {name}: no lease is held; it stops now.")
    return start, stop


def gpu_panel(src: Sources, events: int = 30) -> GPUPanel:
    """The GPU panel from the manager's recorded status and event log (no HTTP checks)."""
    gpu, cfg = src.gpu, src.settings.gpu
    now = src.now()
    status = gpu.status()
    roles = {src.pipeline.gpu_service_for(role): role for role in ("sglang", "voxtral", "comfyui")}
    available = status.mem_available_gb
    active = [s.name for s in status.services if s.state in ACTIVE_STATES]
    views = []
    for s in status.services:
        config = cfg.service(s.name)
        need = config.memory_gb + cfg.memory_margin_gb
        cooldown = 0.0
        if status.last_stop_at is not None:
            last_cfg = next((c for c in cfg.services if c.name == status.last_stop_service), None)
            needed = max(config.cooldown_seconds, last_cfg.cooldown_seconds if last_cfg else 0.0)
            cooldown = max(min(needed, status.last_stop_at + needed - now), 0.0)
        ready = gpu.latest_events(1, service=s.name, event="ready")
        stops = [n for n in active if n != s.name]
        start_plan, stop_plan = _plans(s.name, need, cooldown, stops, s.jobs, config.ready_timeout,
                                       cfg.busy_timeout_seconds, available)
        views.append(ServiceView(
            name=s.name, kind=s.kind, role=roles.get(s.name), state=s.state, memory_gb=s.memory_gb, need_gb=need,
            leases=s.leases, jobs=s.jobs, changed_at=s.changed_at, detail=s.detail,
            last_ready_at=ready[0].ts if ready else None, cooldown_remaining_seconds=round(cooldown, 1),
            breaker_retry_at=gpu.start_blocked(s.name), fits_now=None if available is None else available >= need,
            stops=stops, start_plan=start_plan, stop_plan=stop_plan))
    return GPUPanel(services=views, active=active, waiting=status.waiting, mem_available_gb=available,
                    memory_margin_gb=cfg.memory_margin_gb, fits_now=[v.name for v in views if v.fits_now],
                    cooldown_until=status.cooldown_until, events=gpu.latest_events(events))


# -- jobs --------------------------------------------------------------------------------------------
class StepView(BaseModel):
    """One step: ``seconds`` is its recorded duration, or how long it has run so far."""

    index: int
    name: str
    title: str
    service: str | None
    state: str
    attempt: int
    seconds: float | None
    error: str | None = None


class ArtifactView(BaseModel):
    """A job's file with its download link (``url``, served to the session only)."""

    name: str
    mime_type: str
    bytes: int
    sha256: str
    url: str
    is_image: bool


class JobView(BaseModel):
    """One job as the queue panel shows it."""

    job_id: str
    kind: str
    topic: str
    state: str
    message: str
    error: str | None
    step: int = Field(description="The step now running or next (1-based); total_steps when finished.")
    total_steps: int
    done_steps: int
    current_step: str | None
    gpu_service: str | None = Field(description="The GPU service the current step uses (null: CPU or idle).")
    eta: Eta
    gate: list[GateAttempt]
    steps: list[StepView]
    artifacts: list[ArtifactView]
    hero_image_url: str | None
    created_at: float
    finished_at: float | None
    can_cancel: bool
    can_retry: bool


class DayCount(BaseModel):
    """Jobs finished on one UTC day, by final state."""

    day: str
    done: int = 0
    failed: int = 0
    cancelled: int = 0


class JobsPanel(BaseModel):
    """The queue (active jobs, oldest first), recent finished jobs, counts, jobs per day."""

    active: list[JobView]
    recent: list[JobView]
    counts: dict[str, int]
    worker_here: bool
    per_day: list[DayCount]
    chart_svg: str


def artifact_url(job_id: str, name: str) -> str:
    """Where the dashboard serves an artifact (session required)."""
    return f"/dashboard/jobs/{quote(job_id, safe='')}/artifacts/{quote(name, safe='')}"


def job_view(job: JobStatus, expected: dict[str, float], now: float, service_of: dict[str, str | None]) -> JobView:
    """A :class:`JobView` of ``job``: ETA from ``expected`` durations, GPU service names from ``service_of``
    (role -> service)."""
    steps = []
    for s in job.steps:
        seconds = None
        if s.started_at is not None:
            end = s.finished_at if s.finished_at is not None else (now if s.state == "running" else None)
            seconds = None if end is None else round(max(end - s.started_at, 0.0), 1)
        steps.append(StepView(index=s.index, name=s.name, title=s.title, service=s.service, state=s.state,
                              attempt=s.attempt, seconds=seconds, error=s.error))
    running = next((s for s in job.steps if s.state == "running"), None)
    role = job.current_service or (running.service if running else None)
    finished = job.state in ("done", "failed", "cancelled")
    step = job.total_steps if finished else min(job.done_steps + 1, job.total_steps)
    artifacts = [ArtifactView(name=a.name, mime_type=a.mime_type, bytes=a.bytes, sha256=a.sha256,
                              url=artifact_url(job.job_id, a.name), is_image=a.mime_type.startswith("image/"))
                 for a in job.artifacts]
    hero = next((a.url for a in artifacts if a.is_image), None)
    return JobView(job_id=job.job_id, kind=job.kind, topic=job.topic, state=job.state, message=job.message,
                   error=job.error, step=step, total_steps=job.total_steps, done_steps=job.done_steps,
                   current_step=job.current_step or (running.name if running else None),
                   gpu_service=service_of.get(role, role) if role else None, eta=estimate(job, expected, now),
                   gate=job.gate, steps=steps, artifacts=artifacts, hero_image_url=hero, created_at=job.created_at,
                   finished_at=job.finished_at, can_cancel=job.state in JOB_ACTIVE,
                   can_retry=job.state in ("failed", "cancelled"))


def jobs_panel(src: Sources, recent: int = 20, days: int = 14) -> JobsPanel:
    """The queue panel from the job store (the pipeline's own records)."""
    pipeline, now = src.pipeline, src.now()
    expected = expected_durations(pipeline.store.step_durations())
    service_of = {role: pipeline.gpu_service_for(role) for role in ("sglang", "voxtral", "comfyui")}
    active, finished = [], []
    for summary in pipeline.list(limit=max(recent, 1) * 3).jobs:
        try:
            view = job_view(pipeline.status(summary.job_id), expected, now, service_of)
        except KeyError:  # deleted meanwhile
            continue
        (active if summary.state in JOB_ACTIVE else finished).append(view)
    active.sort(key=lambda j: j.created_at)
    keys = last_days(days, now)
    per_day = {key: DayCount(day=key) for key in keys}
    for state, at in pipeline.store.finished_since(now - days * DAY):
        row = per_day.get(day_key(at))
        if row is not None and state in ("done", "failed", "cancelled"):
            setattr(row, state, getattr(row, state) + 1)
    series = [(key, float(per_day[key].done + per_day[key].failed + per_day[key].cancelled)) for key in keys]
    return JobsPanel(active=active, recent=finished[:recent], counts=pipeline.store.count_by_state(),
                     worker_here=pipeline.worker.active, per_day=list(per_day.values()),
                     chart_svg=bar_chart(series, title=f"jobs finished per day, last {days} days", unit="jobs",
                                         color="#10b981"))


# -- earnings ----------------------------------------------------------------------------------------
class TokenView(BaseModel):
    """An issued L402 token (never its root key or invoice secret)."""

    token_id: str
    state: str
    tools: str
    price_sat: int
    calls_used: int
    max_calls: int
    created_at: int
    paid_at: int | None
    can_revoke: bool


class EarningsDay(BaseModel):
    """Sats earned on one UTC day (tokens paid that day), per tool set."""

    day: str
    sats: int
    by_tool: dict[str, int]


class EarningsPanel(BaseModel):
    """Lightning income: sats per tool per day, tokens outstanding, invoices issued vs paid."""

    enabled: bool
    sats_total: int = 0
    outstanding: int = Field(0, description="Paid tokens with calls left.")
    by_state: dict[str, int] = Field(default_factory=dict)
    earned_by_tool: dict[str, int] = Field(default_factory=dict, description="All-time sats per tool set.")
    invoices_issued: int = Field(0, description="Tokens (invoices) created in the window.")
    invoices_paid: int = Field(0, description="Of those, paid.")
    per_day: list[EarningsDay] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    tokens: list[TokenView] = Field(default_factory=list)
    chart_svg: str = ""


def earnings_panel(src: Sources, days: int = 14, tokens: int = 20) -> EarningsPanel:
    """The earnings panel from the L402 token store (``enabled=False`` when payments are off)."""
    if src.payments is None:
        return EarningsPanel(enabled=False)
    store, now = src.payments.store, src.now()
    stats = store.stats()
    since = int(now - days * DAY)
    ledger = store.ledger(since)
    keys = last_days(days, now)
    by_day: dict[str, Counter[str]] = {key: Counter() for key in keys}
    for tools, price, _created, paid_at, state in ledger:
        if paid_at is not None and paid_at >= since and state in ("paid", "revoked"):
            row = by_day.get(day_key(paid_at))
            if row is not None:
                row[tools] += price
    issued = [row for row in ledger if row[2] >= since]
    per_day = [EarningsDay(day=k, sats=sum(by_day[k].values()), by_tool=dict(by_day[k])) for k in keys]
    series = day_series(((float(p), float(price)) for _t, price, _c, p, s in ledger
                         if p is not None and s in ("paid", "revoked")), days, now)
    rows = [TokenView(token_id=t.token_id, state=t.state, tools=t.tools, price_sat=t.price_sat,
                      calls_used=t.calls_used, max_calls=t.max_calls, created_at=t.created_at, paid_at=t.paid_at,
                      can_revoke=t.state != "revoked") for t in store.tokens(None, tokens)]
    return EarningsPanel(
        enabled=True, sats_total=int(stats["sats_total"]), outstanding=int(stats["outstanding"]),
        by_state={str(k): int(v) for k, v in stats["by_state"].items()},
        earned_by_tool={k: int(v["sats"]) for k, v in stats["earned"].items()}, invoices_issued=len(issued),
        invoices_paid=sum(1 for r in issued if r[3] is not None), per_day=per_day,
        tools=sorted({t for d in per_day for t in d.by_tool}), tokens=rows,
        chart_svg=bar_chart(series, title=f"sats earned per day, last {days} days", unit="sats", color="#f59e0b"))


# -- index, KB, limits -------------------------------------------------------------------------------
class IndexPanel(BaseModel):
    """The blog index and the KB: counts, age, corpus warnings, KB errors, the last reload error."""

    articles: int
    passages: int
    built_at: str
    age_seconds: float
    from_cache: bool
    reloads: int
    reload_error: str | None
    corpus_warnings: list[str]
    kb_entries: int
    kb_errors: list[str]


def index_panel(src: Sources) -> IndexPanel:
    """The index panel from ``BlogService.health()`` and ``GateService.health()``."""
    h, g = src.blog.health(), src.gates.health()
    return IndexPanel(articles=int(h["articles"]), passages=int(h["passages"]),  # type: ignore[call-overload]
                      built_at=str(h["index_built_at"]), age_seconds=float(h["index_age_seconds"]),  # type: ignore[arg-type]
                      from_cache=bool(h["index_from_cache"]), reloads=src.blog.reloads,
                      reload_error=h["reload_error"],  # type: ignore[arg-type]
                      corpus_warnings=list(h["corpus_warnings"]),  # type: ignore[call-overload]
                      kb_entries=int(g["kb_entries"]), kb_errors=list(g["kb_errors"]))  # type: ignore[call-overload]


class LimitsPanel(BaseModel):
    """Rate-limit refusals (429) counted by this process since it started."""

    enabled: bool
    free_calls: str
    challenges: str
    refusals_total: int
    by_route: dict[str, int]
    by_tool: dict[str, int]


def limits_panel(src: Sources) -> LimitsPanel:
    """Refusals from this process's Prometheus counters: HTTP 429 by route, tool calls ``rate_limited``."""
    from sovereign_mcp.observability.metrics import HTTP_REQUESTS, TOOL_CALLS

    by_route: Counter[str] = Counter()
    for metric in HTTP_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("status") == "429":
                by_route[sample.labels.get("route", "?")] += int(sample.value)
    by_tool: Counter[str] = Counter()
    for metric in TOOL_CALLS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("outcome") == "rate_limited":
                by_tool[sample.labels.get("tool", "?")] += int(sample.value)
    rl = src.settings.rate_limit
    return LimitsPanel(enabled=rl.enabled, free_calls=rl.free_calls, challenges=rl.challenges,
                       refusals_total=sum(by_route.values()), by_route=dict(by_route), by_tool=dict(by_tool))
