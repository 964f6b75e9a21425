"""The :class:`Rule` base of every rule type: the entry's data schema, validated by pydantic at KB load and
compiled there, once, into the plain :class:`~sovereign_mcp.gate.checks.context.Check` that runs.

``Match``, ``Context``, ``compiled`` and the speaker pattern live with the checks
(:mod:`sovereign_mcp.gate.checks.context`) and are re-exported here for the rule files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Self

from pydantic import PrivateAttr

from sovereign_mcp.gate.checks.context import SPEAKER, SPEAKER_PATTERN, Check, Context, Match, compiled
from sovereign_mcp.gate.rules.phrases import PhraseMatcher
from sovereign_mcp.kb.entry_types import EntryData


class Rule(EntryData):
    """A rule type: its fields are the entry's data schema; :meth:`compile` builds, once, right after
    validation, the :class:`Check` that runs (kept in :attr:`compiled_check`)."""

    _check: Check = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._check = self.compile()

    def compile(self) -> Check:
        """The plain check for this data (phrase automata and patterns built here, not per run)."""
        raise NotImplementedError

    @property
    def compiled_check(self) -> Check:
        """The check compiled at validation (:meth:`compile`)."""
        return self._check

    def check(self, ctx: Context) -> Iterator[Match]:
        """Every violation in ``ctx.doc``, by position (the compiled check's)."""
        return self._check.check(ctx)

    def phrase_matchers(self) -> tuple[PhraseMatcher, ...]:
        """The phrase lists the check reads through ``ctx.phrases`` (scanned in one pass with every other
        rule's)."""
        return self._check.phrase_matchers()

    @classmethod
    def combine(cls, rules: Sequence[Self]) -> list[Self | None]:
        """The rules to run for the rules of this type applied together, aligned with ``rules``: a rule to
        run in one's place, or ``None`` to run nothing for it (it is still listed as checked). By default
        each runs as written."""
        return list(rules)


__all__ = ["SPEAKER", "SPEAKER_PATTERN", "Check", "Context", "Match", "Rule", "compiled"]
