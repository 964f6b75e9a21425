"""GPU service switches and simulated wall time for a queue of ``full`` pipeline jobs: grouped vs naive order.

Runs the pipeline's real step graph (``KIND_STEPS["full"]``) through the real scheduler
(:func:`sovereign_mcp.pipeline.scheduler.choose`, steps grouped by GPU service across the queue) and through
first-come-first-served order (:func:`choose_naive`, each job start to finish). Time is simulated: the 60 s
cooldown after every stop and each model load are counted, not slept. Nothing touches the network.

    python benchmarks/pipeline_switches.py [--jobs 10]

The durations below are assumptions (named, so they can be argued with), from the operator's figures where
there are any: SGLang 35-41 tokens/s with EAGLE on Mistral Small 4, Voxtral 60-90 s to load, 60 s wait after
every stop on the GB10's unified memory.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sovereign_mcp.pipeline.config import PipelineSettings
from sovereign_mcp.pipeline.models import KIND_STEPS
from sovereign_mcp.pipeline.scheduler import choose, choose_naive
from sovereign_mcp.pipeline.store import Candidate

# -- assumptions (seconds) --------------------------------------------------------------------------
COOLDOWN_S = 60.0          # wait after a GPU service stops before the next may load (unified memory)
STOP_S = 10.0              # stopping a service (process group kill, memory handed back)
LOAD_S = {                 # start request -> readiness answers 200
    "sglang": 150.0,       # Mistral Small 4 weights + CUDA graph capture
    "voxtral": 75.0,       # operator: 60-90 s
    "comfyui": 40.0,       # ComfyUI up + FLUX.1-schnell checkpoint on first prompt
}
STEP_S = {
    "article_part1": 45.0,       # ~1,700 tokens at ~38 tokens/s
    "article_part2": 45.0,
    "article_naturalize": 70.0,  # the whole article again, ~2,600 tokens
    "article_gate": 0.2,         # deterministic regex gate
    "podcast_script": 70.0,
    "podcast_naturalize": 70.0,
    "podcast_gate": 0.2,
    "podcast_tts": 240.0,        # ~10 min episode, Voxtral faster than real time
    "podcast_mix": 5.0,          # ffmpeg concat + MP3 encode
    "hero_image": 20.0,          # FLUX.1-schnell, 4 steps, 1344x768
    "hero_alt": 6.0,             # one vision answer, ~100 tokens plus the image
}
SWITCH_AFTER_S = PipelineSettings().switch_after_seconds  # the scheduler's fairness bound (default)


@dataclass
class Run:
    order: str
    starts: int
    wall_s: float
    overhead_s: float
    first_done_s: float
    mean_done_s: float


def simulate(jobs: int, grouped: bool) -> Run:
    steps = KIND_STEPS["full"]
    state = {(j, s.name): "pending" for j in range(jobs) for s in steps}
    finished_at: dict[tuple[int, str], float] = {}
    now = overhead = 0.0
    current: str | None = None
    current_since = 0.0
    starts = 0
    job_done: dict[int, float] = {}
    while True:
        candidates = []
        for j in range(jobs):
            for i, spec in enumerate(steps):
                if state[(j, spec.name)] == "pending" and all(state[(j, d)] == "done" for d in spec.after):
                    since = max((finished_at[(j, d)] for d in spec.after), default=0.0)
                    candidates.append(Candidate(f"job{j}", j, spec.name, i, spec.service, since))
        if not candidates:
            break
        pick = (choose(candidates, current, now=now, current_since=current_since, switch_after=SWITCH_AFTER_S)
                if grouped
                else choose_naive(candidates))
        if pick.service is not None and pick.service != current:
            cost = LOAD_S[pick.service] + (STOP_S + COOLDOWN_S if current is not None else 0.0)
            now += cost
            overhead += cost
            starts += 1
            current, current_since = pick.service, now
        now += STEP_S[pick.step]
        state[(pick.seq, pick.step)] = "done"
        finished_at[(pick.seq, pick.step)] = now
        if all(state[(pick.seq, s.name)] == "done" for s in steps):
            job_done[pick.seq] = now
    done = sorted(job_done.values())
    return Run("grouped" if grouped else "naive", starts, now, overhead, done[0], sum(done) / len(done))


def _fmt(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}h{minutes:02d}m{secs:02d}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    naive, grouped = simulate(args.jobs, grouped=False), simulate(args.jobs, grouped=True)
    print(f"{args.jobs} 'full' jobs queued at once ({len(KIND_STEPS['full'])} steps each); "
          f"cooldown {COOLDOWN_S:g} s + stop {STOP_S:g} s per switch; loads {LOAD_S}")
    print(f"{'order':<8} {'starts':>6} {'switches':>8} {'switch+load':>12} {'wall time':>10} {'1st job done':>12} "
          f"{'mean job done':>13}")
    for run in (naive, grouped):
        print(f"{run.order:<8} {run.starts:>6} {run.starts - 1:>8} {_fmt(run.overhead_s):>12} {_fmt(run.wall_s):>10} "
              f"{_fmt(run.first_done_s):>12} {_fmt(run.mean_done_s):>13}")
    saved = naive.wall_s - grouped.wall_s
    print(f"saving: {naive.starts - grouped.starts} service starts, {_fmt(saved)} wall time "
          f"({saved / naive.wall_s:.0%}); trade-off: the first job finishes at {_fmt(grouped.first_done_s)} "
          f"instead of {_fmt(naive.first_done_s)}")


if __name__ == "__main__":
    main()
