"""Quality-gate speed on a 1 MB Markdown document, with proselint as the named baseline.

The document is built from the shipped sample articles (front matter, headings, code fences, links)
plus podcast-style turns with known violations, repeated to ``--size`` bytes. Figures:

* ``sovereign-mcp gate``: the full shipped KB (every rule of the kind's scopes, facts from the
  shipped KB and corpus), median of ``--runs`` runs, for ``article`` and ``podcast``;
* ``proselint``: all its default checks on the same text (``LintFile.lint``), median of
  ``--baseline-runs`` runs (it is slow);
* memory: RSS and traced Python allocations before and after ``--repeat`` consecutive gate runs
  (after a 10-run warm-up).

Target (issue): full gate <= 150 ms on 1 MB; memory flat over 100 runs. Exit 1 when missed.
Usage: ``python benchmarks/gate_speed.py [--size 1000000] [--runs 7] [--repeat 100]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

from sovereign_mcp.config import load_settings
from sovereign_mcp.corpus.loader import load_corpus
from sovereign_mcp.gate.service import GateService

REPO = Path(__file__).resolve().parents[1]
TURNS = """
HEXABELLA: So the Spark has one pool of memory for everything?
CIPHERFOX: Right, 128 GB shared by CPU and GPU. Here's the thing: only one service fits at a time.
CIPHERFOX: SGLang takes about 94 GB, Voxtral about 111 GB, and ComfyUI around 14 GB.
CIPHERFOX: *sighs* And after a stop you wait sixty seconds [pause] before the next one starts.
HEXABELLA: Wait, really? Why the WAIT?
"""


def build_document(size: int) -> str:
    """About ``size`` bytes of Markdown: sample articles and script turns, repeated."""
    parts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "corpus").glob("*.md"))]
    unit = "\n\n".join(parts) + "\n" + TURNS
    text = unit * (size // len(unit.encode()) + 1)
    return text.encode()[:size].decode("utf-8", "ignore")


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="document size, bytes (default 1 MB)")
    parser.add_argument("--runs", type=int, default=7, help="timed gate runs per kind (median reported)")
    parser.add_argument("--baseline-runs", type=int, default=3, help="timed proselint runs")
    parser.add_argument("--repeat", type=int, default=100, help="gate runs for the memory check")
    parser.add_argument("--no-baseline", action="store_true", help="skip proselint")
    args = parser.parse_args(argv)

    settings = load_settings(None)
    corpus = load_corpus(settings.corpus.paths)
    gates = GateService(settings, lambda: corpus.articles)
    gate = gates.gate()
    text = build_document(args.size)
    print(f"document: {len(text.encode()):,} bytes, {text.count(chr(10)):,} lines; KB: {len(gates.kb.entries)} "
          f"entries ({len(gate.rules_for('article'))} article rules, {len(gate.rules_for('podcast'))} podcast rules)")

    rows = []
    for kind in ("article", "podcast"):
        report = gate.check(text, kind)
        times = timed(lambda kind=kind: gate.check(text, kind), args.runs)
        rows.append((f"sovereign-mcp gate ({kind})", statistics.median(times), min(times), len(report.findings)))
    if not args.no_baseline:
        from proselint.checks import __register__
        from proselint.config import DEFAULT
        from proselint.registry import CheckRegistry
        from proselint.tools import LintFile

        CheckRegistry().register_many(__register__)  # as proselint's own command line does
        config = {**DEFAULT, "max_errors": 10**9}  # report everything, like the gate
        found = len(LintFile("bench.md", text).lint(config))
        times = timed(lambda: LintFile("bench.md", text).lint(config), args.baseline_runs)
        rows.append(("proselint (baseline)", statistics.median(times), min(times), found))

    print(f"{'system':30} {'median ms':>10} {'min ms':>9} {'findings':>9}")
    for name, median, fastest, count in rows:
        print(f"{name:30} {median:10.1f} {fastest:9.1f} {count:9d}")
    if not args.no_baseline:
        print(f"speed-up vs proselint (article): {rows[-1][1] / rows[0][1]:.1f}x")

    for _ in range(5):  # warm-up: the allocator settles on its working set first
        gate.check(text, "article")
        gate.check(text, "podcast")
    gc.collect()
    rss_before = rss_kb()
    for i in range(args.repeat):
        gate.check(text, "podcast" if i % 2 else "article")
    gc.collect()
    rss_after = rss_kb()
    tracemalloc.start()  # separately: tracing itself costs memory, so RSS is measured without it
    traced_before = tracemalloc.get_traced_memory()[0]
    for i in range(10):
        gate.check(text, "podcast" if i % 2 else "article")
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    growth = (rss_after - rss_before) / max(rss_before, 1)
    print(f"memory over {args.repeat} runs: RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MB "
          f"({growth:+.1%}); traced Python heap over 10 more runs {traced_before / 1e6:.2f} -> "
          f"{traced_after / 1e6:.2f} MB")

    speed = {kind: rows[i][1] for i, kind in enumerate(("article", "podcast"))}
    memory_ok = growth <= 0.05 and traced_after - traced_before < 1_000_000
    for kind, median in speed.items():
        print(f"target full gate <= 150 ms on 1 MB ({kind}): {'PASS' if median <= 150 else 'FAIL'} ({median:.0f} ms)")
    speed_ok = all(median <= 150 for median in speed.values())
    print(f"target memory flat across {args.repeat} runs (RSS +<=5%, heap +<1 MB): {'PASS' if memory_ok else 'FAIL'}")
    return 0 if speed_ok and memory_ok else 1


if __name__ == "__main__":
    sys.exit(main())
