"""``diagnose_sglang``: known SGLang failure modes from KB ``diagnosis`` entries (scope ``sglang``).

A rule fires when one of its ``log`` regexes matches the pasted log (case-insensitive, the first
matching line is quoted), or when all its ``flags`` / ``env`` conditions hold for the launch
command, or when its ``image`` regex matches the container image; a rule with a ``hardware`` list
applies only when the hardware text names one of them (default hardware comes from config: the GB10).
Findings are ranked by severity, then by position (log line, flag order).

Verdict: ``invalid`` with any high finding, ``valid_with_warnings`` with others, ``valid`` when
a launch command or probe was checked and nothing fired, ``unknown`` when there was nothing to check
or a log matched no known failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field

from sovereign_mcp.diagnostics.launch import LaunchSpec, parse_env_lines, parse_launch
from sovereign_mcp.diagnostics.models import (
    BASELINE,
    DIAGNOSIS,
    FLAG_CATALOG,
    BaselineData,
    DiagnosisData,
    EnvCondition,
    FlagCondition,
)
from sovereign_mcp.diagnostics.probe import ProbeResult
from sovereign_mcp.kb.entry_types import SGLANG_SCOPES
from sovereign_mcp.kb.loader import KnowledgeBase
from sovereign_mcp.kb.models import KBEntry

MAX_LOG_BYTES = 1024 * 1024
Verdict = Literal["valid", "valid_with_warnings", "invalid", "unknown"]
_RANK = {"high": 0, "medium": 1, "low": 2}
TRUTHY = {"1", "true", "yes", "y"}  # SGLang's EnvBool (python/sglang/srt/environ.py)


class DiagnosisFinding(BaseModel):
    """One known failure mode that applies, with the evidence and the fix."""

    rule_id: str
    severity: Literal["low", "medium", "high"]
    title: str
    evidence: str = Field(description="The log line (with its number) or the setting that triggered the rule.")
    problem: str
    fix: str
    commands: list[str]
    sources: list[str] = Field(description="URLs of the articles that document it.")
    line: int | None = Field(None, description="1-based log line of the evidence, if from the log.")


class Baseline(BaseModel):
    """Launch settings known to work on the detected hardware."""

    id: str
    title: str
    flags: dict[str, str]
    env: dict[str, str]
    notes: list[str]


class DiagnosisReport(BaseModel):
    """Result of ``diagnose_sglang``."""

    verdict: Verdict
    hardware: str
    findings: list[DiagnosisFinding]
    apply: list[str] = Field(description="Concrete commands or flags to apply, most important first.")
    baseline: Baseline | None
    launch: dict[str, object] = Field(default_factory=dict, description="What was parsed from launch_command.")
    unknown_flags: list[str] = Field(default_factory=list)
    probe: ProbeResult | None = None
    notes: list[str] = Field(default_factory=list)


class DiagnoseInputError(ValueError):
    """Input over the size limit."""


def mvp_flags(attention_backend: str | None = None, mem_fraction: float | None = None,
              cuda_graph_max_bs: int | None = None) -> dict[str, str | None]:
    """The operator's MVP arguments of ``diagnose_sglang`` as launch flags."""
    flags: dict[str, str | None] = {}
    if attention_backend:
        flags["--attention-backend"] = attention_backend
    if mem_fraction is not None:
        flags["--mem-fraction-static"] = str(mem_fraction)
    if cuda_graph_max_bs is not None:
        flags["--cuda-graph-max-bs"] = str(cuda_graph_max_bs)
    return flags


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE)


def _flag_holds(cond: FlagCondition, flags: dict[str, str | None]) -> bool:
    name = next((f for f in (cond.flag, *cond.aliases) if f in flags), cond.flag)
    present = name in flags
    value = flags.get(name)
    if cond.present is not None and present != cond.present:
        return False
    if cond.equals is not None and (value is None or value.strip().lower() != cond.equals.lower()):
        return False
    if cond.gt is not None or cond.lt is not None:
        try:
            number = float(value) if value is not None else None
        except ValueError:
            return False
        if number is None or (cond.gt is not None and not number > cond.gt) or (
            cond.lt is not None and not number < cond.lt
        ):
            return False
    return present or cond.present is False


