"""``dominance``: one speaker holding ``max_turns`` + 1 or more consecutive turns of a script. The check:
:mod:`sovereign_mcp.gate.checks.dominance`."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from sovereign_mcp.gate.checks.dominance import DominanceCheck
from sovereign_mcp.gate.rules.base import SPEAKER_PATTERN, Rule, compiled


class Dominance(Rule):
    """``max_turns`` in a row at most; ``speaker_pattern`` finds a turn's label. It is matched against the
    text with a newline prepended (so every turn, the first included, follows a ``\\n``; opening on that
    literal keeps the scan fast); group 1 is the speaker's name."""

    max_turns: int = Field(2, ge=1)
    speaker_pattern: str = SPEAKER_PATTERN

    @field_validator("speaker_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if compiled(value).groups < 1:
            raise ValueError("needs a group: group 1 is the speaker's name")
        return value

    def compile(self) -> DominanceCheck:
        return DominanceCheck(re.compile(self.speaker_pattern), self.max_turns)

    def prompt_lines(self) -> list[str]:
        return [f"No speaker takes more than {self.max_turns} turns in a row."]
