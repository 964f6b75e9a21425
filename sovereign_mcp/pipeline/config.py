"""Settings of the content pipeline (TOML section ``[pipeline]``) and the per-job options.

Where the pipeline's services live (the operator's stack write-up; vLLM-Omni ``docs/serving/speech_api.md``; ComfyUI
``server.py`` routes): Voxtral TTS
served by vLLM-Omni on port 8001 (``POST /v1/audio/speech``, ``GET /v1/audio/voices``), ComfyUI with
FLUX.1-schnell on port 8188. Text generation goes through the ``[inference]`` chain (SGLang, then
llama.cpp). Each step names the GPU service role it needs (``sglang``, ``voxtral``, ``comfyui``); the role
maps to a ``[[gpu.services]]`` entry of the same ``kind`` unless ``services`` names one explicitly.

Voxtral speed stays at or below 1.0: faster sounds broken (operator's voice findings).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["sglang", "voxtral", "comfyui"]
ROLES: tuple[Role, ...] = ("sglang", "voxtral", "comfyui")


def _check_http(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


class PipelineSettings(BaseModel):
    """The content pipeline: job worker, generation, gate retries, Voxtral, ComfyUI and ffmpeg."""

    model_config = ConfigDict(extra="forbid")

    worker: bool = Field(True, description="Run the job worker inside 'sovereign-mcp serve'.")
    gate_retries: int = Field(2, ge=0, le=20, description="Regenerations after a failed quality gate before "
                              "the job is aborted with the findings.")
    max_tokens: int = Field(4096, ge=16, le=131_072, description="Answer cap of one generation call, tokens.")
    temperature: float | None = Field(0.7, ge=0, le=2)
    max_source_chars: int = Field(60_000, ge=0, description="Source articles injected into prompts, characters.")
    manage_gpu: bool = Field(True, description="Acquire each step's GPU service through the GPU manager.")
    services: dict[Role, str] = Field(default_factory=dict, description="Role -> [[gpu.services]] name; a missing "
                                      "role maps to the service of that kind, if any (none = not managed).")
    switch_after_seconds: float = Field(3600.0, ge=0, description="Longest time one GPU service stays loaded "
                                        "while other services' steps wait (fairness; 0 = no limit), s.")
    idle_poll_seconds: float = Field(1.0, gt=0, le=60, description="Worker poll period when idle, s.")
    inference_poll_seconds: float = Field(5.0, gt=0, le=600, description="Readiness poll while every inference "
                                          "provider is down (jobs wait rather than fail), s.")
    voxtral_url: str = "http://127.0.0.1:8001"
    voxtral_model: str = "mistralai/Voxtral-4B-TTS-2603"
    voices: dict[str, str] = Field(default_factory=lambda: {"HEXABELLA": "neutral_female",
                                                            "CIPHERFOX": "neutral_male"},
                                   description="Speaker -> Voxtral voice; unknown voices fall back to the listed ones.")
    speed: float = Field(1.0, ge=0.25, le=1.0, description="Voxtral speed; above 1.0 sounds broken.")
    tts_timeout: float = Field(300.0, gt=0, description="One /v1/audio/speech request, s.")
    comfyui_url: str = "http://127.0.0.1:8188"
    checkpoint: str = Field("flux1-schnell-fp8.safetensors", description="ComfyUI checkpoint of FLUX.1-schnell.")
    image_width: int = Field(1344, ge=64, le=4096, multiple_of=16)
    image_height: int = Field(768, ge=64, le=4096, multiple_of=16)
    image_timeout: float = Field(600.0, gt=0, description="Longest wait for one ComfyUI prompt, s.")
    image_poll_seconds: float = Field(1.0, gt=0, le=60)
    ffmpeg: str = Field("ffmpeg", description="ffmpeg binary (name on PATH or absolute path).")
    mp3_bitrate: str = Field("128k", pattern=r"^\d{2,3}k$")
    http_retries: int = Field(3, ge=1, le=10, description="Attempts of one Voxtral/ComfyUI request.")
    media_restarts: int = Field(2, ge=0, le=10, description="Restarts of a Voxtral/ComfyUI service that died "
                                "mid-step before the job waits instead (the step resumes from its last turn).")
    gpu_retry_seconds: float = Field(60.0, gt=0, le=86_400, description="How long a job waits before its GPU "
                                     "service is tried again after it could not be had (memory, failed start), s.")

    @field_validator("voxtral_url", "comfyui_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_http(value)


class JobOptions(BaseModel):
    """Per-job overrides a caller may pass to ``trigger_pipeline`` (``options``)."""

    model_config = ConfigDict(extra="forbid")

    voices: dict[str, str] | None = Field(None, max_length=20, description="Speaker -> Voxtral voice for this job.")
    speed: float | None = Field(None, ge=0.25, le=1.0, description="Voxtral speed (<= 1.0).")
    image_prompt: str | None = Field(None, max_length=2000, description="Hero image prompt (default: from topic).")
    seed: int | None = Field(None, ge=0, le=2**53)
    width: int | None = Field(None, ge=64, le=4096, multiple_of=16)
    height: int | None = Field(None, ge=64, le=4096, multiple_of=16)
    gate_retries: int | None = Field(None, ge=0, le=20)
