"""The rule types by their KB ``type:`` name; the KB loader validates entries with them and the gate runs
them. Adding a rule type: its file in this package, and one line here (order: how an unknown type's error
lists them)."""

from __future__ import annotations

from sovereign_mcp.gate.rules.base import Rule
from sovereign_mcp.gate.rules.caps import Caps
from sovereign_mcp.gate.rules.dominance import Dominance
from sovereign_mcp.gate.rules.existence import Existence
from sovereign_mcp.gate.rules.fabrication import Fabrication
from sovereign_mcp.gate.rules.markup import Markup
from sovereign_mcp.gate.rules.repetition import Repetition
from sovereign_mcp.gate.rules.substitution import Substitution
from sovereign_mcp.gate.rules.version_required import VersionRequired

RULES: dict[str, type[Rule]] = {
    "existence": Existence,
    "substitution": Substitution,
    "caps": Caps,
    "markup": Markup,
    "dominance": Dominance,
    "repetition": Repetition,
    "fabrication": Fabrication,
    "version_required": VersionRequired,
}
