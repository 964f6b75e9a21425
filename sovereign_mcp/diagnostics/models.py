"""The KB data of the ``sglang`` scope, read by ``diagnose_sglang``: ``diagnosis`` (a known failure mode:
matchers and fix), ``flag_catalog`` (every known launch flag) and ``baseline`` (settings known to work on
some hardware). Validated by the KB loader like every entry's data (:data:`SGLANG_TYPES`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from sovereign_mcp.kb.entry_types import EntryData

DIAGNOSIS, FLAG_CATALOG, BASELINE = "diagnosis", "flag_catalog", "baseline"


class FlagCondition(EntryData):
    """A launch-flag test; ``aliases`` are other spellings of the same flag (SGLang accepts several)."""

    flag: str = Field(pattern=r"^--[a-z0-9-]+$")
    aliases: list[Annotated[str, Field(pattern=r"^--[a-z0-9-]+$")]] = Field(default_factory=list)
    equals: str | None = None
    present: bool | None = None
    gt: float | None = None
    lt: float | None = None


class EnvCondition(EntryData):
    """An environment test. ``truthy`` compares the value read as a boolean the way SGLang's EnvBool
    does (``1``, ``true``, ``yes``, ``y``, case-insensitive, are true; unset is false)."""

    name: str
    equals: str | None = None
    not_equals: str | None = None
    missing: bool | None = None
    truthy: bool | None = None


class DiagnosisData(EntryData):
    """``diagnosis``: matchers and fix used by ``diagnose_sglang``. A rule fires when any ``log`` regex
    matches, or when all its ``flags`` / ``env`` conditions hold (and, if given, the hardware text matches
    one of ``hardware``)."""

    log: list[str] = Field(default_factory=list)
    flags: list[FlagCondition] = Field(default_factory=list)
    env: list[EnvCondition] = Field(default_factory=list)
    hardware: list[str] = Field(default_factory=list)
    image: list[str] = Field(default_factory=list, description="regexes on a docker image tag")
    explanation: str
    fix: str
    commands: list[str] = Field(default_factory=list)
    articles: list[str] = Field(default_factory=list, description="corpus slugs documenting it")

    @model_validator(mode="after")
    def _has_matcher(self) -> DiagnosisData:
        if not (self.log or self.flags or self.env or self.image):
            raise ValueError("needs at least one matcher: log, flags, env or image")
        return self


class FlagCatalogData(EntryData):
    """``flag_catalog``: every known launch flag, so typos can be reported."""

    flags: list[Annotated[str, Field(pattern=r"^--?[a-z0-9][a-z0-9-]*$")]] = Field(min_length=1)


class BaselineData(EntryData):
    """``baseline``: the launch settings known to work on some hardware."""

    hardware: list[str] = Field(min_length=1, description="case-insensitive substrings naming the hardware")
    flags: dict[str, str | int | float | bool] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


SGLANG_TYPES: dict[str, type[EntryData]] = {DIAGNOSIS: DiagnosisData, FLAG_CATALOG: FlagCatalogData,
                                            BASELINE: BaselineData}
"""Entry type -> data model of the SGLang entries; ``diagnosis`` is matched (a rule), the others are data."""
SGLANG_RULE_TYPES: tuple[str, ...] = (DIAGNOSIS,)
