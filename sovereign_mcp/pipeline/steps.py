"""What each step does. A step reads the outputs of the steps before it and returns its own.

Generation follows the operator's pipeline (part 1 -> part 2 -> naturalize, with the knowledge base
injected at prompt-build time, then the deterministic quality gate; a failed gate regenerates with the
findings fed back, up to ``gate_retries`` times, then aborts with them). The podcast is a HEXABELLA /
CIPHERFOX script, naturalized and gated with the podcast scope, spoken turn by turn by Voxtral and mixed
into one MP3. The hero image is FLUX.1-schnell on ComfyUI.

Steps are idempotent from their inputs: a step interrupted by a crash runs again from the start, except
that Voxtral turns already on disk and a ComfyUI prompt already queued are reused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovereign_mcp.alttext.captioner import Captioner, CaptionUnavailable
from sovereign_mcp.alttext.config import AltTextSettings
from sovereign_mcp.alttext.images import from_bytes as image_from_bytes
from sovereign_mcp.gate.engine import QualityGate
from sovereign_mcp.gate.report import GateReport
from sovereign_mcp.inference.client import ChatClient
from sovereign_mcp.inference.errors import InferenceRequestError
from sovereign_mcp.kb.loader import KnowledgeBase
from sovereign_mcp.kb.models import KIND_SCOPES
from sovereign_mcp.kb.prompts import build_prompt, render_rules
from sovereign_mcp.pipeline.artifacts import sha256_file, write_atomic
from sovereign_mcp.pipeline.config import JobOptions, PipelineSettings
from sovereign_mcp.pipeline.media import (
    ComfyUIClient,
    MediaError,
    VoxtralClient,
    flux_schnell_graph,
    is_png,
    is_wav,
    mix_to_mp3,
    png_size,
    wav_params,
)
from sovereign_mcp.pipeline.models import GateAttempt
from sovereign_mcp.pipeline.store import JobStore

SYSTEM = ("You write for a solo operator's engineering blog and podcast about running a self-hosted AI stack. "
          "Follow the knowledge-base rules in the request exactly. Answer with the requested text only: no "
          "preamble, no notes about what you did.")
HOSTS = ("HEXABELLA", "CIPHERFOX")
TURN_RE = re.compile(r"^\s*[*_#>\-\s]*([A-Z][A-Z0-9_-]{1,31})[*_]*\s*:\s*(.*\S)\s*$")
MARKUP_RE = re.compile(r"<[^>\n]{0,80}>|\[[^\]\n]{0,80}\]|[*_`#~|]")
MAX_FINDINGS = 50


class StepFailed(Exception):
    """The step cannot succeed: the job fails with this message."""


class GateAborted(StepFailed):
    """The quality gate failed on the last allowed attempt; ``attempt`` holds the findings."""

    def __init__(self, message: str, attempt: GateAttempt) -> None:
        super().__init__(message)
        self.attempt = attempt


class Interrupted(Exception):
    """The worker is shutting down; the step runs again later."""


@dataclass
class StepResult:
    """A step's output (text kept in the database) and details shown in the job status.

    ``retry`` set: the gate failed and the track is regenerated. ``gate``: the verdict to record.
    """

    output: str
    detail: dict[str, Any] | None = None
    gate: GateAttempt | None = None
    retry: bool = False


@dataclass
class StepContext:
    """Everything a step may use."""

    job_id: str
    kind: str
    topic: str
    sources: str
    options: JobOptions
    attempts: dict[str, int]
    gate_history: list[GateAttempt]
    outputs: dict[str, str]
    settings: PipelineSettings
    store: JobStore
    kb: KnowledgeBase
    gate: Callable[[], QualityGate]
    chat: ChatClient
    voxtral: Callable[[], VoxtralClient]
    comfyui: Callable[[], ComfyUIClient]
    progress: Callable[[str], None] = lambda message: None
    should_stop: Callable[[], bool] = lambda: False
    notes: list[str] = field(default_factory=list)
    epoch: int | None = None  # the claiming worker's epoch: partial results are fenced with it

    @property
    def job_dir(self) -> Path:
        return self.store.job_dir(self.job_id)

    def max_attempts(self) -> int:
        retries = self.options.gate_retries if self.options.gate_retries is not None else self.settings.gate_retries
        return 1 + retries


# -- text helpers -----------------------------------------------------------------------------------
def clean_output(text: str) -> str:
    """The model's answer without a wrapping code fence or surrounding blank lines."""
    text = text.strip()
    fenced = re.fullmatch(r"```[\w-]*\n(.*?)\n?```", text, flags=re.S)
    return fenced.group(1).strip() if fenced else text


