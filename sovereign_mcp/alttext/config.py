"""``[alt_text]``: limits of the captioner. A leaf (pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AltTextSettings(BaseModel):
    """How large an image may be, how long alt text should be, and how long a caption may wait for the GPU."""

    model_config = ConfigDict(extra="forbid")

    max_image_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024,
                                 description="Largest image accepted, bytes (decoded).")
    max_alt_chars: int = Field(125, ge=20, le=1000, description="Alt text longer than this is flagged (a "
                               "screen-reader heuristic, not a rule; WAI images tutorial).")
    max_tokens: int = Field(400, ge=50, le=4096, description="Answer cap of the vision model, tokens.")
    gpu_wait_seconds: float = Field(30.0, ge=0, le=3600, description="Longest wait for the lease of a loaded "
                                    "SGLang service (a switch in progress), s; then the chain is asked as is.")
    deadline_seconds: float = Field(120.0, gt=0, le=3600, description="Budget of one caption over every "
                                    "provider of the chain, s.")
