"""``dominance``: one speaker holding ``max_turns`` + 1 or more consecutive turns of a script."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from sovereign_mcp.gate.rules.base import SPEAKER_PATTERN, Context, Match, Rule, compiled


class Dominance(Rule):
    """``max_turns`` in a row at most; ``speaker_pattern`` finds a turn's label. It is matched against the
    text with a newline prepended (so every turn, the first included, follows a ``\\n``; opening on that
    literal keeps the scan fast); group 1 is the speaker's name."""

    max_turns: int = Field(2, ge=1)
    speaker_pattern: str = SPEAKER_PATTERN
    _speaker: re.Pattern[str] = PrivateAttr()

    @field_validator("speaker_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if compiled(value).groups < 1:
            raise ValueError("needs a group: group 1 is the speaker's name")
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._speaker = re.compile(self.speaker_pattern)

    def check(self, ctx: Context) -> Iterator[Match]:
        turns = ctx.speaker_turns(self._speaker)
        run_start = 0
        for i in range(1, len(turns) + 1):
            if i < len(turns) and turns[i][0] == turns[run_start][0]:
                continue
            length = i - run_start
            if length > self.max_turns:
                speaker, start, end = turns[run_start + self.max_turns]
                first = ctx.doc.position(turns[run_start][1])[0]
                yield Match(start, end, message=f"{speaker} holds {length} consecutive turns from line {first}; "
                            f"at most {self.max_turns} in a row",
                            suggestion="give the other host a back-channel or a question in between")
            run_start = i

    def prompt_lines(self) -> list[str]:
        return [f"No speaker takes more than {self.max_turns} turns in a row."]
