"""The content pipeline end to end on loopback fakes: SGLang / llama.cpp chat (tests/fakes/fake_llm.py), Voxtral and
ComfyUI (tests/fakes/fake_media.py), GPU services as small real processes through the real GPU manager and launcher
(tests/fakes/fake_services.py, cooldown 0), ffmpeg for real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sovereign_mcp.config import Settings
from sovereign_mcp.gpu.manager import GPUServiceManager, find_overlaps
from sovereign_mcp.pipeline.media import is_png, mp3_frame_offset
from sovereign_mcp.pipeline.models import KIND_STEPS
from sovereign_mcp.pipeline.scheduler import choose, choose_naive
from sovereign_mcp.pipeline.service import PipelineInputError, PipelineService
from sovereign_mcp.pipeline.store import Candidate
from tests.fakes.fake_llm import FakeLLM
from tests.fakes.fake_media import (
    HERO_ALT,
    FakeComfyUI,
    FakeVoxtral,
    ScriptedLLM,
    content_responder,
    make_png,
    wait_for,
)
from tests.fakes.fake_services import FakeStack
from tests.helpers import REPO, free_port

HAVE_FFMPEG = shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG and not os.environ.get("CI"),
                                  reason="ffmpeg is not installed (CI installs it via .ci/run)")
IMAGE = (80, 64)  # hero image size asked of the ComfyUI stand-in (small: it renders real PNGs)
ROLES = {"sglang": "fake-sglang", "voxtral": "fake-voxtral", "comfyui": "fake-comfyui"}


def write_meminfo(path: Path, available_gb: float = 100.0) -> Path:
    path.write_text(f"MemTotal: 125000000 kB\nMemAvailable: {int(available_gb * 1e9 / 1024)} kB\n")
    return path


class World:
    """The fakes of one test and a way to build settings / services pointing at them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sglang = ScriptedLLM("sglang", content_responder(), mode="healthy")
        self.llamacpp = FakeLLM("llamacpp", mode="down")
        self.voxtral = FakeVoxtral().start()
        self.comfyui = FakeComfyUI().start()
        self.stack = FakeStack(root / "fakes")
        self.stack.root.mkdir(parents=True)
        for kind, name in ROLES.items():
            self.stack.add(name, free_port(), warmup=1)
            del kind
        self.meminfo = write_meminfo(root / "meminfo")
        self.data_dir = root / "data"
        self.services: list[PipelineService] = []

    def gpu(self) -> dict[str, Any]:
        services = [{**self.stack.settings(name), "kind": kind} for kind, name in ROLES.items()]
        return {"services": services, "memory_margin_gb": 1.0, "memory_wait_seconds": 0.0,
                "meminfo_path": str(self.meminfo), "poll_interval": 0.02, "http_timeout": 1.0,
                "busy_timeout_seconds": 30.0}

    def inference(self) -> dict[str, Any]:
        return {"providers": [
            {"name": "sglang", "kind": "sglang", "base_url": self.sglang.base_url, "model": "mistral-small-4",
             "timeout": 10, "connect_timeout": 1},
            {"name": "llamacpp", "kind": "llamacpp", "base_url": self.llamacpp.base_url, "model": "fallback",
             "timeout": 10, "connect_timeout": 1}], "failure_threshold": 2, "cooldown_seconds": 0.2}

    def pipeline(self, **overrides: Any) -> dict[str, Any]:
        return {"voxtral_url": self.voxtral.url, "comfyui_url": self.comfyui.url, "idle_poll_seconds": 0.05,
                "inference_poll_seconds": 0.2, "image_poll_seconds": 0.02, "gate_retries": 2,
                "image_width": IMAGE[0], "image_height": IMAGE[1], **overrides}

    def settings(self, gpu: dict[str, dict[str, Any]] | None = None, **pipeline: Any) -> Settings:
        """Settings over these fakes; ``gpu`` maps a GPU service name to overrides of its entry."""
        services = self.gpu()
        for entry in services["services"]:
            entry.update((gpu or {}).get(entry["name"], {}))
        return Settings(data_dir=self.data_dir, corpus={"paths": [self.root / "corpus"], "watch": False},
                        inference=self.inference(), gpu=services, pipeline=self.pipeline(**pipeline))

    def service(self, gpu: dict[str, dict[str, Any]] | None = None, **pipeline: Any) -> PipelineService:
        service = PipelineService(self.settings(gpu, **pipeline))
        self.services.append(service)
        return service

    def env(self) -> dict[str, str]:
        """The same configuration as ``SOVEREIGN_MCP_*`` variables (for subprocesses)."""
        return {"SOVEREIGN_MCP_DATA_DIR": str(self.data_dir),
                "SOVEREIGN_MCP_CORPUS__PATHS": json.dumps([str(self.root / "corpus")]),
                "SOVEREIGN_MCP_CORPUS__WATCH": "false",
                "SOVEREIGN_MCP_INFERENCE": json.dumps(self.inference()),
                "SOVEREIGN_MCP_GPU": json.dumps(self.gpu()),
                "SOVEREIGN_MCP_PIPELINE": json.dumps(self.pipeline()),
                "XDG_CONFIG_HOME": str(self.root / "xdg")}

    def close(self) -> None:
        for service in self.services:
            service.close()
        self.sglang.stop()
        self.llamacpp.stop()
        self.voxtral.stop()
        self.comfyui.stop()
        self.stack.cleanup()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.sglang.start()
    (tmp_path / "corpus").mkdir()
    yield w
    w.close()