def _env_holds(cond: EnvCondition, env: dict[str, str]) -> bool:
    value = env.get(cond.name)
    if cond.missing is not None and (value is None) != cond.missing:
        return False
    if cond.equals is not None and value != cond.equals:
        return False
    if cond.truthy is not None and (value is not None and value.strip().lower() in TRUTHY) != cond.truthy:
        return False
    return not (cond.not_equals is not None and value == cond.not_equals)


def _hardware_matches(names: list[str], hardware: str) -> bool:
    return not names or any(name.lower() in hardware.lower() for name in names)


class Diagnoser:
    """Applies the KB's SGLang rules. ``article_url`` resolves a corpus slug to its public URL
    (``None`` for an unknown slug)."""

    def __init__(self, kb: KnowledgeBase, article_url: Callable[[str], str | None] = lambda slug: None,
                 default_hardware: str = "GB10 (DGX Spark)") -> None:
        self.kb = kb
        self.article_url = article_url
        self.default_hardware = default_hardware
        entries = kb.in_scopes(SGLANG_SCOPES)
        self.rules = [e for e in entries if e.type == DIAGNOSIS]
        self.baselines = [e for e in entries if e.type == BASELINE]
        self.known_flags = {f for e in entries if e.type == FLAG_CATALOG for f in e.data.flags}

    def diagnose(self, error_log: str | None = None, launch_command: str | None = None,
                 env: dict[str, str] | str | None = None, hardware: str | None = None,
                 probe: ProbeResult | None = None, extra_flags: dict[str, str | None] | None = None,
                 image: str | None = None) -> DiagnosisReport:
        """Diagnose whatever was given (every argument optional).

        Raises:
            DiagnoseInputError: ``error_log`` over 1 MB.
        """
        if error_log and len(error_log.encode("utf-8", "replace")) > MAX_LOG_BYTES:
            raise DiagnoseInputError(f"error_log is over {MAX_LOG_BYTES // 1024} KB; paste the last part")
        hw = (hardware or "").strip() or self.default_hardware
        spec = parse_launch(launch_command) if launch_command else LaunchSpec()
        flags = {**(extra_flags or {}), **spec.all_flags}
        environment = dict(spec.env)
        if isinstance(env, str):
            environment.update(parse_env_lines(env))
        elif env:
            environment.update({str(k): str(v) for k, v in env.items()})
        if probe is not None and probe.server_args:
            for key, value in probe.server_args.items():
                if isinstance(value, (str, int, float, bool)) and value is not False and value is not None:
                    flags.setdefault("--" + key.replace("_", "-"), None if value is True else str(value))
        image = image or spec.image
        checked_setup = bool(flags or environment or image)

        findings: list[tuple[tuple[int, int], DiagnosisFinding]] = []
        for order, rule in enumerate(self.rules):
            data: DiagnosisData = rule.data
            if not _hardware_matches(data.hardware, hw):
                continue
            hit = self._log_hit(data, error_log) if error_log else None
            if hit is not None:
                line_no, line = hit
                finding = self._finding(rule, f"line {line_no}: {line}", line_no)
                findings.append(((_RANK[rule.severity], line_no), finding))
                continue
            if not checked_setup:
                continue
            evidence = self._setup_hit(data, flags, environment, image)
            if evidence:
                findings.append(((_RANK[rule.severity], 10**9 + order), self._finding(rule, evidence, None)))
        findings.sort(key=lambda pair: pair[0])
        result = [f for _, f in findings]
        notes = list(spec.problems)
        unknown = sorted(f for f in spec.flags if self.known_flags and f not in self.known_flags)
        if unknown:
            notes.append(f"unknown SGLang flags (typo, or newer than the KB's catalogue): {', '.join(unknown)}")
        result += self._probe_findings(probe)
        baseline = self._baseline(hw)
        return DiagnosisReport(
            verdict=self._verdict(result, bool(error_log and error_log.strip()), checked_setup or probe is not None),
            hardware=hw,
            findings=result,
            apply=self._apply(result, baseline, flags),
            baseline=baseline,
            launch={"kind": spec.kind, "flags": spec.flags, "docker": spec.docker_flags, "env": spec.env,
                    "image": spec.image} if launch_command else {},
            unknown_flags=unknown,
            probe=probe,
            notes=notes,
        )

    @staticmethod
    def _log_hit(data: DiagnosisData, log: str) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for pattern in data.log:
            match = _regex(pattern).search(log)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), pattern)
        if best is None:
            return None
        start = best[0]
        line_no = log.count("\n", 0, start) + 1
        line_start = log.rfind("\n", 0, start) + 1
        line_end = log.find("\n", start)
        line = log[line_start : line_end if line_end != -1 else len(log)].strip()
        return line_no, line[:300]

    @staticmethod
    def _setup_hit(data: DiagnosisData, flags: dict[str, str | None], env: dict[str, str],
                   image: str | None) -> str | None:
        if data.image:
            if image and any(_regex(p).search(image) for p in data.image):
                return f"image {image}"
            return None
        if not (data.flags or data.env):
            return None
        if not all(_flag_holds(c, flags) for c in data.flags) or not all(_env_holds(c, env) for c in data.env):
            return None
        parts = []
        for c in data.flags:
            name = next((f for f in (c.flag, *c.aliases) if f in flags), None)
            parts.append(f"{name} {flags.get(name) or ''}".strip() if name else f"no {c.flag}")
        parts += [f"{c.name}={env[c.name]}" if c.name in env else f"{c.name} not set" for c in data.env]
        return ", ".join(parts)

    def _finding(self, rule: KBEntry, evidence: str, line: int | None) -> DiagnosisFinding:
        data: DiagnosisData = rule.data
        sources = [url for url in (self.article_url(slug) for slug in data.articles) if url]
        return DiagnosisFinding(rule_id=rule.id, severity=rule.severity, title=rule.title, evidence=evidence,
                                problem=data.explanation, fix=data.fix, commands=data.commands, sources=sources,
                                line=line)

    @staticmethod
    def _probe_findings(probe: ProbeResult | None) -> list[DiagnosisFinding]:
        if probe is None:
            return []
        out = []

        def add(rule_id: str, severity: str, title: str, evidence: str, fix: str) -> None:
            out.append(DiagnosisFinding(rule_id=rule_id, severity=severity, title=title, evidence=evidence,
                                        problem=title, fix=fix, commands=[], sources=[]))

        if not probe.reachable:
            add("probe-unreachable", "high", "SGLang server not reachable", "; ".join(probe.errors),
                "Check that the service runs (systemctl status, docker ps) and listens on that port.")
        elif not probe.ready:
            add("probe-not-ready", "medium", "SGLang not ready", f"/health answered HTTP {probe.health_status}",
                "Wait for warm-up to finish (503 while loading); if it stays, read the server log from the start.")
        usage = probe.metrics.get("kv_cache_usage")
        if usage is not None and usage >= 0.9:
            add("probe-kv-cache-full", "low", "KV cache nearly full", f"sglang:token_usage {usage:.2f}",
                "Expect queueing; lower --max-running-requests or shorten prompts.")
        queued = probe.metrics.get("queued_requests")
        if queued:
            add("probe-requests-queued", "low", "Requests are queueing", f"sglang:num_queue_reqs {queued:.0f}",
                "The server is at capacity; this is normal under bursts.")
        return out

    def _baseline(self, hardware: str) -> Baseline | None:
        for entry in self.baselines:
            data: BaselineData = entry.data
            if _hardware_matches(data.hardware, hardware):
                return Baseline(id=entry.id, title=entry.title, flags={k: str(v) for k, v in data.flags.items()},
                                env=data.env, notes=data.notes)
        return None

    @staticmethod
    def _apply(findings: list[DiagnosisFinding], baseline: Baseline | None,
               flags: dict[str, str | None]) -> list[str]:
        steps: list[str] = []
        for finding in findings:
            steps += [c for c in finding.commands if c not in steps]
        if baseline and flags:
            for flag, value in baseline.flags.items():
                current = flags.get(flag)
                if flag in flags and current is not None and current.lower() != value.lower():
                    step = f"{flag} {value}"
                    if step not in steps:
                        steps.append(step)
        return steps

    @staticmethod
    def _verdict(findings: list[DiagnosisFinding], had_log: bool, checked_setup: bool) -> Verdict:
        if any(f.severity == "high" for f in findings):
            return "invalid"
        if findings:
            return "valid_with_warnings"
        if had_log or not checked_setup:
            return "unknown"
        return "valid"
