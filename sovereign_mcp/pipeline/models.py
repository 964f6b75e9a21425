"""Job kinds, their steps (with the GPU service each needs) and the records the pipeline reports.

Steps of one kind form tracks (article, podcast, image). A step may run once every step it comes
``after`` is done; tracks are independent except in ``full``, where the podcast script is written from
the finished article. Steps that need the same GPU service can therefore be batched across the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, Field

from sovereign_mcp.pipeline.config import Role

JobKind = Literal["article", "podcast", "hero_image", "full"]
JOB_KINDS: tuple[JobKind, ...] = ("article", "podcast", "hero_image", "full")
JobState = Literal["queued", "running", "waiting", "done", "failed", "cancelled"]
StepState = Literal["pending", "running", "done", "failed", "cancelled"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running", "waiting")
FINISHED: tuple[JobState, ...] = ("done", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step: ``service`` is the GPU role it needs (``None`` = CPU only)."""

    name: str
    track: str
    service: Role | None
    after: tuple[str, ...]
    title: str


ARTICLE_STEPS = (
    StepSpec("article_part1", "article", "sglang", (), "article part 1"),
    StepSpec("article_part2", "article", "sglang", ("article_part1",), "article part 2"),
    StepSpec("article_naturalize", "article", "sglang", ("article_part2",), "naturalize the article"),
    StepSpec("article_gate", "article", None, ("article_naturalize",), "quality gate (article)"),
)
PODCAST_STEPS = (
    StepSpec("podcast_script", "podcast", "sglang", (), "two-host podcast script"),
    StepSpec("podcast_naturalize", "podcast", "sglang", ("podcast_script",), "naturalize the script"),
    StepSpec("podcast_gate", "podcast", None, ("podcast_naturalize",), "quality gate (podcast)"),
    StepSpec("podcast_tts", "podcast", "voxtral", ("podcast_gate",), "Voxtral speech, one file per turn"),
    StepSpec("podcast_mix", "podcast", None, ("podcast_tts",), "mix the turns into one MP3 (ffmpeg)"),
)
IMAGE_STEPS = (
    StepSpec("hero_image", "image", "comfyui", (), "hero image (ComfyUI FLUX.1-schnell)"),
    StepSpec("hero_alt", "image", "sglang", ("hero_image",), "alt text for the hero image (vision model)"),
)


def _full() -> tuple[StepSpec, ...]:
    script = PODCAST_STEPS[0]
    podcast = (StepSpec(script.name, script.track, script.service, ("article_gate",), script.title),
               *PODCAST_STEPS[1:])
    return (*ARTICLE_STEPS, *podcast, *IMAGE_STEPS)


KIND_STEPS: dict[str, tuple[StepSpec, ...]] = {
    "article": ARTICLE_STEPS,
    "podcast": PODCAST_STEPS,
    "hero_image": IMAGE_STEPS,
    "full": _full(),
}
# gate step -> the steps regenerated when it fails and retries are left (the gate step itself included)
RETRY_GROUPS: dict[str, tuple[str, ...]] = {
    "article_gate": ("article_part1", "article_part2", "article_naturalize", "article_gate"),
    "podcast_gate": ("podcast_script", "podcast_naturalize", "podcast_gate"),
}
ARTIFACT_MIME = {".md": "text/markdown", ".txt": "text/plain", ".mp3": "audio/mpeg", ".wav": "audio/wav",
                 ".png": "image/png", ".json": "application/json"}


def spec_of(kind: str, name: str) -> StepSpec:
    """The step ``name`` of job kind ``kind``. Raises ``KeyError``."""
    for spec in KIND_STEPS[kind]:
        if spec.name == name:
            return spec
    raise KeyError(f"job kind {kind!r} has no step {name!r}")


# -- records ---------------------------------------------------------------------------------------
class ArtifactOut(BaseModel):
    """A file a job produced, under ``<data_dir>/artifacts/<job_id>/``; read it at ``uri``."""

    name: str
    uri: str
    mime_type: str
    bytes: int
    sha256: str
    step: str
    created_at: float


class StepOut(BaseModel):
    """One step as recorded; ``service`` is the GPU role (null = CPU only)."""

    index: int
    name: str
    title: str
    service: str | None
    state: StepState
    attempt: int
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    detail: dict | None = None


class GateAttempt(BaseModel):
    """One quality-gate verdict on one generation attempt."""

    track: str
    attempt: int
    verdict: str
    counts: dict[str, int] = Field(default_factory=dict)
    findings: list[dict] = Field(default_factory=list)


class JobStatus(BaseModel):
    """A job: its state, progress (``done_steps`` of ``total_steps``), steps, gate history and artifacts."""

    job_id: str
    kind: JobKind
    topic: str
    source_slugs: list[str] = Field(default_factory=list)
    state: JobState
    message: str = ""
    error: str | None = None
    current_step: str | None = None
    current_service: str | None = None
    done_steps: int
    total_steps: int
    progress: float = Field(description="done_steps / total_steps, 0..1")
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    attempts: dict[str, int] = Field(default_factory=dict, description="Generation attempt per track.")
    gate: list[GateAttempt] = Field(default_factory=list)
    steps: list[StepOut] = Field(default_factory=list)
    artifacts: list[ArtifactOut] = Field(default_factory=list)


class JobSummary(BaseModel):
    """One line of ``list_jobs``."""

    job_id: str
    kind: JobKind
    topic: str
    state: JobState
    message: str = ""
    done_steps: int
    total_steps: int
    current_service: str | None = None
    created_at: float
    updated_at: float


class JobList(BaseModel):
    jobs: list[JobSummary]


class JobTicket(BaseModel):
    """What ``trigger_pipeline`` returns at once: poll ``pipeline_status(job_id)``."""

    job_id: str
    kind: JobKind
    state: JobState
    steps: list[str]
    status_uri: str
    message: str
    warnings: list[str] = Field(default_factory=list, description="What the job will wait for, if anything "
                                "is known to be in the way now (a GPU service that failed to start, no "
                                "inference provider), with the time of the next try.")
