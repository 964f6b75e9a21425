"""The knowledge base's vocabulary, declared once: scopes, severities and the entry types outside the gate.

A leaf (imports only pydantic). Scopes: ``cross-project`` applies to every generated text, ``article`` and
``podcast`` to one kind each (:data:`KIND_SCOPES`), ``sglang`` holds the SGLang diagnoses (any other
lower-case word is a valid scope of the operator's own). Entry types: the gate's rule types are named by
their registry (:data:`sovereign_mcp.gate.rules.registry.RULES`), the SGLang types by
:data:`sovereign_mcp.diagnostics.models.SGLANG_TYPES`, and ``guidance`` (prompt prose, never matched) here.
Every entry's data model derives from :class:`EntryData`, so an unknown data key is an error and a typo
cannot silently disable a rule.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

CROSS_PROJECT, ARTICLE, PODCAST, SGLANG = "cross-project", "article", "podcast", "sglang"
KIND_SCOPES: dict[str, tuple[str, ...]] = {  # which KB scopes apply to each kind of generated text
    ARTICLE: (CROSS_PROJECT, ARTICLE),
    PODCAST: (CROSS_PROJECT, PODCAST),
}
SGLANG_SCOPES: tuple[str, ...] = (SGLANG,)
GUIDANCE = "guidance"  # the entry type of prompt prose

Severity = Literal["low", "medium", "high"]
LEVELS: dict[str, str] = {"low": "suggestion", "medium": "warning", "high": "error"}  # Vale's level names
"""KB severity -> Vale level (``suggestion`` | ``warning`` | ``error``); only errors block publishing."""


class EntryData(BaseModel):
    """Base of every entry type's data (front-matter keys beside the entry's own, and the ```` ```yaml ````
    block): extra keys are refused."""

    model_config = ConfigDict(extra="forbid")

    def prompt_lines(self) -> list[str]:
        """What a generation prompt says about this data (phrases to avoid, allowed words...); none by default."""
        return []
