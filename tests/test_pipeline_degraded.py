"""The pipeline's degraded paths (issue 16), against loopback stand-ins started and stopped through the GPU
manager's real start/stop commands (tests/fake_services.py) and the media APIs of tests/fake_media.py:

* SGLang that never becomes ready, a llama.cpp fallback up: a ``full`` job finishes on the fallback with
  one SGLang start attempt in the breaker window (not one per step);
* the memory guard short of memory: the job waits (with the figures) and finishes once memory is back;
* Voxtral killed mid-podcast: reported, restarted under the one-at-a-time rule, the turns already spoken
  reused; Voxtral dead for good: the job waits instead of failing and finishes once it answers again;
* a hero image of the wrong size is refused.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sovereign_mcp.pipeline.service import PipelineService
from tests.fake_media import CLEAN_SCRIPT, ScriptedLLM, content_responder, wait_for
from tests.test_pipeline import IMAGE, World, gpu_events, write_meminfo

TURNS = len(CLEAN_SCRIPT.splitlines())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.sglang.start()
    (tmp_path / "corpus").mkdir()
    yield w
    w.close()


def starts(service: PipelineService, name: str) -> int:
    return sum(1 for e in gpu_events(service) if e.service == name and e.event == "start_requested")


def test_never_ready_sglang_is_tried_once_and_the_full_job_runs_on_the_fallback(world: World) -> None:
    world.sglang.stop()  # its API never comes up either
    world.stack.services["fake-sglang"].never_ready = True
    world.llamacpp = ScriptedLLM("llamacpp", content_responder(), port=world.llamacpp.port)
    world.llamacpp.start()
    service = world.service({"fake-sglang": {"ready_timeout": 0.5, "start_backoff_seconds": 600.0}})
    status = service.run_until_finished(service.submit("full", "one service at a time").job_id)
    assert status.state == "done", status.error
    llm_steps = [s for s in status.steps if s.detail and "provider" in s.detail]
    assert len(llm_steps) >= 5 and {s.detail["provider"] for s in llm_steps} == {"llamacpp"}
    assert starts(service, "fake-sglang") == 1  # the breaker kept every later step off the dead service
    assert world.sglang.chat_requests == []


def test_memory_guard_short_the_job_waits_then_finishes_when_memory_is_back(world: World) -> None:
    write_meminfo(world.meminfo, available_gb=5.0)  # each stand-in needs 10 GB + 1 GB margin
    service = world.service(gpu_retry_seconds=0.3)
    job_id = service.submit("hero_image", "short of memory").job_id
    service.start_worker()
    wait_for(lambda: service.status(job_id).state == "waiting" and "GB" in (service.status(job_id).message or ""))
    message = service.status(job_id).message or ""
    assert "waiting for the comfyui service" in message and "next try at" in message
    assert starts(service, "fake-comfyui") == 0  # nothing was started short of memory
    write_meminfo(world.meminfo, available_gb=100.0)
    wait_for(lambda: service.status(job_id).state == "done", timeout=30)
    assert starts(service, "fake-comfyui") == 1


def test_voxtral_killed_mid_podcast_is_restarted_and_spoken_turns_are_reused(world: World) -> None:
    service = world.service()
    voxtral = world.stack.services["fake-voxtral"]
    world.voxtral.crash_at = 3
    world.voxtral.on_crash = lambda: os.kill(int(voxtral.pidfile.read_text().split()[0]), signal.SIGKILL)
    world.voxtral.outage = lambda: starts(service, "fake-voxtral") < 2  # answers again once restarted
    status = service.run_until_finished(service.submit("podcast", "why one service at a time").job_id)
    assert status.state == "done", status.error
    spoken = [body["input"] for body in world.voxtral.speeches]
    assert len(spoken) == TURNS and len(set(spoken)) == TURNS  # turns 0-2 were not spoken twice
    assert starts(service, "fake-voxtral") == 2
    assert any(e.event == "failed" and "reported dead" in e.detail for e in gpu_events(service)
               if e.service == "fake-voxtral")


def test_voxtral_dead_for_good_makes_the_job_wait_not_fail(world: World) -> None:
    service = world.service(media_restarts=1, gpu_retry_seconds=0.5)
    dead = [True]
    world.voxtral.outage = lambda: dead[0]
    job_id = service.submit("podcast", "a dead voice").job_id
    service.start_worker()
    wait_for(lambda: "stopped answering" in (service.status(job_id).message or "")
             and service.status(job_id).state == "waiting", timeout=60)
    assert service.status(job_id).state == "waiting"
    dead[0] = False
    wait_for(lambda: service.status(job_id).state == "done", timeout=60)
    assert len(world.voxtral.speeches) == TURNS


def test_hero_image_of_the_wrong_size_is_refused(world: World) -> None:
    world.comfyui.wrong_size = (64, 64)
    service = world.service()
    status = service.run_until_finished(service.submit("hero_image", "a wrong size").job_id)
    assert status.state == "failed"
    assert f"64x64 image for the {IMAGE[0]}x{IMAGE[1]} asked" in (status.error or "")
    assert status.artifacts == []
