"""Knowledge-base entries: one Markdown file each, front matter + prose + optional fenced YAML data.

Front matter (validated here): ``id`` (lower-case, ``a-z0-9-``), ``type`` (a key of :data:`DATA_MODELS`),
``scope`` (``cross-project``, ``article``, ``podcast``, ``sglang`` or any other lower-case word; see
:mod:`sovereign_mcp.kb.entry_types`), ``severity`` (``low`` | ``medium`` | ``high`` -> Vale levels
``suggestion`` | ``warning`` | ``error``), ``title``, optional ``message`` / ``suggestion`` templates
(``{match}`` is replaced by the matched text). Rule data comes from the front matter or from a
```` ```yaml ```` block in the body (the block wins key by key). Each ``type`` has its data model, declared
where it is used: the gate's rule types in :mod:`sovereign_mcp.gate.rules` (one file each), the SGLang
types in :mod:`sovereign_mcp.diagnostics.models`, ``affiliate`` programs in
:mod:`sovereign_mcp.affiliate.programs`, ``guidance`` here; unknown data keys are errors so a
typo cannot silently disable a rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sovereign_mcp.affiliate.programs import AFFILIATE_TYPES
from sovereign_mcp.diagnostics.models import SGLANG_RULE_TYPES, SGLANG_TYPES
from sovereign_mcp.gate.rules.registry import RULES
from sovereign_mcp.kb.entry_types import GUIDANCE, KIND_SCOPES, LEVELS, EntryData, Severity

EntryId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]


class GuidanceData(EntryData):
    """``guidance``: prose (and optional example lists) injected into prompts; never matched."""

    examples: list[str] = Field(default_factory=list)

    def prompt_lines(self) -> list[str]:
        return ["Examples: " + " | ".join(self.examples)] if self.examples else []


DATA_MODELS: dict[str, type[EntryData]] = {**RULES, GUIDANCE: GuidanceData, **SGLANG_TYPES, **AFFILIATE_TYPES}
"""Entry type -> its data model, for every type the loader accepts."""
RULE_TYPES: tuple[str, ...] = (*RULES, *SGLANG_RULE_TYPES)
"""The types that are matched against something (gate rules and SGLang diagnoses), not only read."""


class KBEntry(BaseModel):
    """A validated knowledge-base entry. ``data`` is the type-specific model; ``path`` its file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: EntryId
    type: Literal[tuple(DATA_MODELS)]  # type: ignore[valid-type]
    scope: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    severity: Severity = "low"
    title: str = Field(min_length=1)
    message: str | None = None
    suggestion: str | None = None
    body: str = ""
    data: Any = None
    path: Path | None = None

    @property
    def level(self) -> str:
        """Vale-style level: suggestion | warning | error."""
        return LEVELS[self.severity]

    @property
    def is_rule(self) -> bool:
        return self.type in RULE_TYPES

    @property
    def is_gate_rule(self) -> bool:
        """Whether the quality gate runs this entry (its type is in the gate's rule registry)."""
        return self.type in RULES


class KBError(BaseModel):
    """A KB file that failed to load: which file, which field, what is wrong."""

    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


__all__ = ["DATA_MODELS", "KIND_SCOPES", "LEVELS", "RULE_TYPES", "EntryId", "GuidanceData", "KBEntry", "KBError",
           "Severity"]
