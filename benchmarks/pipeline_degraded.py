"""Wall time of one ``full`` pipeline job with SGLang dead and a llama.cpp fallback up, beside the healthy run
and beside the same dead SGLang with the start breaker off (every SGLang step tries to start it again: the
behaviour before the breaker), all in the same run.

Real parts on loopback: the GPU stand-ins of ``tests/fakes/fake_services.py`` started and stopped through the
launcher's real start/stop commands by the real GPU manager, the chat stand-ins and the Voxtral/ComfyUI
stand-ins of ``tests/fakes/fake_media.py``, the real worker, store, gate and ffmpeg mix.

    python benchmarks/pipeline_degraded.py [--scale 0.01]

Durations are the operator's figures times ``--scale`` (so a 20-minute job takes seconds): SGLang loads in
150 s, Voxtral in 75 s, ComfyUI in 40 s; one text step takes 50 s on either provider (the fallback is assumed
as fast: the figure measures the scheduling, not the model); the GPU manager's defaults for
``ready_timeout`` (300 s), ``cooldown_seconds`` (60 s) and ``start_backoff_seconds`` (600 s). Target: the
degraded job <= 1.5x the healthy one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.fake_media import ScriptedLLM, content_responder
from tests.pipeline.test_pipeline import ROLES, World, gpu_events

LOAD_S = {"sglang": 150.0, "voxtral": 75.0, "comfyui": 40.0}
TEXT_STEP_S = 50.0
READY_TIMEOUT_S = 300.0
COOLDOWN_S = 60.0
START_BACKOFF_S = 600.0
TARGET = 1.5


def slow(seconds: float) -> Any:
    respond = content_responder()

    def answer(prompt: str) -> str:
        time.sleep(seconds)
        return respond(prompt)

    return answer


def run(scenario: str, scale: float) -> tuple[float, int, str]:
    """``(seconds, SGLang start attempts, final job state)`` of one ``full`` job in ``scenario``."""
    root = Path(tempfile.mkdtemp(prefix=f"pipeline-degraded-{scenario}-"))
    world = World(root)
    try:
        (root / "corpus").mkdir()
        for role, name in ROLES.items():
            world.stack.services[name].delay = LOAD_S[role] * scale
            world.stack.services[name].warmup = 0
        if scenario == "healthy":
            world.sglang.responder = slow(TEXT_STEP_S * scale)
            world.sglang.start()
        else:
            world.stack.services["fake-sglang"].never_ready = True
            world.llamacpp = ScriptedLLM("llamacpp", slow(TEXT_STEP_S * scale), port=world.llamacpp.port)
            world.llamacpp.start()
        backoff = 0.0 if scenario == "no breaker" else START_BACKOFF_S * scale
        gpu = {name: {"ready_timeout": READY_TIMEOUT_S * scale, "cooldown_seconds": COOLDOWN_S * scale,
                      "start_backoff_seconds": backoff, "start_backoff_max_seconds": 6 * START_BACKOFF_S * scale}
               for name in ROLES.values()}
        service = world.service(gpu)
        began = time.perf_counter()
        status = service.run_until_finished(service.submit("full", "one service at a time").job_id)
        seconds = time.perf_counter() - began
        starts = sum(1 for e in gpu_events(service) if e.service == "fake-sglang" and e.event == "start_requested")
        return seconds, starts, status.state
    finally:
        world.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.01, help="factor on every duration (default 0.01)")
    args = parser.parse_args()
    results = {}
    for scenario in ("healthy", "SGLang dead, fallback up", "no breaker"):
        seconds, starts, state = run(scenario, args.scale)
        results[scenario] = seconds
        print(f"{scenario:<26} {seconds:7.2f} s  SGLang starts {starts}  job {state}", flush=True)
    healthy = results["healthy"]
    for scenario in ("SGLang dead, fallback up", "no breaker"):
        print(f"{scenario:<26} = {results[scenario] / healthy:.2f}x healthy")
    ratio = results["SGLang dead, fallback up"] / healthy
    print(f"{'PASS' if ratio <= TARGET else 'FAIL'}  SGLang dead, fallback up <= {TARGET}x healthy ({ratio:.2f}x)")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
