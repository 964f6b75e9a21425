"""The gate's runnable plan, without pydantic: input limits, the compiled checks of one kind in entry order,
and the finding and report records they produce.

:class:`sovereign_mcp.gate.engine.QualityGate` builds a :class:`Plan` from the validated KB and runs it into
its pydantic :class:`~sovereign_mcp.gate.report.GateReport`; ``sovereign-mcp gate`` can load a cached plan
(:mod:`sovereign_mcp.gate.snapshot`) and run it into the plain :class:`ReportRecord`, which has the same
fields in the same order (so its JSON is the report's ``model_dump(mode="json")``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sovereign_mcp.gate.checks.context import Check, Context, Match
from sovereign_mcp.gate.document import Document, prepare
from sovereign_mcp.gate.facts import KnownFacts
from sovereign_mcp.gate.rules.phrases import PhraseScan

MAX_INPUT_BYTES = 2 * 1024 * 1024
LEVEL_ORDER = ("error", "warning", "suggestion")  # the keys of a report's ``counts``
Verdict = Literal["pass", "pass_with_warnings", "fail"]


class GateInputError(ValueError):
    """The text cannot be checked: too large, binary, or an unknown rule id was asked for."""


def validate_input(text: str) -> None:
    """Raise :class:`GateInputError` for text over 2 MB (UTF-8 bytes) or containing NUL bytes."""
    if len(text) > MAX_INPUT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise GateInputError(f"text is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MB; split it and check "
                             "the parts")
    if "\x00" in text:
        raise GateInputError("text contains NUL bytes; it looks binary, not Markdown or plain text")


def decode_input(raw: bytes) -> str:
    """Bytes from a file or request body as text.

    Raises:
        GateInputError: over 2 MB, not UTF-8, or binary.
    """
    if len(raw) > MAX_INPUT_BYTES:
        raise GateInputError(f"input is {len(raw)} bytes; the limit is {MAX_INPUT_BYTES} bytes (2 MB)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GateInputError(f"input is not UTF-8 text (invalid byte at offset {exc.start})") from None
    validate_input(text)
    return text


class _Severe(Protocol):
    severity: str


def verdict_for(findings: Sequence[_Severe]) -> Verdict:
    """``fail`` when any finding is high severity, ``pass_with_warnings`` when there are others, else ``pass``."""
    if any(f.severity == "high" for f in findings):
        return "fail"
    return "pass_with_warnings" if findings else "pass"


@dataclass(slots=True, frozen=True)
class RuleInfo:
    """What a finding takes from its KB entry: id, severity (``low`` | ``medium`` | ``high``), Vale level,
    title, and the optional ``message`` / ``suggestion`` templates (``{match}`` = the matched text)."""

    id: str
    severity: str
    level: str
    title: str
    message: str | None = None
    suggestion: str | None = None


@dataclass(slots=True, frozen=True)
class FindingRecord:
    """A finding as plain data: the fields of :class:`sovereign_mcp.gate.report.Finding`, in its order."""

    rule_id: str
    severity: str
    level: str
    line: int
    column: int
    end_line: int
    end_column: int
    span: tuple[int, int]
    match: str
    message: str
    suggestion: str | None = None


@dataclass(slots=True, frozen=True)
class ReportRecord:
    """A report as plain data: the fields of :class:`sovereign_mcp.gate.report.GateReport`, in its order."""

    verdict: str
    kind: str
    chars: int
    rules_checked: list[str]
    counts: dict[str, int]
    findings: list[Any]


@dataclass(slots=True)
class Plan:
    """The checks one kind runs: ``rules_checked`` (entry ids, in KB order), ``runs`` (each rule's info and
    compiled check, after its type's ``combine`` step) and the one phrase scan they share. Picklable."""

    kind: str
    rules_checked: list[str]
    runs: list[tuple[RuleInfo, Check]]
    scan: PhraseScan

    def run(self, text: str, facts: KnownFacts, finding: Callable[..., Any] = FindingRecord,
            report: Callable[..., Any] = ReportRecord) -> Any:
        """Check ``text`` (already validated): ``report(verdict=, kind=, chars=, rules_checked=, counts=,
        findings=)`` with one ``finding(rule_id=, ...)`` per match not suppressed in the text, ordered by
        span, then rule id."""
        doc = prepare(text)
        ctx = Context(doc, facts, self.scan)
        findings = []
        for info, check in self.runs:
            for match in check.check(ctx):
                if not doc.suppressed(info.id, match.start):
                    findings.append(_finding(finding, info, doc, match))
        findings.sort(key=lambda f: (f.span[0], f.span[1], f.rule_id))
        counts = {level: sum(1 for f in findings if f.level == level) for level in LEVEL_ORDER}
        return report(verdict=verdict_for(findings), kind=self.kind, chars=len(text),
                      rules_checked=list(self.rules_checked), counts=counts, findings=findings)


def _finding(make: Callable[..., Any], info: RuleInfo, doc: Document, match: Match) -> Any:
    start, end = match.start, match.end
    matched = doc.text[start:end]
    message = match.message or (info.message or f"{info.title}: '{{match}}'").replace("{match}", matched)
    suggestion = match.suggestion or (info.suggestion.replace("{match}", matched) if info.suggestion else None)
    line, column, end_line, end_column = span_position(doc, start, end)
    return make(rule_id=info.id, severity=info.severity, level=info.level, line=line, column=column,
                end_line=end_line, end_column=end_column, span=(start, end), match=matched,
                message=message, suggestion=suggestion)


def span_position(doc: Document, start: int, end: int) -> tuple[int, int, int, int]:
    """1-based ``(line, column, end_line, end_column)`` of ``doc.text[start:end]``; ``end_column`` is one
    past the last character (the gate's and SARIF's region shape)."""
    line, column = doc.position(start)
    if end - start < 1 or "\n" in doc.text[start:end]:
        end_line, end_column = doc.position(max(start, end - 1))
    else:  # one line: the end is on the start's line
        end_line, end_column = line, column + end - start - 1
    return line, column, end_line, end_column + 1
