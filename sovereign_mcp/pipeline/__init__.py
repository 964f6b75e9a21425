"""Content pipeline: persistent jobs that turn a topic into an article, a podcast MP3 and a hero image.

Job kinds ``article`` (part 1 -> part 2 -> naturalize with the KB injected -> quality gate, regenerated on
failure up to ``gate_retries`` times), ``podcast`` (HEXABELLA / CIPHERFOX script -> naturalize -> podcast
gate -> Voxtral per turn -> one MP3 via ffmpeg), ``hero_image`` (ComfyUI FLUX.1-schnell) and ``full`` (all
three). Jobs live in SQLite under the data dir and resume after the last finished step; a worker runs
the steps grouped by GPU service through the GPU manager.

Modules: :mod:`~.config` (settings), :mod:`~.models` (kinds, steps, records), :mod:`~.store` (SQLite and
artifacts), :mod:`~.scheduler` (step order), :mod:`~.steps` (what each step does), :mod:`~.media`
(Voxtral, ComfyUI, ffmpeg, file formats), :mod:`~.worker` and :mod:`~.service` (import them directly:
this package's ``__init__`` stays light because :mod:`sovereign_mcp.config` imports the settings).
"""

from sovereign_mcp.pipeline.config import JobOptions, PipelineSettings
from sovereign_mcp.pipeline.models import JOB_KINDS, KIND_STEPS, JobKind, JobStatus, JobTicket, StepSpec

__all__ = ["JOB_KINDS", "KIND_STEPS", "JobKind", "JobOptions", "JobStatus", "JobTicket", "PipelineSettings",
           "StepSpec"]
