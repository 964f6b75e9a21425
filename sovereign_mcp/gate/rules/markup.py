"""``markup``: text a TTS engine reads literally (asterisks, angle brackets, bracket tags). The check:
:mod:`sovereign_mcp.gate.checks.markup`."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from sovereign_mcp.gate.checks.markup import MarkupCheck
from sovereign_mcp.gate.rules.base import Rule, compiled
from sovereign_mcp.kb.entry_types import EntryData


class MarkupPattern(EntryData):
    """One kind of markup: its ``name`` (said in the message), a Python regular expression (multi-line
    mode: ``^`` and ``$`` at every line), and an optional fix."""

    name: str
    pattern: str
    suggestion: str = ""
    _regex: re.Pattern[str] = PrivateAttr()

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compiled(value, re.MULTILINE)
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._regex = compiled(self.pattern, re.MULTILINE)


class Markup(Rule):
    """``patterns``: the markup kinds (at least one); an empty match is never reported."""

    patterns: list[MarkupPattern] = Field(min_length=1)

    def compile(self) -> MarkupCheck:
        return MarkupCheck([(p.name, p._regex, p.suggestion or None) for p in self.patterns])

    def prompt_lines(self) -> list[str]:
        return [f"No {', '.join(p.name for p in self.patterns)}."]