def chats(fake: FakeLLM, marker: str) -> int:
    return sum(1 for r in fake.chat_requests if marker in json.dumps(r.body))


def gpu_events(service: PipelineService) -> list[Any]:
    return GPUServiceManager(service.settings.gpu, service.settings.data_dir).events()


# -- article --------------------------------------------------------------------------------------
def test_article_job_passes_the_gate(world: World) -> None:
    service = world.service()
    ticket = service.submit("article", "one GPU service at a time")
    status = service.run_until_finished(ticket.job_id)
    assert status.state == "done", status.error
    assert [s.state for s in status.steps] == ["done"] * 4
    assert [g.verdict for g in status.gate] in (["pass"], ["pass_with_warnings"])
    article = next(a for a in status.artifacts if a.name == "article.md")
    path, mime = service.artifact(ticket.job_id, "article.md")
    assert mime == "text/markdown" and hashlib.sha256(path.read_bytes()).hexdigest() == article.sha256
    assert path.read_text().startswith("# One Service At A Time")
    assert path.parent == world.data_dir / "artifacts" / ticket.job_id
    prompts = world.sglang.prompts()
    assert len(prompts) == 3  # part 1, part 2, naturalize
    assert all("Phrases the model overuses" in p for p in prompts)  # KB rules injected
    assert "Write part 1 of 2" in prompts[0] and "Write part 2 of 2" in prompts[1] and "Naturalize" in prompts[2]
    events = gpu_events(service)
    assert [e.service for e in events if e.event == "start_requested"] == ["fake-sglang"]
    assert status.steps[0].detail["provider"] == "sglang"


def test_gate_failure_regenerates_then_passes(world: World) -> None:
    world.sglang.responder = content_responder(bad=lambda p: "rejected by the quality gate" not in p)
    service = world.service()
    status = service.run_until_finished(service.submit("article", "sixty seconds of cooldown").job_id)
    assert status.state == "done", status.error
    assert status.gate[0].verdict == "fail"
    assert status.gate[-1].verdict in ("pass", "pass_with_warnings")
    assert {f["rule_id"] for f in status.gate[0].findings} >= {"overuse-phrases"}
    assert status.attempts == {"article": 2}
    assert len(world.sglang.chat_requests) == 6  # all three generation steps ran twice
    assert "Here's the thing" not in service.artifact(status.job_id, "article.md")[0].read_text()


def test_gate_always_failing_aborts_with_the_findings(world: World) -> None:
    world.sglang.responder = content_responder(bad=lambda p: True)
    service = world.service(gate_retries=1)
    status = service.run_until_finished(service.submit("article", "a topic").job_id)
    assert status.state == "failed"
    assert "quality gate failed" in status.error and "overuse-phrases" in status.error
    assert [g.verdict for g in status.gate] == ["fail", "fail"]
    assert all(any(f["rule_id"] == "overuse-phrases" and f["severity"] == "high" for f in g.findings)
               for g in status.gate)
    assert next(s for s in status.steps if s.name == "article_gate").state == "failed"
    assert not [a for a in status.artifacts if a.name == "article.md"]
    assert len(world.sglang.chat_requests) == 6


