"""Registers the content pipeline on a FastMCP server: ``trigger_pipeline``, ``pipeline_status``,
``cancel_pipeline``, ``retry_pipeline``, ``list_jobs``, the ``pipeline://jobs/{job_id}`` and
``pipeline://jobs/{job_id}/artifacts/{name}`` resources, and the worker (started with the server's
lifespan when ``pipeline.worker`` is on).

Pricing is not decided here: the payments layer gates ``trigger_pipeline`` by name (hence its ``l402``
argument, as on ``validate_quality``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.resources import ResourceContent, ResourceResult
from fastmcp.server.providers import Provider
from fastmcp.tools import ToolResult
from mcp.types import ResourceLink, TextContent
from pydantic import Field, TypeAdapter

from sovereign_mcp.auth.verifier import operator_only
from sovereign_mcp.pipeline.models import FINISHED, JobKind, JobList, JobState, JobStatus, JobTicket
from sovereign_mcp.pipeline.service import PipelineInputError, PipelineService
from sovereign_mcp.pipeline.store import ArtifactNotFound, JobNotFound, JobNotRetriable
from sovereign_mcp.server.annotations import CANCELS, READ_ONLY, STARTS_WORK

TRIGGER, CANCEL, READ = STARTS_WORK, CANCELS, READ_ONLY

KindArg = Annotated[JobKind, Field(description="'article', 'podcast', 'hero_image' or 'full' (all three).")]
TopicArg = Annotated[str, Field(min_length=1, max_length=2000, description="What the piece is about.")]
Slugs = Annotated[list[Annotated[str, Field(max_length=300)]] | None, Field(
    max_length=20, description="Published articles (slugs from search_blog) whose text is injected as sources.")]
Options = Annotated[dict[str, Any] | None, Field(max_length=20, description=(
    "Optional overrides: voices {SPEAKER: voice}, speed (<= 1.0), image_prompt, seed, width, height, "
    "gate_retries."))]
JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="The job id.")]
Wait = Annotated[float, Field(ge=0, le=300, description="Wait up to this many seconds for the job to finish, "
                              "reporting progress meanwhile (0 = answer at once).")]
StateArg = Annotated[JobState | None, Field(description="Only jobs in this state.")]
Limit = Annotated[int, Field(ge=1, le=500)]
L402Arg = Annotated[str | None, Field(max_length=8000, description=(
    "Paid tool: the credential 'L402 <macaroon>:<hex preimage>' after paying, for clients that cannot "
    "send an Authorization header or request _meta."))]
STATUS_SCHEMA = TypeAdapter(JobStatus).json_schema(mode="serialization")


class _WorkerLifespan(Provider):
    """Starts the job worker with the server and stops it on shutdown (no tools of its own)."""

    def __init__(self, pipeline: PipelineService) -> None:
        super().__init__()
        self.pipeline = pipeline

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        if self.pipeline.config.worker:
            self.pipeline.start_worker()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(self.pipeline.worker.stop, 5.0)


def _status_result(status: JobStatus) -> ToolResult:
    links = [ResourceLink(type="resource_link", uri=a.uri, name=a.name, mime_type=a.mime_type, size=a.bytes,
                          description=f"{a.name} of job {status.job_id}, sha256 {a.sha256}")
             for a in status.artifacts]
    data = status.model_dump(mode="json")
    return ToolResult(content=[TextContent(type="text", text=json.dumps(data)), *links], structured_content=data)


def register_pipeline(mcp: FastMCP, pipeline: PipelineService, operator_auth: bool = True) -> None:
    """Add the pipeline's tools and resources to ``mcp`` and tie its worker to the server's lifespan.

    With ``operator_auth``, ``cancel_pipeline``, ``retry_pipeline``, ``list_jobs`` and ``gpu_services`` are
    operator-only (hidden from other callers' tool lists); ``pipeline_status`` and the job resources answer
    whoever holds the job id.
    """
    mcp.add_provider(_WorkerLifespan(pipeline))
    operator = operator_only(operator_auth)

    @mcp.tool(annotations=TRIGGER)
    def trigger_pipeline(kind: KindArg, topic: TopicArg, source_slugs: Slugs = None, options: Options = None,
                         l402: L402Arg = None) -> JobTicket:
        """Queue a content job and return its job id at once (the work runs in the background).

        `article`: part 1 -> part 2 -> naturalize with the knowledge base injected -> quality gate
        (regenerated with the findings on failure, then aborted). `podcast`: HEXABELLA / CIPHERFOX
        script -> naturalize -> podcast gate -> Voxtral speech -> one MP3. `hero_image`: FLUX.1-schnell
        on ComfyUI -> PNG. `full`: all three. Poll pipeline_status(job_id).
        """
        try:
            return pipeline.submit(kind, topic, source_slugs, options)
        except PipelineInputError as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(annotations=READ, output_schema=STATUS_SCHEMA)
    async def pipeline_status(job_id: JobId, wait_seconds: Wait = 0, ctx: Context | None = None) -> ToolResult:
        """A job's state (queued | running | waiting | done | failed | cancelled), progress (step i of n and
        a message), the GPU service in use, every step, the quality-gate history (findings of each
        attempt) and the artifacts as resource links (pipeline://jobs/{id}/artifacts/{name}, with sha256).
        """
        try:
            status = await anyio.to_thread.run_sync(pipeline.status, job_id)
        except JobNotFound as exc:
            raise ToolError(str(exc)) from None
        deadline = anyio.current_time() + wait_seconds
        seen: tuple[int, str] | None = None
        while True:
            mark = (status.done_steps, status.message)
            if ctx is not None and mark != seen:
                seen = mark
                await ctx.report_progress(status.done_steps, status.total_steps, status.message)
            if status.state in FINISHED or anyio.current_time() >= deadline:
                return _status_result(status)
            await anyio.sleep(min(0.5, max(0.0, deadline - anyio.current_time())))
            status = await anyio.to_thread.run_sync(pipeline.status, job_id)

    @mcp.tool(annotations=CANCEL, auth=operator)
    def cancel_pipeline(job_id: JobId) -> JobStatus:
        """Cancel a job: at once if no step is running, else when the current step ends. Finished steps
        and artifacts are kept."""
        try:
            return pipeline.cancel(job_id)
        except JobNotFound as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(annotations=TRIGGER, auth=operator)
    def retry_pipeline(job_id: JobId) -> JobStatus:
        """Queue a failed or cancelled job again from its last finished step: finished steps and artifacts are
        kept, a job that failed at the quality gate regenerates that track once more. Nothing is charged
        again (the job keeps the payment it was queued with)."""
        try:
            return pipeline.retry(job_id)
        except (JobNotFound, JobNotRetriable) as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(annotations=READ, auth=operator)
    def list_jobs(state: StateArg = None, limit: Limit = 50) -> JobList:
        """Pipeline jobs, newest first: id, kind, topic, state, message, progress, GPU service in use."""
        return pipeline.list(state, limit)

    @mcp.tool(annotations=READ, auth=operator)
    def gpu_services() -> dict[str, Any]:
        """The GPU services as recorded (state, memory, leases, cooldown, MemAvailable), the step role each
        serves, pending steps per role and active jobs. Reads records only; starts or probes nothing."""
        return pipeline.services()

    @mcp.resource("pipeline://jobs/{job_id}", name="pipeline-job", mime_type="application/json",
                  description="One pipeline job's status as JSON (same as pipeline_status).")
    def job_resource(job_id: str) -> str:
        try:
            return pipeline.status(job_id).model_dump_json()
        except JobNotFound as exc:
            raise ResourceError(str(exc)) from None

    @mcp.resource("pipeline://jobs/{job_id}/artifacts/{name}", name="pipeline-artifact",
                  mime_type="application/octet-stream",
                  description="A file a pipeline job produced: article.md, podcast_script.txt, podcast.mp3, hero.png.")
    def artifact_resource(job_id: str, name: str) -> ResourceResult:
        try:
            path, mime = pipeline.artifact(job_id, name)
        except (ArtifactNotFound, JobNotFound) as exc:
            raise ResourceError(str(exc)) from None
        data = path.read_bytes()
        content = data.decode("utf-8") if mime.startswith("text/") else data
        return ResourceResult([ResourceContent(content, mime_type=mime)])
