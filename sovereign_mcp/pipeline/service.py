"""The pipeline as a long-lived service: submit, inspect and cancel jobs; own the worker and the clients.

Used by the MCP tools (``sovereign_mcp.server.pipeline``) and the CLI (``sovereign-mcp pipeline ...``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.models import Article
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.gpu.manager import GPUServiceManager
from sovereign_mcp.inference.client import ChatClient
from sovereign_mcp.pipeline.config import ROLES, JobOptions
from sovereign_mcp.pipeline.deps import PipelineDeps
from sovereign_mcp.pipeline.media import find_ffmpeg
from sovereign_mcp.pipeline.models import FINISHED, JOB_KINDS, KIND_STEPS, JobList, JobStatus, JobTicket
from sovereign_mcp.pipeline.outlook import outlook
from sovereign_mcp.pipeline.store import JOB_ID_RE, JobNotFound, JobStore
from sovereign_mcp.pipeline.worker import PipelineWorker

log = logging.getLogger(__name__)

MAX_TOPIC = 2000
MAX_SLUGS = 20


class PipelineInputError(ValueError):
    """A job request that cannot be queued (unknown kind or slug, bad option, ffmpeg missing)."""


def artifact_uri(job_id: str, name: str) -> str:
    """The MCP resource URI of an artifact."""
    return f"pipeline://jobs/{job_id}/artifacts/{name}"


class PipelineService:
    """Jobs in ``<data_dir>/pipeline``; artifacts in ``<data_dir>/artifacts``.

    Args:
        settings: the effective settings (``pipeline``, ``gpu``, ``inference``, ``kb``, ``data_dir``).
        gates: the quality gate (default: one over ``settings.kb`` with facts from ``articles``).
        articles: the published articles (sources for ``source_slugs`` and gate facts).
        chat: the inference chain (default: from ``settings.inference``).
        gpu: the GPU manager; default one over ``settings.gpu`` when ``pipeline.manage_gpu``, else none.
    """

    def __init__(self, settings: Settings, *, gates: GateService | None = None,
                 articles: Callable[[], Sequence[Article]] | None = None, chat: ChatClient | None = None,
                 gpu: GPUServiceManager | None = None) -> None:
        self.settings = settings
        self.config = settings.pipeline
        self.store = JobStore(settings.data_dir, database_url=settings.database_url)
        self._articles = articles or (lambda: ())
        try:
            self.deps = PipelineDeps(settings, self.store, gates=gates, articles=self._articles, chat=chat, gpu=gpu)
        except ValueError as exc:
            raise PipelineInputError(str(exc)) from None
        self.worker = PipelineWorker(self.deps)

    # -- collaborators (built on first use, shared with the worker) ------------------------------------
    @property
    def gates(self) -> GateService:
        return self.deps.gates

    @property
    def chat(self) -> ChatClient:
        return self.deps.chat

    @property
    def gpu(self) -> GPUServiceManager:
        return self.deps.gpu

    def gpu_service_for(self, role: str | None) -> str | None:
        """The ``[[gpu.services]]`` name that serves ``role``, or ``None`` when it is not managed."""
        return self.deps.gpu_service_for(role)

    # -- jobs -----------------------------------------------------------------------------------------
    def _sources(self, slugs: list[str]) -> str:
        if not slugs:
            return ""
        by_slug = {a.slug: a for a in self._articles()}
        missing = [s for s in slugs if s not in by_slug]
        if missing:
            raise PipelineInputError(f"unknown article slug(s): {', '.join(missing)} (see search_blog)")
        parts = [f"### {by_slug[s].title} ({by_slug[s].url})\n\n{by_slug[s].body.strip()}" for s in slugs]
        text = "\n\n".join(parts)
        return text[: self.config.max_source_chars]

    def submit(self, kind: str, topic: str, source_slugs: list[str] | None = None,
               options: dict[str, Any] | None = None) -> JobTicket:
        """Queue a job and return at once.

        Raises:
            PipelineInputError: unknown kind, empty topic, unknown slug, invalid options, or ffmpeg missing
                for a job with a podcast.
        """
        if kind not in JOB_KINDS:
            raise PipelineInputError(f"unknown job kind {kind!r}; use one of {', '.join(JOB_KINDS)}")
        topic = " ".join((topic or "").split())
        if not topic or len(topic) > MAX_TOPIC:
            raise PipelineInputError(f"topic must be 1 to {MAX_TOPIC} characters")
        slugs = list(dict.fromkeys(source_slugs or []))
        if len(slugs) > MAX_SLUGS:
            raise PipelineInputError(f"at most {MAX_SLUGS} source slugs")
        try:
            opts = JobOptions.model_validate(options or {})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise PipelineInputError(f"invalid options: {problems}") from None
        if kind in ("podcast", "full"):
            try:
                find_ffmpeg(self.config.ffmpeg)
            except Exception as exc:
                raise PipelineInputError(str(exc)) from None
        sources = self._sources(slugs)
        job_id = self.store.create(kind, topic, slugs, sources, opts.model_dump(exclude_none=True))
        self.worker.wake()
        steps = [s.name for s in KIND_STEPS[kind]]
        where = "queued" if self.worker.active or self.config.worker else "queued (no worker running)"
        log.info("pipeline job %s queued: %s %r", job_id, kind, topic)
        warnings = outlook(self.deps, kind)
        message = f"{where}: {len(steps)} step{'s' if len(steps) != 1 else ''}; poll pipeline_status('{job_id}')"
        return JobTicket(job_id=job_id, kind=kind, state="queued", steps=steps,
                         status_uri=f"pipeline://jobs/{job_id}", warnings=warnings,
                         message="; ".join([message, *warnings]))

    def status(self, job_id: str) -> JobStatus:
        """Raises :class:`JobNotFound`."""
        if not JOB_ID_RE.match(job_id or ""):
            raise JobNotFound(job_id)
        return self.store.status(job_id, artifact_uri)

    def list(self, state: str | None = None, limit: int = 50) -> JobList:
        return JobList(jobs=self.store.summaries(state, limit))

    def cancel(self, job_id: str) -> JobStatus:
        """Cancel now if no step runs, else at the next step boundary. Raises :class:`JobNotFound`."""
        if not JOB_ID_RE.match(job_id or ""):
            raise JobNotFound(job_id)
        self.store.cancel(job_id)
        self.worker.wake()
        return self.status(job_id)

    def retry(self, job_id: str) -> JobStatus:
        """Queue a failed or cancelled job again from its last finished step (:meth:`JobStore.resume`). Nothing
        is charged: the job keeps the payment it was queued with.

        Raises:
            JobNotFound: no such job.
            JobNotRetriable: the job is not failed or cancelled.
        """
        if not JOB_ID_RE.match(job_id or ""):
            raise JobNotFound(job_id)
        steps = self.store.resume(job_id)
        log.info("pipeline job %s retried: %s run again", job_id, ", ".join(steps) or "no step")
        self.worker.wake()
        return self.status(job_id)

    def artifact(self, job_id: str, name: str) -> tuple[Path, str]:
        """``(path, mime type)``. Raises :class:`~sovereign_mcp.pipeline.store.ArtifactNotFound`."""
        path, mime, _ = self.store.artifact(job_id, name)
        return path, mime

    def services(self) -> dict[str, Any]:
        """GPU services as the manager records them, the role each serves, pending steps per role, the worker."""
        roles = {role: self.gpu_service_for(role) for role in ROLES}
        out: dict[str, Any] = {"roles": roles, "pending_steps": self.store.pending_by_service(),
                               "active_jobs": self.store.active_count(), "worker_here": self.worker.active,
                               "manage_gpu": self.config.manage_gpu}
        if self.config.manage_gpu:
            out["gpu"] = self.gpu.status().model_dump(mode="json")
        return out

    # -- lifecycle ------------------------------------------------------------------------------------
    def start_worker(self) -> None:
        self.worker.start()

    def run_until_finished(self, job_id: str) -> JobStatus:
        """Run the worker in this thread until ``job_id`` is finished (if another process holds the worker
        lock, just wait for it)."""
        self.worker.run(until=lambda: self.store.job_row(job_id)["state"] in FINISHED)
        return self.status(job_id)

    def close(self) -> None:
        self.worker.stop()
        self.deps.close()
        self.store.close()