# -- podcast and image ----------------------------------------------------------------------------
@needs_ffmpeg
def test_podcast_job_produces_an_mp3(world: World) -> None:
    service = world.service()
    status = service.run_until_finished(service.submit("podcast", "why one service at a time").job_id)
    assert status.state == "done", status.error
    speeches = world.voxtral.speeches
    assert len(speeches) == 6  # one request per turn of the script
    assert all(s["speed"] <= 1.0 and s["response_format"] == "wav" for s in speeches)
    assert {s["voice"] for s in speeches} == {"neutral_female", "neutral_male"}
    assert speeches[0]["input"].startswith("So why can only one")
    names = {a.name for a in status.artifacts}
    assert names == {"podcast_script.txt", "podcast.mp3"}
    mp3, mime = service.artifact(status.job_id, "podcast.mp3")
    data = mp3.read_bytes()
    assert mime == "audio/mpeg" and mp3_frame_offset(data) is not None
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration", "-of", "json",
                            str(mp3)], capture_output=True, text=True, check=True)
    fmt = json.loads(probe.stdout)["format"]
    assert fmt["format_name"] == "mp3" and float(fmt["duration"]) > 1.0
    events = [e.service for e in gpu_events(service) if e.event == "start_requested"]
    assert events == ["fake-sglang", "fake-voxtral"]


def test_hero_image_png_and_sha256_in_the_job_record(world: World) -> None:
    service = world.service()
    status = service.run_until_finished(service.submit("hero_image", "a quiet machine room",
                                                       options={"seed": 7}).job_id)
    assert status.state == "done", status.error
    artifact, alt = status.artifacts
    path, _ = service.artifact(status.job_id, "hero.png")
    data = path.read_bytes()
    assert is_png(data) and data == make_png(*IMAGE)
    assert artifact.sha256 == hashlib.sha256(data).hexdigest() == status.steps[0].detail["sha256"]
    assert artifact.uri == f"pipeline://jobs/{status.job_id}/artifacts/hero.png"
    (graph,) = world.comfyui.prompts.values()
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"], sampler["seed"]) == \
        (4, 1.0, "euler", "simple", 7)
    assert world.comfyui.count("GET", "/history/") >= 3  # polled until rendered
    # then the vision model writes its alt text, on SGLang once ComfyUI is stopped (one service at a time)
    (caption,) = world.sglang.chat_requests
    image = next(p for p in caption.body["messages"][-1]["content"] if p["type"] == "image_url")
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(data).decode()
    assert alt.name == "hero.alt.json" and status.steps[1].detail["alt"] == HERO_ALT
    assert json.loads(service.artifact(status.job_id, "hero.alt.json")[0].read_text())["alt"] == HERO_ALT
    assert [e.service for e in gpu_events(service) if e.event == "start_requested"] == ["fake-comfyui", "fake-sglang"]


def test_the_worker_stops_a_gpu_service_left_idle(world: World) -> None:
    """The background worker, once idle, stops a service past its ``idle_stop_seconds`` (and logs why)."""
    service = world.service({"fake-sglang": {"idle_stop_seconds": 0.5}})  # the job ends on it (alt text)
    job_id = service.submit("hero_image", "an idle stop").job_id
    service.start_worker()
    wait_for(lambda: service.status(job_id).state == "done", timeout=30)
    wait_for(lambda: gpu_events(service)[-1].event == "stopped", timeout=10)
    assert world.stack.alive() == []
    events = [(e.service, e.event) for e in gpu_events(service)]
    assert events[-2:] == [("fake-sglang", "stop_requested"), ("fake-sglang", "stopped")]
    stop = [e for e in gpu_events(service) if e.event == "stop_requested"][-1]
    assert "idle_stop_seconds = 0.5" in stop.detail


def test_bad_requests_are_refused(world: World) -> None:
    service = world.service()
    with pytest.raises(PipelineInputError, match="unknown job kind"):
        service.submit("video", "x")
    with pytest.raises(PipelineInputError, match="speed"):
        service.submit("podcast", "x", options={"speed": 1.5})
    with pytest.raises(PipelineInputError, match="unknown article slug"):
        service.submit("article", "x", ["no-such-post"])
    with pytest.raises(PipelineInputError, match="ffmpeg not found"):
        world.service(ffmpeg="/nonexistent/ffmpeg").submit("podcast", "x")


