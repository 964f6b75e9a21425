"""``dominance`` check: one speaker holding ``max_turns`` + 1 or more consecutive turns of a script."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sovereign_mcp.gate.checks.context import Check, Context, Match


class DominanceCheck(Check):
    """Reports the first turn past ``max_turns`` in a row of one speaker (turns found by ``speaker``)."""

    __slots__ = ("max_turns", "speaker")

    def __init__(self, speaker: re.Pattern[str], max_turns: int) -> None:
        self.speaker = speaker
        self.max_turns = max_turns

    def check(self, ctx: Context) -> Iterator[Match]:
        turns = ctx.speaker_turns(self.speaker)
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
