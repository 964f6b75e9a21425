"""``substitution``: a phrase with preferred replacements (Vale ``substitution``,
``internal/check/substitution.go``). The check: :mod:`sovereign_mcp.gate.checks.substitution`."""

from __future__ import annotations

from pydantic import Field

from sovereign_mcp.gate.checks.substitution import SubstitutionCheck
from sovereign_mcp.gate.rules.base import Rule
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class Substitution(Rule):
    """``swap``: phrase -> replacement or list of replacements (the suggestion names them all)."""

    swap: dict[str, str | list[str]] = Field(min_length=1)
    ignorecase: bool = True
    word_boundaries: bool = True

    def compile(self) -> SubstitutionCheck:
        advice = {
            phrase: "use " + " or ".join(f"'{o}'" for o in (options if isinstance(options, list) else [options]))
            for phrase, options in self.swap.items()
        }
        return SubstitutionCheck(PhraseMatcher(list(self.swap), self.ignorecase, self.word_boundaries), advice)

    def prompt_lines(self) -> list[str]:
        pairs = [f"'{k}' -> '{v if isinstance(v, str) else ' / '.join(v)}'" for k, v in self.swap.items()]
        return [f"Replace: {'; '.join(pairs)}."]
