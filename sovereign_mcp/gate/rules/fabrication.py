"""``fabrication``: file paths, version strings, URLs and cited titles found in neither the KB nor the
corpus. The check: :mod:`sovereign_mcp.gate.checks.fabrication`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sovereign_mcp.gate.checks.fabrication import FabricationCheck
from sovereign_mcp.gate.facts import normalise
from sovereign_mcp.gate.rules.base import Rule


class Fabrication(Rule):
    """``kinds``: which claims to check (all four by default); ``allow``: claims known to be real."""

    kinds: list[Literal["path", "version", "url", "title"]] = Field(
        default_factory=lambda: ["path", "version", "url", "title"]
    )
    allow: list[str] = Field(default_factory=list, description="claims known to be real")

    def compile(self) -> FabricationCheck:
        allowed = frozenset(normalise(k, a) for a in self.allow for k in ("path", "url", "version"))
        return FabricationCheck(frozenset(self.kinds), allowed)
