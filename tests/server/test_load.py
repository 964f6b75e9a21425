"""A bounded run of ``benchmarks/load.py`` in the test suite: 32 concurrent MCP clients calling search_blog
on the real server (and the /api/search baseline) must see zero errors, and the server's RSS must not grow
by 10% or more. Latency and throughput are printed, not asserted (speed belongs to the benchmark); the full
60 s figures come from ``python benchmarks/load.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def test_bounded_load_has_no_errors_and_bounded_rss() -> None:
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "load.py"), "--concurrency", "32",
                          "--seconds", "10", "--baseline-seconds", "3", "--warmup-seconds", "2"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    print(run.stdout)
    verdicts = [line for line in run.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert len(verdicts) == 3 and all(v.startswith("PASS") for v in verdicts), verdicts
    mcp_row = next(line for line in run.stdout.splitlines() if line.startswith("MCP search_blog"))
    assert int(mcp_row.split()[3]) > 0  # calls were made (column: calls)