# -- inference fallback and blackout --------------------------------------------------------------
def test_dead_sglang_falls_back_to_llamacpp(world: World) -> None:
    world.sglang.stop()
    world.llamacpp = ScriptedLLM("llamacpp", content_responder(), port=world.llamacpp.port)
    world.llamacpp.start()
    service = world.service()
    status = service.run_until_finished(service.submit("article", "fallback").job_id)
    assert status.state == "done", status.error
    assert {s.detail["provider"] for s in status.steps[:3]} == {"llamacpp"}
    assert len(world.llamacpp.chat_requests) == 3


def test_total_blackout_waits_and_resumes(world: World) -> None:
    world.sglang.stop()  # llama.cpp is down as well
    service = world.service()
    job_id = service.submit("article", "blackout").job_id
    service.start_worker()
    wait_for(lambda: service.status(job_id).state == "waiting", timeout=15)
    status = service.status(job_id)
    assert "waiting for an inference provider" in status.message and status.error is None
    world.sglang.start()
    wait_for(lambda: service.status(job_id).state == "done", timeout=20)
    assert len(world.sglang.chat_requests) == 3


# -- grouping across the queue --------------------------------------------------------------------
@needs_ffmpeg
def test_five_full_jobs_never_two_gpu_services_up(world: World) -> None:
    service = world.service()
    jobs = [service.submit("full", f"topic {i}").job_id for i in range(5)]
    service.start_worker()
    wait_for(lambda: all(service.status(j).state in ("done", "failed") for j in jobs), timeout=40)
    for job in jobs:
        status = service.status(job)
        assert status.state == "done", status.error
        assert {a.name for a in status.artifacts} == {"article.md", "podcast_script.txt", "podcast.mp3", "hero.png",
                                                      "hero.alt.json"}
    events = gpu_events(service)
    assert find_overlaps(events) == []
    assert world.stack.overlapping() == []
    starts = [e.service for e in events if e.event == "start_requested"]
    # 4 starts, not 20: the text steps, speech and images each batched, then every hero's alt text on SGLang
    assert starts in (["fake-sglang", "fake-comfyui", "fake-voxtral", "fake-sglang"],
                      ["fake-sglang", "fake-voxtral", "fake-comfyui", "fake-sglang"]), starts
    # the podcast of a full job is written from its finished article
    assert all("The article this episode accompanies" in p for p in world.sglang.prompts()
               if "Write the whole episode script" in p)


def test_scheduler_groups_by_service() -> None:
    c = [Candidate("a", 1, "article_part1", 0, "sglang", 0.0), Candidate("a", 1, "hero_image", 9, "comfyui", 0.0),
         Candidate("b", 2, "podcast_tts", 3, "voxtral", 0.0), Candidate("b", 2, "podcast_gate", 2, None, 0.0)]
    assert choose(c, None, now=1).step == "podcast_gate"  # CPU steps first
    gpu_only = [x for x in c if x.service]
    assert choose(gpu_only, "voxtral", now=1).step == "podcast_tts"  # stay on the loaded service
    assert choose(gpu_only, None, now=1).step == "article_part1"  # else the oldest job's step
    assert choose(gpu_only, "voxtral", now=5000, current_since=4000, switch_after=3600).step == "podcast_tts"
    assert choose(gpu_only, "voxtral", now=5000, current_since=1000, switch_after=3600).step == "article_part1"
    assert choose(gpu_only, "sglang", now=1, exclude={"sglang"}).step == "hero_image"
    assert choose([c[0]], None, now=1, exclude={"sglang"}) is None
    assert choose_naive(gpu_only).step == "article_part1"
    assert [s.service for s in KIND_STEPS["full"]].count("sglang") == 6  # 5 text steps and the hero's alt text


