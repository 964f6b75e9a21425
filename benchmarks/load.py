"""Load: ``search_blog`` at concurrency 32 for 60 s over MCP Streamable HTTP against the real server.

The real ``python -m sovereign_mcp serve`` runs as a subprocess on a free loopback port (default corpus:
the real blog ``../shared/corpora/jvns``, ~400 articles, else the shipped ``corpus/``), with the default
settings except ``SOVEREIGN_MCP_RATE_LIMIT__ENABLED=false`` (the default 60/minute per IP would refuse
almost every call of a load test from one address). Payments stay on (search_blog is free; the L402
guard still reads every ``/mcp`` request), the pipeline worker stays on (idle).

Phases, all against the same server process:

1. warm-up (``--warmup-seconds`` each, not reported): both loads below, so first-touch allocations
   (sessions, buffers, caches) happen before the "before" RSS is taken;
2. baseline "/api/search": the same queries as plain JSON ``POST /api/search`` (no MCP framing, no
   session), ``--concurrency`` concurrent requests for ``--baseline-seconds``; the difference to the
   next phase is what the MCP transport costs;
3. MCP ``search_blog``: ``--concurrency`` MCP clients, each its own session, each calling in a loop
   for ``--seconds``. ``--client fastmcp`` (default) uses ``fastmcp.Client`` (what agents use, with
   its schema validation of every result); ``--client raw`` sends the JSON-RPC by hand over one httpx
   pool (``initialize`` once per client, then ``tools/call``; SSE answers parsed), to show how much of
   the figure is client overhead. The load generator's CPU time and the server's are printed per phase:
   with few cores they compete, and a generator using more CPU than the server means the figure is
   bounded by the client, not the server.

Figures: calls, calls/s, p50/p99 latency (ms), errors (transport errors, HTTP status != 200, JSON-RPC
errors, ``isError`` results, results without a ``results`` list), server RSS (psutil) before the
baseline, after it and after the MCP phase, plus the peak sampled every second.

Targets (issue 7): zero errors in the MCP phase and the baseline; server RSS growth over both measured
phases < ``--max-rss-growth`` (10 %). Exit code 1 when a target fails, 2 when the server does not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from _common import free_port, pct

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JVNS = REPO.parent / "shared" / "corpora" / "jvns"
SHIPPED = REPO / "corpus"
MB = 1024 * 1024
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2025-06-18"  # the raw client speaks the session-based revision (initialize + mcp-session-id)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)






@dataclass
class Phase:
    """What one load phase measured; latencies in ms, CPU in s."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    generator_cpu: float = 0.0
    server_cpu: float = 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(message[:300])