def parse_turns(script: str) -> list[tuple[str, str]]:
    """``(SPEAKER, text)`` per ``SPEAKER: text`` line; continuation lines join the previous turn."""
    turns: list[tuple[str, str]] = []
    for line in script.splitlines():
        match = TURN_RE.match(line)
        if match:
            turns.append((match.group(1), match.group(2).strip()))
        elif line.strip() and turns:
            speaker, text = turns[-1]
            turns[-1] = (speaker, f"{text} {line.strip()}")
    return turns


def speakable(text: str) -> str:
    """Text for TTS: markup Voxtral would read literally (asterisks, tags, brackets) removed."""
    return " ".join(MARKUP_RE.sub("", text).split())


def _feedback(ctx: StepContext, track: str) -> str:
    previous = [g for g in ctx.gate_history if g.track == track and g.verdict == "fail"]
    if not previous:
        return ""
    last = previous[-1]
    lines = [f"- [{f.get('rule_id')}] {f.get('message')} (matched {f.get('match')!r})" for f in last.findings[:20]]
    return ("\n\n## The previous draft was rejected by the quality gate\nAvoid every one of these problems in "
            "this new draft:\n" + "\n".join(lines))


def _kb_rules(kb: KnowledgeBase, kind: str) -> str:
    return render_rules([e for e in kb.in_scopes(KIND_SCOPES[kind]) if e.type != "diagnosis"])


