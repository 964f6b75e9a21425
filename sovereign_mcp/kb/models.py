"""Knowledge-base entries: one Markdown file each, front matter + prose + optional fenced YAML data.

Front matter (validated here): ``id`` (lower-case, ``a-z0-9-``), ``type`` (one of :data:`RULE_TYPES`
or ``guidance``), ``scope`` (``cross-project``, ``article``, ``podcast``, ``sglang`` or any other
lower-case word), ``severity`` (``low`` | ``medium`` | ``high`` -> Vale levels ``suggestion`` |
``warning`` | ``error``), ``title``, optional ``message`` / ``suggestion`` templates
(``{match}`` is replaced by the matched text). Rule data comes from the front matter or from a
```` ```yaml ```` block in the body (the block wins key by key). Each ``type`` has its data model
below; unknown data keys are errors so a typo cannot silently disable a rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["low", "medium", "high"]
KIND_SCOPES: dict[str, tuple[str, ...]] = {  # which KB scopes apply to each kind of generated text
    "article": ("cross-project", "article"),
    "podcast": ("cross-project", "podcast"),
}
LEVELS: dict[str, str] = {"low": "suggestion", "medium": "warning", "high": "error"}
EntryId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExistenceData(_Data):
    """``existence``: any listed phrase is a finding (Vale ``existence``)."""

    phrases: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    ignorecase: bool = True
    word_boundaries: bool = True


class SubstitutionData(_Data):
    """``substitution``: a phrase with preferred replacements (Vale ``substitution``)."""

    swap: dict[str, str | list[str]] = Field(min_length=1)
    ignorecase: bool = True
    word_boundaries: bool = True


class CapsData(_Data):
    """``caps``: ALL-CAPS words that TTS will spell out, unless allow-listed."""

    allow: list[str] = Field(default_factory=list)
    min_length: int = Field(2, ge=2)


class MarkupPattern(_Data):
    name: str
    pattern: str
    suggestion: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re

        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class MarkupData(_Data):
    """``markup``: text a TTS engine reads literally (asterisks, angle brackets, bracket tags)."""

    patterns: list[MarkupPattern] = Field(min_length=1)


SPEAKER_PATTERN = r"\n[ \t]*([A-Z][A-Z0-9_]{1,30})[ \t]*:"


class DominanceData(_Data):
    """``dominance``: one speaker holding ``max_turns`` + 1 or more consecutive turns.

    ``speaker_pattern`` is matched against the text with a newline prepended (so every turn, the
    first included, follows a ``\n``; opening on that literal keeps the scan fast); group 1 is the
    speaker's name.
    """

    max_turns: int = Field(2, ge=1)
    speaker_pattern: str = SPEAKER_PATTERN


class RepetitionData(_Data):
    """``repetition``: the same word twice in a row ("the the"), Vale ``repetition``."""

    min_word_length: int = Field(1, ge=1)
    ignore: list[str] = Field(default_factory=list, description="words allowed to repeat, e.g. 'that'")


class FabricationData(_Data):
    """``fabrication``: file paths, version strings, URLs and cited titles found in neither the KB
    nor the corpus."""

    kinds: list[Literal["path", "version", "url", "title"]] = Field(
        default_factory=lambda: ["path", "version", "url", "title"]
    )
    allow: list[str] = Field(default_factory=list, description="claims known to be real")


class VersionData(_Data):
    """``version_required``: a named tool or model that no mention in the text gives a version for."""

    names: list[str] = Field(min_length=1)


class GuidanceData(_Data):
    """``guidance``: prose (and optional example lists) injected into prompts; never matched."""

    examples: list[str] = Field(default_factory=list)


class FlagCondition(_Data):
    """A launch-flag test; ``aliases`` are other spellings of the same flag (SGLang accepts several)."""

    flag: str = Field(pattern=r"^--[a-z0-9-]+$")
    aliases: list[Annotated[str, Field(pattern=r"^--[a-z0-9-]+$")]] = Field(default_factory=list)
    equals: str | None = None
    present: bool | None = None
    gt: float | None = None
    lt: float | None = None


class EnvCondition(_Data):
    """An environment test. ``truthy`` compares the value read as a boolean the way SGLang's EnvBool
    does (``1``, ``true``, ``yes``, ``y``, case-insensitive, are true; unset is false)."""

    name: str
    equals: str | None = None
    not_equals: str | None = None
    missing: bool | None = None
    truthy: bool | None = None


class DiagnosisData(_Data):
    """``diagnosis`` (scope ``sglang``): matchers and fix used by ``diagnose_sglang``. A rule fires
    when any ``log`` regex matches, or when all its ``flags`` / ``env`` conditions hold (and, if
    given, the hardware text matches one of ``hardware``)."""

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


class FlagCatalogData(_Data):
    """``flag_catalog`` (scope ``sglang``): every known launch flag, so typos can be reported."""

    flags: list[Annotated[str, Field(pattern=r"^--?[a-z0-9][a-z0-9-]*$")]] = Field(min_length=1)


class BaselineData(_Data):
    """``baseline`` (scope ``sglang``): the launch settings known to work on some hardware."""

    hardware: list[str] = Field(min_length=1, description="case-insensitive substrings naming the hardware")
    flags: dict[str, str | int | float | bool] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


DATA_MODELS: dict[str, type[_Data]] = {
    "existence": ExistenceData,
    "substitution": SubstitutionData,
    "caps": CapsData,
    "markup": MarkupData,
    "dominance": DominanceData,
    "repetition": RepetitionData,
    "fabrication": FabricationData,
    "version_required": VersionData,
    "guidance": GuidanceData,
    "diagnosis": DiagnosisData,
    "flag_catalog": FlagCatalogData,
    "baseline": BaselineData,
}
RULE_TYPES = tuple(t for t in DATA_MODELS if t not in ("guidance", "flag_catalog", "baseline"))


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


class KBError(BaseModel):
    """A KB file that failed to load: which file, which field, what is wrong."""

    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"
