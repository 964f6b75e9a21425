"""The deterministic quality gate: KB rules of the document's scope, applied without any LLM.

``QualityGate(kb, facts).check(text, kind)`` -> :class:`GateReport`. Article checks use the
``cross-project`` and ``article`` scopes; podcast scripts ``cross-project`` and ``podcast`` (where
the CAPS allowlist, TTS markup and speaker-dominance rules live); see ``KIND_SCOPES``. Each entry's data
is its validated rule (:mod:`sovereign_mcp.gate.rules`); the rules of one type are combined by their type
(``Rule.combine``), and their compiled checks make the kind's :class:`~sovereign_mcp.gate.plan.Plan`.
Findings are ordered by position, then rule id, so a report is stable for the same text and KB.
"""

from __future__ import annotations

from sovereign_mcp.gate.facts import KnownFacts
from sovereign_mcp.gate.plan import (
    MAX_INPUT_BYTES,
    GateInputError,
    Plan,
    RuleInfo,
    decode_input,
    validate_input,
)
from sovereign_mcp.gate.report import Finding, GateReport, Kind
from sovereign_mcp.gate.rules.base import Rule
from sovereign_mcp.gate.rules.phrases import PhraseScan
from sovereign_mcp.kb.entry_types import KIND_SCOPES
from sovereign_mcp.kb.loader import KnowledgeBase
from sovereign_mcp.kb.models import KBEntry


class QualityGate:
    """Checks text against a :class:`KnowledgeBase`; ``facts`` back the fabrication rule."""

    def __init__(self, kb: KnowledgeBase, facts: KnownFacts | None = None) -> None:
        self.kb = kb
        self.facts = facts or KnownFacts()
        self._plans: dict[tuple[Kind, tuple[str, ...] | None], Plan] = {}

    def rules_for(self, kind: Kind, only: list[str] | None = None) -> list[KBEntry]:
        """The rule entries applied to ``kind`` (optionally only the ids in ``only``).

        Raises:
            GateInputError: ``only`` names an id that is not a rule in this kind's scopes.
        """
        entries = [e for e in self.kb.in_scopes(KIND_SCOPES[kind], rules_only=True) if e.is_gate_rule]
        if only is None:
            return entries
        known = {e.id for e in entries}
        unknown = [r for r in only if r not in known]
        if unknown:
            raise GateInputError(f"unknown rule id(s) for {kind}: {', '.join(unknown)}; "
                                 f"available: {', '.join(sorted(known))}")
        return [e for e in entries if e.id in set(only)]

    def plan(self, kind: Kind, only: list[str] | None = None) -> Plan:
        """The :class:`Plan` for ``kind`` (optionally only the ids in ``only``): the entries checked, the
        compiled check of each rule that runs (each type's rules after its ``combine`` step, in entry order)
        and the one phrase scan they share; kept per ``kind`` and ``only`` (the KB does not change).

        Raises:
            GateInputError: as :meth:`rules_for`.
        """
        entries = self.rules_for(kind, only)
        key = (kind, tuple(only) if only is not None else None)
        if key not in self._plans:
            by_type: dict[type[Rule], list[KBEntry]] = {}
            for entry in entries:
                by_type.setdefault(type(entry.data), []).append(entry)
            runs: dict[str, Rule] = {}
            for rule_type, group in by_type.items():
                for entry, rule in zip(group, rule_type.combine([e.data for e in group]), strict=True):
                    if rule is not None:
                        runs[entry.id] = rule
            pairs = [(_info(e), runs[e.id].compiled_check) for e in entries if e.id in runs]
            scan = PhraseScan([m for _, check in pairs for m in check.phrase_matchers()])
            self._plans[key] = Plan(kind, [e.id for e in entries], pairs, scan)
        return self._plans[key]

    def check(self, text: str, kind: Kind = "article", only: list[str] | None = None) -> GateReport:
        """Run the gate.

        Raises:
            GateInputError: text over 2 MB or binary; unknown rule ids.
        """
        validate_input(text)
        # Findings validated by pydantic: pydantic-core checks these fields faster than ``model_construct``
        # copies them (2 against 4 microseconds).
        return self.plan(kind, only).run(text, self.facts, finding=Finding, report=GateReport)


def _info(entry: KBEntry) -> RuleInfo:
    return RuleInfo(entry.id, entry.severity, entry.level, entry.title, entry.message, entry.suggestion)


__all__ = ["MAX_INPUT_BYTES", "GateInputError", "QualityGate", "decode_input", "validate_input"]