class Server:
    """``python -m sovereign_mcp serve`` on a free loopback port, output in a log file."""

    def __init__(self, corpus: Path, work: Path, start_timeout: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "server.log"
        (work / "xdg-config").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_MCP_")}
        env.update({"XDG_CONFIG_HOME": str(work / "xdg-config"), "PYTHONUNBUFFERED": "1",
                    "SOVEREIGN_MCP_RATE_LIMIT__ENABLED": "false"})
        cmd = [sys.executable, "-m", "sovereign_mcp", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--corpus", str(corpus), "--data-dir", str(work / "data"), "--no-watch", "--log-level", "warning"]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"{self.url}/health", timeout=2)
                if health.status_code == 200:
                    self.health = health.json()
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not healthy after {start_timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / MB

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_queries(titles: list[str], n: int, seed: int) -> list[str]:
    """``n`` queries of 1-3 words of 4+ letters from random article titles (fixed seed), so they match."""
    rng = random.Random(seed)
    words_by_title = [ws for t in titles if (ws := re.findall(r"[A-Za-z]{4,}", t))]
    if not words_by_title:
        return ["sglang", "memory", "lightning"]
    out = []
    for _ in range(n):
        words = rng.choice(words_by_title)
        out.append(" ".join(rng.sample(words, min(len(words), rng.randint(1, 3)))).lower())
    return out


async def titles_of(url: str) -> list[str]:
    from fastmcp import Client

    async with Client(f"{url}/mcp", timeout=60) as client:
        [content] = await client.read_resource("blog://articles")
        return [a["title"] for a in json.loads(content.text)]


def _check_search(payload: Any) -> str | None:
    """None when ``payload`` is a search_blog result, else what is wrong with it."""
    if isinstance(payload, dict) and isinstance(payload.get("results"), list):
        return None
    return f"not a search result: {str(payload)[:200]}"


async def run_phase(phase: Phase, worker: Any, concurrency: int, seconds: float, queries: list[str],
                    server: Server, n: int) -> Phase:
    """Start ``concurrency`` copies of ``worker(i, deadline, phase, queries, n)`` and wait for them."""
    cpu0, server0, t0 = time.process_time(), server.cpu(), time.perf_counter()
    deadline = t0 + seconds
    await asyncio.gather(*(worker(i, deadline, phase, queries, n) for i in range(concurrency)))
    phase.seconds = time.perf_counter() - t0
    phase.generator_cpu = time.process_time() - cpu0
    phase.server_cpu = server.cpu() - server0
    return phase


def api_worker(url: str, http: httpx.AsyncClient) -> Any:
    async def work(i: int, deadline: float, phase: Phase, queries: list[str], n: int) -> None:
        k = i
        while time.perf_counter() < deadline:
            query = queries[k % len(queries)]
            k += 1
            t0 = time.perf_counter()
            try:
                response = await http.post(f"{url}/api/search", json={"query": query, "n": n})
            except httpx.HTTPError as exc:
                phase.error(f"{type(exc).__name__}: {exc}")
                continue
            phase.latencies.append(1000 * (time.perf_counter() - t0))
            if response.status_code != 200:
                phase.error(f"HTTP {response.status_code}: {response.text}")
            elif problem := _check_search(response.json()):
                phase.error(problem)
    return work


def fastmcp_worker(url: str) -> Any:
    from fastmcp import Client

    async def work(i: int, deadline: float, phase: Phase, queries: list[str], n: int) -> None:
        k = i
        try:
            async with Client(f"{url}/mcp", timeout=60) as client:
                while time.perf_counter() < deadline:
                    query = queries[k % len(queries)]
                    k += 1
                    t0 = time.perf_counter()
                    try:
                        result = await client.call_tool("search_blog", {"query": query, "n": n}, raise_on_error=False)
                    except Exception as exc:  # every failure is counted and shown
                        phase.error(f"{type(exc).__name__}: {exc}")
                        continue
                    phase.latencies.append(1000 * (time.perf_counter() - t0))
                    if result.is_error:
                        phase.error(f"isError: {result.content}")
                    elif problem := _check_search(result.structured_content):
                        phase.error(problem)
        except Exception as exc:  # a session failing to open or close too
            phase.error(f"session: {type(exc).__name__}: {exc}")
    return work


def _sse_message(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a Streamable HTTP answer (``application/json`` or one SSE event)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


def raw_worker(url: str, http: httpx.AsyncClient) -> Any:
    async def work(i: int, deadline: float, phase: Phase, queries: list[str], n: int) -> None:
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                           "clientInfo": {"name": "load.py", "version": "1"}}}
        try:
            opened = await http.post(f"{url}/mcp", headers=MCP_HEADERS, json=init)
            headers = {**MCP_HEADERS, "mcp-protocol-version": PROTOCOL}
            if sid := opened.headers.get("mcp-session-id"):
                headers["mcp-session-id"] = sid
            await http.post(f"{url}/mcp", headers=headers,
                            json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        except httpx.HTTPError as exc:
            phase.error(f"session: {type(exc).__name__}: {exc}")
            return
        k = i
        while time.perf_counter() < deadline:
            k += 1
            call = {"jsonrpc": "2.0", "id": k, "method": "tools/call",
                    "params": {"name": "search_blog", "arguments": {"query": queries[k % len(queries)], "n": n}}}
            t0 = time.perf_counter()
            try:
                response = await http.post(f"{url}/mcp", headers=headers, json=call)
                message = _sse_message(response)
            except (httpx.HTTPError, ValueError, IndexError) as exc:
                phase.error(f"{type(exc).__name__}: {exc}")
                continue
            phase.latencies.append(1000 * (time.perf_counter() - t0))
            result = message.get("result") or {}
            if response.status_code != 200 or "error" in message or result.get("isError"):
                phase.error(f"HTTP {response.status_code}: {json.dumps(message)}")
            elif problem := _check_search(result.get("structuredContent")):
                phase.error(problem)
        if sid:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"{url}/mcp", headers=headers)
    return work


async def run_all(server: Server, args: argparse.Namespace) -> tuple[list[Phase], dict[str, float]]:
    queries = make_queries(await titles_of(server.url), 2000, args.seed)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        mcp = fastmcp_worker(server.url) if args.client == "fastmcp" else raw_worker(server.url, http)
        api = api_worker(server.url, http)
        if args.warmup_seconds > 0:
            log(f"warm-up: {args.warmup_seconds:g} s of each load")
            for worker in (api, mcp):
                await run_phase(Phase("warm-up"), worker, args.concurrency, args.warmup_seconds, queries, server,
                                args.n)
        rss = {"before": server.rss_mb()}
        peak = rss["before"]

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, server.rss_mb())
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        try:
            log(f"baseline: POST /api/search, concurrency {args.concurrency}, {args.baseline_seconds:g} s")
            base = await run_phase(Phase("baseline /api/search"), api, args.concurrency, args.baseline_seconds,
                                   queries, server, args.n)
            rss["after baseline"] = server.rss_mb()
            log(f"MCP search_blog ({args.client} clients), concurrency {args.concurrency}, {args.seconds:g} s")
            mcp_phase = await run_phase(Phase(f"MCP search_blog ({args.client})"), mcp, args.concurrency,
                                        args.seconds, queries, server, args.n)
            rss["after MCP"] = server.rss_mb()
        finally:
            sampler.cancel()
        rss["peak"] = max(peak, rss["after MCP"])
    return [base, mcp_phase], rss


def report(phases: list[Phase], rss: dict[str, float], args: argparse.Namespace) -> bool:
    """Print the figures and the PASS/FAIL lines; True when every target passed."""
    print(f"\n{'phase':32} {'calls':>8} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'gen CPU s':>10} {'srv CPU s':>10}")
    for p in phases:
        rate = len(p.latencies) / p.seconds if p.seconds else float("nan")
        print(f"{p.name:32} {len(p.latencies):>8} {rate:>9.1f} {pct(p.latencies, 50):>8.1f} "
              f"{pct(p.latencies, 99):>8.1f} {p.errors:>7} {p.generator_cpu:>10.1f} {p.server_cpu:>10.1f}")
    base, mcp = phases
    if base.latencies and mcp.latencies:
        base_rate, mcp_rate = len(base.latencies) / base.seconds, len(mcp.latencies) / mcp.seconds
        print(f"\nMCP transport cost vs the /api/search baseline: throughput x{mcp_rate / base_rate:.2f}, "
              f"p50 {pct(mcp.latencies, 50) - pct(base.latencies, 50):+.1f} ms; server CPU per call "
              f"{1000 * base.server_cpu / len(base.latencies):.2f} ms (/api) vs "
              f"{1000 * mcp.server_cpu / len(mcp.latencies):.2f} ms (MCP)")
    for p in phases:
        if p.generator_cpu > p.server_cpu:
            print(f"note: the load generator used more CPU than the server in '{p.name}' "
                  f"({p.generator_cpu:.1f} s vs {p.server_cpu:.1f} s on {os.cpu_count()} CPUs): the client side is "
                  "a large share of that figure")
    print("server RSS MB: " + ", ".join(f"{k} {v:.1f}" for k, v in rss.items()))
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    print(f"host load average (1 min) at the end: {load:.1f} on {cpus} CPUs"
          + (" (above the CPU count: other processes competed with this run, figures are lower bounds)"
             if load > cpus else ""))
    for p in phases:
        for message in p.first_errors:
            print(f"  error in {p.name}: {message}")

    growth = 100 * (rss["after MCP"] / rss["before"] - 1)
    checks = [
        (f"zero errors in the MCP phase ({len(mcp.latencies)} calls)", mcp.errors == 0 and bool(mcp.latencies),
         f"{mcp.errors} errors"),
        (f"zero errors in the baseline ({len(base.latencies)} calls)", base.errors == 0 and bool(base.latencies),
         f"{base.errors} errors"),
        (f"server RSS growth < {args.max_rss_growth:g} %", growth < args.max_rss_growth,
         f"{rss['before']:.1f} MB -> {rss['after MCP']:.1f} MB ({growth:+.1f} %)"),
    ]
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return all(ok for _, ok, _ in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Load-test the real sovereign-mcp server on loopback: search_blog over MCP Streamable HTTP "
                    "at a fixed concurrency, against the same load on POST /api/search (named baseline). Prints "
                    "calls/s, p50/p99, errors and server RSS; PASS/FAIL per target; exit 1 if one fails.",
        epilog="The server runs with SOVEREIGN_MCP_RATE_LIMIT__ENABLED=false (else the 60/minute per-IP limit "
               "refuses the load). Default run: about 90 s.")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients / requests (default 32)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the MCP phase, s (default 60)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0,
                        help="length of the /api/search baseline phase, s (default 20)")
    parser.add_argument("--warmup-seconds", type=float, default=5.0,
                        help="warm-up per load before the 'before' RSS, s (default 5; 0 = none)")
    parser.add_argument("--client", choices=["fastmcp", "raw"], default="fastmcp",
                        help="fastmcp.Client sessions (default) or hand-written JSON-RPC over httpx")
    parser.add_argument("--corpus", type=Path, default=None,
                        help=f"Markdown folder to serve (default {DEFAULT_JVNS} if present, else {SHIPPED})")
    parser.add_argument("-n", type=int, default=5, help="results per search (default 5)")
    parser.add_argument("--seed", type=int, default=1234, help="seed for the queries (default 1234)")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="RSS growth target, %% (default 10)")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="wait for /health, s (default 180)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the data dir and server.log (default: a temp dir, removed at the end)")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.seconds <= 0 or args.baseline_seconds <= 0:
        parser.error("--concurrency, --seconds and --baseline-seconds must be positive")
    corpus = args.corpus or (DEFAULT_JVNS if DEFAULT_JVNS.is_dir() else SHIPPED)
    if not corpus.is_dir():
        parser.error(f"corpus folder not found: {corpus}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sovereign-load-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        log(f"starting the server on {corpus}")
        try:
            server = Server(corpus.resolve(), work, args.start_timeout)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            h = server.health
            print(f"server: {server.url}, corpus {corpus} ({h.get('articles')} articles, {h.get('passages')} "
                  f"passages), SOVEREIGN_MCP_RATE_LIMIT__ENABLED=false; concurrency {args.concurrency}; "
                  f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs shared by server and load generator")
            phases, rss = asyncio.run(run_all(server, args))
            if server.proc.poll() is not None:
                print(f"FAIL  server died during the run:\n{server.tail()}")
                return 1
        finally:
            server.stop()
        return 0 if report(phases, rss, args) else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
