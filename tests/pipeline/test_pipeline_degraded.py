"""The pipeline's degraded paths (issue 16), against loopback stand-ins started and stopped through the GPU
manager's real start/stop commands (tests/fakes/fake_services.py) and the media APIs of tests/fakes/fake_media.py:

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

import pytest

from sovereign_mcp.gpu.errors import GPUError
from sovereign_mcp.pipeline.service import PipelineService
from sovereign_mcp.pipeline.store import JobNotRetriable
from tests.fakes.fake_media import CLEAN_SCRIPT, ScriptedLLM, content_responder, wait_for
from tests.pipeline import test_pipeline
from tests.pipeline.test_pipeline import IMAGE, World, gpu_events, write_meminfo

TURNS = len(CLEAN_SCRIPT.splitlines())
world = test_pipeline.world  # the same fixture: the stand-ins of one test


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


# -- retry -------------------------------------------------------------------------------------------
def test_retry_of_a_gate_aborted_job_regenerates_once_and_keeps_finished_tracks(world: World) -> None:
    bad = [True]
    world.sglang.responder = content_responder(bad=lambda prompt: bad[0])
    service = world.service(gate_retries=0)
    status = service.run_until_finished(service.submit("article", "a gate that says no").job_id)
    assert status.state == "failed" and "quality gate failed" in (status.error or "")
    with pytest.raises(JobNotRetriable):
        service.retry(service.submit("hero_image", "queued, not failed").job_id)
    calls = len(world.sglang.chat_requests)
    bad[0] = False
    retried = service.retry(status.job_id)
    assert retried.state == "queued" and retried.message == "retried: resumes at article_part1"
    done = service.run_until_finished(status.job_id)
    assert done.state == "done", done.error
    assert done.gate[0].verdict == "fail" and done.gate[-1].verdict != "fail"
    assert done.gate[-1].attempt == 2
    assert len(world.sglang.chat_requests) - calls == 3  # part 1, part 2, naturalize: one regeneration


def test_retry_of_a_cancelled_job_keeps_its_finished_steps(world: World) -> None:
    service = world.service()
    job_id = service.submit("full", "cancel then retry").job_id
    service.worker.run(until=lambda: service.status(job_id).steps[0].state == "done")
    assert service.cancel(job_id).state == "cancelled"
    first = service.status(job_id).steps[0]
    calls = len(world.sglang.chat_requests)
    service.retry(job_id)
    done = service.run_until_finished(job_id)
    assert done.state == "done", done.error
    assert done.steps[0].finished_at == first.finished_at  # part 1 was not run again
    assert len(world.sglang.chat_requests) - calls == 5  # article part 2, naturalize; podcast x2; the alt text
    with pytest.raises(JobNotRetriable, match="is done"):
        service.retry(job_id)


def test_cli_pipeline_retry(world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sovereign_mcp.cli import main

    for key, value in world.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(world.root)
    assert main(["pipeline", "run", "hero_image", "later"]) == 0
    job = capsys.readouterr().out.split("queued job ")[1].split()[0]
    assert main(["pipeline", "retry", job]) == 1
    assert "only a failed or cancelled job can be retried" in capsys.readouterr().err
    assert main(["pipeline", "cancel", job]) == 0
    capsys.readouterr()
    assert main(["pipeline", "retry", job, "--wait"]) == 0
    assert "state: done" in capsys.readouterr().out
    assert main(["pipeline", "retry", "nosuchjob"]) == 1


# -- the ticket says what the job will wait for -------------------------------------------------------
def test_ticket_warns_when_sglang_cannot_start_and_no_fallback_answers(world: World) -> None:
    world.sglang.stop()
    world.stack.services["fake-sglang"].never_ready = True
    service = world.service({"fake-sglang": {"ready_timeout": 0.3, "start_backoff_seconds": 600.0}})
    healthy = service.submit("hero_image", "no text steps")
    assert healthy.warnings == []
    with pytest.raises(GPUError):
        service.deps.gpu.acquire("fake-sglang")  # one failed start opens its breaker
    ticket = service.submit("article", "no model anywhere")
    assert len(ticket.warnings) == 2, ticket.warnings
    assert ticket.warnings[0].startswith("the SGLang service fake-sglang failed to start and is not tried again "
                                         "before ") and ticket.warnings[0].endswith("text steps wait for a provider")
    assert ticket.warnings[1].startswith("no inference provider answers (llamacpp: ")
    assert all(w in ticket.message for w in ticket.warnings)
    world.llamacpp = ScriptedLLM("llamacpp", content_responder(), port=world.llamacpp.port)
    world.llamacpp.start()
    (note,) = service.submit("article", "the fallback is up").warnings
    assert note.endswith("text steps run on llamacpp")


def test_ticket_is_quiet_when_sglang_is_merely_stopped(world: World) -> None:
    world.sglang.stop()  # not loaded now; the worker starts it when the job's turn comes
    assert world.service().submit("full", "later").warnings == []