# -- cancel and crash recovery --------------------------------------------------------------------
def test_cancel_queued_and_at_the_step_boundary(world: World) -> None:
    service = world.service()
    queued = service.submit("article", "never started").job_id
    assert service.cancel(queued).state == "cancelled"
    gate = threading.Event()
    world.sglang.responder = content_responder(hold=lambda p: gate if "Write part 1 of 2" in p else None)
    job = service.submit("article", "cancel me").job_id
    service.start_worker()
    wait_for(lambda: len(world.sglang.chat_requests) == 1)
    status = service.cancel(job)
    assert status.state == "running" and status.cancel_requested
    gate.set()
    wait_for(lambda: service.status(job).state == "cancelled")
    steps = {s.name: s.state for s in service.status(job).steps}
    assert steps == {"article_part1": "done", "article_part2": "cancelled", "article_naturalize": "cancelled",
                     "article_gate": "cancelled"}
    assert len(world.sglang.chat_requests) == 1


def test_killed_worker_resumes_without_redoing_finished_steps(world: World) -> None:
    held = threading.Event()
    seen: list[str] = []

    def hold(prompt: str) -> threading.Event | None:
        if "Naturalize this article draft" in prompt:
            seen.append(prompt)
            return held if len(seen) == 1 else None
        return None

    world.sglang.responder = content_responder(hold=hold)
    service = world.service()  # queues only; the workers are subprocesses
    job = service.submit("article", "crash in the middle").job_id
    env = {**os.environ, **world.env(), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "sovereign_mcp", "pipeline", "status", job, "--wait"]
    first = subprocess.Popen(argv, cwd=world.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(seen) == 1, timeout=30)  # steps 1 and 2 done, step 3 in flight
        assert [s.state for s in service.status(job).steps[:3]] == ["done", "done", "running"]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        held.set()
        first.stdout.close()
    second = subprocess.run(argv, cwd=world.root, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    status = service.status(job)
    assert status.state == "done"
    assert chats(world.sglang, "Write part 1 of 2") == 1 and chats(world.sglang, "Write part 2 of 2") == 1
    assert chats(world.sglang, "Naturalize this article draft") == 2  # the interrupted one, then once more
    assert "artifact: article.md" in second.stdout
    assert find_overlaps(gpu_events(service)) == []


def test_cli_run_status_cancel_services(world: World, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from sovereign_mcp.cli import main

    for key, value in world.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(world.root)
    assert main(["pipeline", "run", "hero_image", "a lamp", "--option", "seed=3", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "state: done" in out and "artifact: hero.png" in out
    job = out.split("queued job ")[1].split()[0]
    assert main(["pipeline", "status", job, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["artifacts"][0]["name"] == "hero.png"
    assert main(["pipeline", "run", "article", "later"]) == 0
    queued = capsys.readouterr().out.split("queued job ")[1].split()[0]
    assert main(["pipeline", "cancel", queued]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["pipeline", "services"]) == 0
    out = capsys.readouterr().out
    assert "comfyui -> fake-comfyui" in out and "fake-comfyui" in out
    assert main(["pipeline", "status", "nosuchjob"]) == 1
    assert main(["pipeline", "run", "article", "x", "--option", "speed=9"]) == 2


def test_systemd_units_and_sudoers() -> None:
    folder = REPO / "systemd"
    mcp = (folder / "sovereign-mcp.service").read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=read-only",
                 "ReadWritePaths=/var/lib/sovereign-mcp", "Restart=on-failure", "RestartSec=5", "User=sovereign-mcp"):
        assert line in mcp.splitlines(), line
    units = ["sglang-mistral4.service", "voxtral-tts.service", "comfyui-flux.service"]
    for unit in units:
        lines = (folder / unit).read_text().splitlines()
        others = sorted(set(units) - {unit})
        conflicts = [line for line in lines if line.startswith("Conflicts=")]
        assert conflicts and sorted(conflicts[0].removeprefix("Conflicts=").split()) == others
        for line in ("ExecStopPost=/bin/sleep 60", "RestartSec=65", "KillMode=control-group"):
            assert line in lines, (unit, line)
        assert not any("#" in line and not line.lstrip().startswith("#") for line in lines)
    rules = [line for line in (folder / "sovereign-mcp.sudoers.example").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert all("*" not in line for line in rules)
    commands = {c.strip() for line in rules for c in line.split(":", 1)[1].split(",")}
    assert "/usr/bin/systemctl restart sovereign-mcp.service" in commands
    for unit in units:
        assert {f"/usr/bin/systemctl start {unit}", f"/usr/bin/systemctl stop {unit}"} <= commands