def _generate(ctx: StepContext, prompt: str) -> tuple[str, dict[str, Any]]:
    completion = ctx.chat.complete([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                                   max_tokens=ctx.settings.max_tokens, temperature=ctx.settings.temperature)
    text = clean_output(completion.text)
    if not text:
        raise StepFailed(f"{completion.provider} returned an empty answer")
    detail: dict[str, Any] = {"provider": completion.provider, "model": completion.model,
                              "finish_reason": completion.finish_reason}
    if completion.usage is not None:
        detail["completion_tokens"] = completion.usage.completion_tokens
    return text, detail


# -- article ---------------------------------------------------------------------------------------
def article_part1(ctx: StepContext) -> StepResult:
    prompt = build_prompt(ctx.kb, "article", ctx.topic, ctx.sources) + _feedback(ctx, "article") + (
        "\n\n## This step\nWrite part 1 of 2 of the article: a '# ' title line, the situation, what was run and "
        "what broke. Markdown. Stop before the fix; part 2 comes next.")
    text, detail = _generate(ctx, prompt)
    return StepResult(text, detail)


def article_part2(ctx: StepContext) -> StepResult:
    prompt = build_prompt(ctx.kb, "article", ctx.topic, ctx.sources) + _feedback(ctx, "article") + (
        f"\n\n## Part 1 (already written)\n{ctx.outputs['article_part1']}\n\n## This step\nWrite part 2 of 2: the "
        "cause, the fix, how to verify it and what is still open. Continue from part 1 without repeating it and "
        "without a new title.")
    text, detail = _generate(ctx, prompt)
    return StepResult(text, detail)


def article_naturalize(ctx: StepContext) -> StepResult:
    draft = f"{ctx.outputs['article_part1']}\n\n{ctx.outputs['article_part2']}"
    prompt = ("Naturalize this article draft: make it read as one piece written by the operator in the first "
              "person, join the two parts, remove repetition, and apply every rule below. Keep every fact, command, "
              "path, version and URL exactly as it is; add none. Return the whole article in Markdown."
              f"{_feedback(ctx, 'article')}\n\n## Rules from the knowledge base (a high-severity violation blocks "
              f"publishing)\n\n{_kb_rules(ctx.kb, 'article')}\n\n## Draft\n\n{draft}")
    text, detail = _generate(ctx, prompt)
    return StepResult(text, detail)


# -- podcast ---------------------------------------------------------------------------------------
def podcast_script(ctx: StepContext) -> StepResult:
    sources = ctx.sources
    article = ctx.outputs.get("article_naturalize")
    if article:
        sources = f"### The article this episode accompanies\n{article}\n\n{sources}".strip()
    prompt = build_prompt(ctx.kb, "podcast", ctx.topic, sources) + _feedback(ctx, "podcast") + (
        "\n\n## This step\nWrite the whole episode script. Every line is 'HEXABELLA: ...' or 'CIPHERFOX: ...'; "
        "nothing else (no headings, no stage directions).")
    text, detail = _generate(ctx, prompt)
    return StepResult(text, detail)


def podcast_naturalize(ctx: StepContext) -> StepResult:
    prompt = ("Naturalize this two-host podcast script so it sounds like a real conversation when spoken: short "
              "turns, back-channels, no host speaking more than two turns in a row, plain spoken text with no "
              "markup, and apply every rule below. Keep the facts. Keep the format: one turn per line as "
              f"'HEXABELLA: text' or 'CIPHERFOX: text'.{_feedback(ctx, 'podcast')}\n\n## Rules from the knowledge "
              f"base (a high-severity violation blocks publishing)\n\n{_kb_rules(ctx.kb, 'podcast')}\n\n"
              f"## Script\n\n{ctx.outputs['podcast_script']}")
    text, detail = _generate(ctx, prompt)
    return StepResult(text, detail)


# -- quality gate ----------------------------------------------------------------------------------
def _attempt(track: str, number: int, report: GateReport, extra: list[dict[str, Any]] | None = None) -> GateAttempt:
    findings = [*(extra or []), *(f.model_dump(include={"rule_id", "severity", "level", "line", "column", "match",
                                                        "message", "suggestion"}) for f in report.findings)]
    verdict = "fail" if extra else report.verdict
    counts = dict(report.counts)
    if extra:
        counts["error"] = counts.get("error", 0) + len(extra)
    return GateAttempt(track=track, attempt=number, verdict=verdict, counts=counts, findings=findings[:MAX_FINDINGS])


def _gate(ctx: StepContext, track: str, text_step: str, artifact: str) -> StepResult:
    text = ctx.outputs[text_step]
    kind = "article" if track == "article" else "podcast"
    report = ctx.gate().check(text, kind)
    extra = None
    if kind == "podcast" and not parse_turns(text):
        extra = [{"rule_id": "script-format", "severity": "high", "level": "error", "line": 1, "column": 1,
                  "match": text[:40], "message": "no 'SPEAKER: text' lines: nothing to speak",
                  "suggestion": "One turn per line as 'HEXABELLA: ...' or 'CIPHERFOX: ...'."}]
    number = ctx.attempts.get(track, 1)
    attempt = _attempt(track, number, report, extra)
    summary = {"verdict": attempt.verdict, "counts": attempt.counts, "attempt": number}
    if attempt.verdict != "fail":
        suffix = ".md" if track == "article" else ".txt"
        ctx.store.add_artifact(ctx.job_id, artifact + suffix, text.encode("utf-8") + b"\n", f"{track}_gate",
                               epoch=ctx.epoch)
        return StepResult(json.dumps(summary), summary, gate=attempt)
    worst = "; ".join(f"[{f['rule_id']}] {f['message']}" for f in attempt.findings if f.get("severity") == "high")
    if number < ctx.max_attempts():
        return StepResult(json.dumps(summary), summary, gate=attempt, retry=True)
    raise GateAborted(f"quality gate failed on {track} attempt {number} of {ctx.max_attempts()}; aborted: {worst}",
                      attempt)


def article_gate(ctx: StepContext) -> StepResult:
    return _gate(ctx, "article", "article_naturalize", "article")


def podcast_gate(ctx: StepContext) -> StepResult:
    return _gate(ctx, "podcast", "podcast_naturalize", "podcast_script")


# -- Voxtral ---------------------------------------------------------------------------------------
def _voices(ctx: StepContext, speakers: list[str], available: list[str]) -> dict[str, str]:
    wanted = {**ctx.settings.voices, **(ctx.options.voices or {})}
    chosen: dict[str, str] = {}
    spare = [v for v in available if v not in wanted.values()]
    for speaker in speakers:
        voice = wanted.get(speaker)
        if voice is not None and (not available or voice in available):
            chosen[speaker] = voice
            continue
        fallback = spare.pop(0) if spare else (available[len(chosen) % len(available)] if available else None)
        if fallback is None:
            raise StepFailed(f"no Voxtral voice for {speaker}: set pipeline.voices.{speaker}")
        ctx.notes.append(f"voice {voice!r} for {speaker} is not offered by Voxtral; used {fallback!r}")
        chosen[speaker] = fallback
    return chosen


def podcast_tts(ctx: StepContext) -> StepResult:
    turns = [(speaker, speakable(text)) for speaker, text in parse_turns(ctx.outputs["podcast_naturalize"])]
    turns = [(speaker, text) for speaker, text in turns if text]
    if not turns:
        raise StepFailed("the podcast script has no speakable turns")
    speed = ctx.options.speed if ctx.options.speed is not None else ctx.settings.speed
    speed = min(speed, 1.0)
    client = ctx.voxtral()
    try:
        available = client.voices()
        speakers = list(dict.fromkeys(speaker for speaker, _ in turns))
        voices = _voices(ctx, speakers, available)
        folder = ctx.job_dir / "turns"
        records = []
        for i, (speaker, text) in enumerate(turns):
            if ctx.should_stop():
                raise Interrupted()
            path = folder / f"turn_{i:03d}.wav"
            ctx.progress(f"voxtral: turn {i + 1} of {len(turns)} ({speaker})")
            if not (path.is_file() and is_wav(path.read_bytes()[:12])):  # reuse turns spoken before a restart
                write_atomic(path, client.speech(text, voices[speaker], speed=speed))
            _, _, seconds = wav_params(path)
            records.append({"index": i, "speaker": speaker, "voice": voices[speaker], "file": f"turns/{path.name}",
                            "sha256": sha256_file(path), "seconds": round(seconds, 3)})
    finally:
        client.close()
    total = round(sum(r["seconds"] for r in records), 3)
    detail = {"turns": len(records), "voices": voices, "speed": speed, "seconds": total}
    if ctx.notes:
        detail["notes"] = list(ctx.notes)
    return StepResult(json.dumps({"turns": records}), detail)


def podcast_mix(ctx: StepContext) -> StepResult:
    records = json.loads(ctx.outputs["podcast_tts"])["turns"]
    paths = []
    for record in records:
        path = ctx.job_dir / record["file"]
        if not path.is_file() or sha256_file(path) != record["sha256"]:
            raise StepFailed(f"turn file {record['file']} is missing or changed since Voxtral wrote it")
        paths.append(path)
    ctx.progress(f"ffmpeg: mixing {len(paths)} turns into one MP3")
    out = ctx.job_dir / ".podcast.mp3.partial"
    mix_to_mp3(paths, out, ffmpeg=ctx.settings.ffmpeg, bitrate=ctx.settings.mp3_bitrate)
    artifact = ctx.store.add_artifact(ctx.job_id, "podcast.mp3", out, "podcast_mix", epoch=ctx.epoch)
    detail = {"turns": len(paths), "bytes": artifact.bytes, "sha256": artifact.sha256,
              "speech_seconds": round(sum(r["seconds"] for r in records), 3)}
    return StepResult(json.dumps(detail), detail)


# -- ComfyUI ---------------------------------------------------------------------------------------
def hero_image(ctx: StepContext) -> StepResult:
    opts = ctx.options
    prompt = opts.image_prompt or (f"Editorial hero image for a technical blog article about {ctx.topic}. Clean "
                                   "composition, dark background, soft light, no text, no logos.")
    seed = opts.seed if opts.seed is not None else int(hashlib.sha256(ctx.job_id.encode()).hexdigest()[:12], 16)
    width = opts.width or ctx.settings.image_width
    height = opts.height or ctx.settings.image_height
    client = ctx.comfyui()
    try:
        previous = ctx.store.step_detail(ctx.job_id, "hero_image").get("prompt_id")
        entry = client.history(previous) if previous else None
        prompt_id = previous if entry is not None else None
        if prompt_id is None:
            graph = flux_schnell_graph(prompt, width=width, height=height, seed=seed,
                                       checkpoint=ctx.settings.checkpoint, prefix=f"sovereign-mcp/{ctx.job_id}")
            prompt_id = client.queue(graph, client_id=f"sovereign-mcp-{ctx.job_id}")
        ctx.store.set_step_detail(ctx.job_id, "hero_image", {"prompt_id": prompt_id, "seed": seed},
                                  f"comfyui: rendering prompt {prompt_id}", epoch=ctx.epoch)
        images = client.wait_images(prompt_id, timeout=ctx.settings.image_timeout,
                                    poll=ctx.settings.image_poll_seconds, should_stop=ctx.should_stop)
        png = client.view(images[0])
    finally:
        client.close()
    if not is_png(png):
        raise MediaError(f"ComfyUI returned {len(png)} bytes for {images[0]['filename']} that are not a PNG")
    got = png_size(png) or (0, 0)
    if got != (width, height):
        raise MediaError(f"ComfyUI returned a {got[0]}x{got[1]} image for the {width}x{height} asked "
                         f"({images[0]['filename']}); check the graph's EmptySD3LatentImage node")
    artifact = ctx.store.add_artifact(ctx.job_id, "hero.png", png, "hero_image", epoch=ctx.epoch)
    detail = {"prompt_id": prompt_id, "seed": seed, "width": width, "height": height,
              "filename": images[0]["filename"], "sha256": artifact.sha256, "bytes": artifact.bytes}
    return StepResult(json.dumps({**detail, "prompt": prompt}), detail)


def hero_alt(ctx: StepContext) -> StepResult:
    """Alt text for the hero image just made, from the vision model (the worker holds SGLang's lease): the
    ``hero.alt.json`` artifact. A model that cannot read images leaves the step done with a warning (the image
    is still usable); no provider at all makes the job wait, like every text step."""
    path, _, _ = ctx.store.artifact(ctx.job_id, "hero.png")
    prompt = ctx.outputs.get("hero_image", "")
    try:
        described = json.loads(prompt).get("prompt", "") if prompt else ""
    except ValueError:
        described = ""
    context = f"Hero image of a blog article about {ctx.topic}. It was generated from: {described}"
    try:
        image = image_from_bytes(path.read_bytes(), 50 * 1024 * 1024)
        result = Captioner(AltTextSettings(), ctx.chat).caption(image, context, "informative", "hero.png")
    except CaptionUnavailable as exc:
        if isinstance(exc.__cause__, InferenceRequestError):  # e.g. a text-only model refusing image input
            detail = {"alt": None, "warning": f"no alt text: {exc.__cause__}"}
            return StepResult(json.dumps(detail), detail)
        raise exc.__cause__ or exc from None
    artifact = ctx.store.add_artifact(ctx.job_id, "hero.alt.json", result.model_dump_json(indent=2).encode(),
                                      "hero_alt", epoch=ctx.epoch)
    detail = {"alt": result.alt, "provider": result.provider, "warnings": result.warnings, "sha256": artifact.sha256}
    return StepResult(json.dumps(detail), detail)


RUNNERS: dict[str, Callable[[StepContext], StepResult]] = {
    "article_part1": article_part1,
    "article_part2": article_part2,
    "article_naturalize": article_naturalize,
    "article_gate": article_gate,
    "podcast_script": podcast_script,
    "podcast_naturalize": podcast_naturalize,
    "podcast_gate": podcast_gate,
    "podcast_tts": podcast_tts,
    "podcast_mix": podcast_mix,
    "hero_image": hero_image,
    "hero_alt": hero_alt,
}
