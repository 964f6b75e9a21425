"""``version_required``: a named tool or model that no mention in the text gives a version for. The
check: :mod:`sovereign_mcp.gate.checks.version_required`."""

from __future__ import annotations

from pydantic import Field

from sovereign_mcp.gate.checks.version_required import VersionRequiredCheck
from sovereign_mcp.gate.rules.base import Rule
from sovereign_mcp.gate.rules.phrases import PhraseMatcher


class VersionRequired(Rule):
    """``names`` (any case, whole words). A name is reported once, at its first mention, when no mention
    of it in the document comes with a version: a number right after it ("Mistral Small 4", "FLUX.1") or
    a dotted version in the same sentence ("SGLang ... 0.5.2")."""

    names: list[str] = Field(min_length=1)

    def compile(self) -> VersionRequiredCheck:
        return VersionRequiredCheck(PhraseMatcher(self.names, ignorecase=True, word_boundaries=True))

    def prompt_lines(self) -> list[str]:
        return [f"Give a version whenever you name: {', '.join(self.names)}."]
