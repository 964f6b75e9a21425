"""``existence``: any listed phrase is a finding (Vale ``existence``, ``internal/check/existence.go``).
The check: :mod:`sovereign_mcp.gate.checks.existence`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sovereign_mcp.gate.checks.existence import ExistenceCheck
from sovereign_mcp.gate.rules.base import Rule
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class Existence(Rule):
    """``phrases`` (at least one), matched case-insensitively and on word boundaries unless turned off."""

    phrases: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    ignorecase: bool = True
    word_boundaries: bool = True

    def compile(self) -> ExistenceCheck:
        return ExistenceCheck(PhraseMatcher(self.phrases, self.ignorecase, self.word_boundaries))

    def prompt_lines(self) -> list[str]:
        return [f"Never write: {', '.join(repr(p) for p in self.phrases)}."]
