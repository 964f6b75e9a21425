"""How fast the ``sovereign-mcp`` command line starts, as a whole process, beside named baselines in the same run.

Each figure is the median wall time of ``--runs`` runs of a fresh process (``python -m sovereign_mcp ...``,
the same code as the console script), with an isolated data and config dir whose index cache is warmed
first (the shipped corpus and KB):

* ``python -c pass`` (the interpreter alone) and ``python -c "import fastmcp"`` (the baseline the issue names);
* ``sovereign-mcp --help``;
* ``sovereign-mcp gate`` on a 3-line file, and on 1 MB of Markdown beside ``proselint check`` on the same file:
  the steady state (the compiled gate loaded from the user cache, as every run after the first with the same
  settings, KB and corpus) and, for information, the first run (the cache emptied before each run: settings,
  KB validation, facts, then the cache written).

``proselint check`` runs with a config that lifts its ``max_errors`` cap (1000 by default in proselint 0.16's
``config/default.json``): capped, it stops at the thousandth error and never runs the checks after it
(``LintFile.lint`` is a lazy ``islice``; 0.6 s against 1.8 s on this document). The gate reports every finding,
and ``gate_speed.py`` lifts the cap the same way.

Also checked: ``import sovereign_mcp.config`` loads no engine, HTTP client or numpy.
Targets (issue): gate on 3 lines <= 150 ms and <= 0.5x ``import fastmcp``; ``--help`` <= 150 ms; gate on 1 MB
<= 0.15x proselint. Exit 1 when one is missed.
Usage: ``python benchmarks/cli_start.py [--runs 7] [--no-proselint]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gate_speed import build_document  # the same 1 MB document as the in-process benchmark

HEAVY = ("httpx", "numpy", "fastmcp", "mcp", "sklearn", "starlette", "uvicorn", "psycopg")


def wall_ms(cmd: list[str], env: dict[str, str], runs: int, before: Callable[[], object] | None = None) -> float:
    """Median wall time in ms of ``runs`` runs of ``cmd`` (output discarded; exit codes 0 and 1 accepted);
    ``before`` runs, untimed, before each."""
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append((time.perf_counter() - started) * 1000)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-500:]}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-proselint", action="store_true", help="skip the 1 MB comparison")
    args = parser.parse_args(argv)
    py = sys.executable
    home = Path(tempfile.mkdtemp(prefix="sovereign-cli-start-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_MCP_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               XDG_CACHE_HOME=str(home / "cache"), SOVEREIGN_MCP_DATA_DIR=str(home / "data"))

    def empty_cache() -> None:
        shutil.rmtree(home / "cache", ignore_errors=True)

    small, big = home / "note.md", home / "big.md"
    small.write_text("# A note\n\nOne short paragraph about the box.\n")
    big.write_text(build_document(1_000_000))
    try:
        subprocess.run([py, "-m", "sovereign_mcp", "index"], env=env, check=True, stdout=subprocess.DEVNULL)
        loaded = subprocess.run([py, "-c", "import sys, sovereign_mcp.config; print(' '.join(sorted({m.split('.')[0] "
                                 "for m in sys.modules})))"], env=env, check=True, capture_output=True, text=True)
        heavy = sorted(set(loaded.stdout.split()) & set(HEAVY))
        engines = subprocess.run([py, "-c", "import sys, sovereign_mcp.config; print(' '.join(m for m in sys.modules "
                                  "if m.startswith('sovereign_mcp.') and m.endswith(('manager', 'client'))))"],
                                 env=env, check=True, capture_output=True, text=True).stdout.split()
        bare = wall_ms([py, "-c", "pass"], env, args.runs)
        fastmcp = wall_ms([py, "-c", "import fastmcp"], env, args.runs)
        help_ms = wall_ms([py, "-m", "sovereign_mcp", "--help"], env, args.runs)
        gate_cold = wall_ms([py, "-m", "sovereign_mcp", "gate", str(small)], env, args.runs, before=empty_cache)
        wall_ms([py, "-m", "sovereign_mcp", "gate", str(small)], env, 1)  # writes the cached plan
        gate_small = wall_ms([py, "-m", "sovereign_mcp", "gate", str(small)], env, args.runs)
        print(f"python -c pass:                     {bare:8.1f} ms")
        print(f"python -c 'import fastmcp':         {fastmcp:8.1f} ms   (baseline)")
        print(f"sovereign-mcp --help:               {help_ms:8.1f} ms")
        ratio = gate_small / fastmcp
        print(f"sovereign-mcp gate (3 lines):       {gate_small:8.1f} ms   = {ratio:.2f}x import fastmcp")
        print(f"  first run (empty cache):          {gate_cold:8.1f} ms   = {gate_cold / fastmcp:.2f}x (not a target)")
        print(f"import sovereign_mcp.config loads:  heavy {heavy or 'none'}, engines {engines or 'none'}")
        checks = [("gate 3 lines <= 150 ms", gate_small <= 150), ("gate 3 lines <= 0.5x import fastmcp",
                  gate_small <= 0.5 * fastmcp), ("--help <= 150 ms", help_ms <= 150),
                  ("config imports no engine/httpx/numpy", not heavy and not engines)]
        proselint = shutil.which("proselint", path=str(Path(py).parent)) or shutil.which("proselint")
        if not args.no_proselint and proselint:
            runs = max(1, args.runs // 3)
            big_cold = wall_ms([py, "-m", "sovereign_mcp", "gate", str(big)], env, runs, before=empty_cache)
            wall_ms([py, "-m", "sovereign_mcp", "gate", str(big)], env, 1)
            gate_big = wall_ms([py, "-m", "sovereign_mcp", "gate", str(big)], env, runs)
            uncapped = home / "proselintrc.json"
            uncapped.write_text(json.dumps({"max_errors": 10**9}))  # report everything, like the gate
            prose = wall_ms([proselint, "check", "--config", str(uncapped), str(big)], env, runs)
            print(f"sovereign-mcp gate (1 MB):          {gate_big:8.1f} ms")
            print(f"  first run (empty cache):          {big_cold:8.1f} ms")
            print(f"proselint check, uncapped (1 MB):   {prose:8.1f} ms   (baseline) -> {gate_big / prose:.2f}x "
                  f"(first run {big_cold / prose:.2f}x)")
            checks.append(("gate 1 MB <= 0.15x proselint", gate_big <= 0.15 * prose))
        for name, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
        return 0 if all(ok for _, ok in checks) else 1
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
