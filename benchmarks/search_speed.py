"""Search speed: index build and cached start time, serving RSS, latency in-process and over MCP HTTP.

Corpora (all measured in the same run, with the default settings):

* ``A``: the real blog ``--jvns`` (default ``../shared/corpora/jvns``, ~400 articles).
* ``A'``: ~1,000 articles: the jvns files plus 1.5 more copies of them in a temp folder, copies
  renamed ``<name>-copyN`` with their ``url:`` / ``slug:`` / ``permalink:`` lines dropped so every
  slug stays unique.
* ``B``: a synthetic blog (``benchmarks/_synthetic.py``, fixed seed): ``--articles`` (20,000;
  5,000 with ``--quick``) articles of ~10 one-paragraph sections each, i.e. ~10 passages per article.

Per corpus, each step in a fresh Python subprocess (so imports count and one step's memory does not
leak into the next; subprocesses get no ``SOVEREIGN_MCP_*`` variables and an empty user config dir):

* build: ``open_index(settings, use_cache=False)`` in a fresh data dir (this also writes the cache);
* cached start: a new process on the same data dir, time from just before the process is spawned
  to the index being ready, and separately just ``open_index()`` (from the cache; median of
  ``--start-runs`` runs; the cache file is warm in the OS page cache, as on a service restart);
* serving: in the first cached-start process, ``index.search(q, n=5)`` over the queries (after 10
  warm-up queries), then the same through ``api.search_blog`` (adds the pydantic output models), then
  ``psutil`` RSS and ``getrusage`` peak RSS of that process;
* baseline "MVP (refit per query)": the operator's first ranking, scikit-learn ``TfidfVectorizer``
  fitted on every query over title + description + tags + the first 500 body characters of each
  article, cosine similarity, top 5 (all queries on A and A'; ``--mvp-big-queries`` on B, skipped with
  ``--quick``);
* MCP over HTTP: the real ``sovereign-mcp serve`` as a subprocess (loading the cached index), then
  ``fastmcp.Client`` calls ``search_blog`` sequentially for ``--mcp-queries`` queries (after 5 warm-up
  calls); A' always, B unless ``--quick``; the server gets SIGTERM at the end, always.

Queries (fixed ``--seed``): pick a random passage of the loaded corpus, take 2-5 distinct words of
3+ letters from it (English stop words excluded), so every query has matches, like a real one.

* baseline "trivial": FastMCP's one-line tool and a one-line ``/health`` route
  (``benchmarks/_trivial_server.py``), called the same way in the same run, so transport cost is visible.
* ``B+dense``: corpus B again with ``search.embeddings = "wordllama"`` (skipped with ``--no-dense``).

Targets (PASS/FAIL; SKIP when the run is too small to measure one): in-process p50 <= 2 ms at
200k passages (B) and <= 3 ms with the dense re-rank (B+dense), cached start (``open_index`` from
cache) <= 1 s for 1k articles (A'), serving RSS <= 300 MB at 20k articles (B, and B+dense with its
vectors), one client's sequential ``search_blog`` over MCP/HTTP p50 <= 5 ms and ``GET /health`` on a
keep-alive connection p50 <= 2 ms (A'). Exit code 1 when a target fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import free_port, pct

HERE = Path(__file__).resolve().parent
DEFAULT_JVNS = HERE.parent.parent / "shared" / "corpora" / "jvns"
MB = 1024 * 1024

TARGET_P50_MS = 2.0
TARGET_DENSE_P50_MS = 3.0
TARGET_MCP_P50_MS = 5.0
TARGET_HEALTH_P50_MS = 2.0
TARGET_P50_PASSAGES = 200_000
TARGET_START_S = 1.0
TARGET_START_ARTICLES = 1_000
TARGET_RSS_MB = 300.0
TARGET_RSS_ARTICLES = 20_000

# ---------------------------------------------------------------------------------------------
# Worker side: runs in a fresh subprocess (`search_speed.py _worker MODE JSON`), prints one JSON line.
# Keep the module-level imports above light (stdlib only): they count in the cached start time.
# ---------------------------------------------------------------------------------------------


def _settings(job: dict[str, Any]) -> Any:
    from sovereign_mcp.config import load_settings

    return load_settings(None, data_dir=Path(job["data_dir"]), search={"embeddings": job["embeddings"]},
                         corpus={"paths": [Path(job["corpus"])], "watch": False})


def _sample_queries(index: Any, n: int, seed: int) -> list[str]:
    """``n`` queries of 2-5 distinct words, each taken from one random passage (fixed seed)."""
    import random
    import re

    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    rng = random.Random(seed)
    strip = re.compile(r"\]\([^)]*\)|https?://\S+|`[^`]*`")
    word = re.compile(r"[a-z]{3,}")
    queries: list[str] = []
    passages = index.passages
    attempts = 0
    while len(queries) < n and attempts < 100 * n:
        attempts += 1
        text = strip.sub(" ", passages[rng.randrange(len(passages))].text.lower())
        words = list(dict.fromkeys(w for w in word.findall(text) if w not in ENGLISH_STOP_WORDS))
        if len(words) < 2:
            continue
        queries.append(" ".join(rng.sample(words, min(len(words), rng.randint(2, 5)))))
    return queries


def _index_files_bytes(data_dir: str) -> int:
    return sum(p.stat().st_size for p in (Path(data_dir) / "index").glob("*.pkl"))


def _memory() -> dict[str, float]:
    import resource

    import psutil

    return {"rss_mb": psutil.Process().memory_info().rss / MB,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: KiB


def worker_build(job: dict[str, Any]) -> dict[str, Any]:
    """Cold build in a fresh data dir; writes the queries and the MVP documents for the parent."""
    from sovereign_mcp.search.store import open_index

    settings = _settings(job)
    started = time.perf_counter()
    index, from_cache = open_index(settings, use_cache=False)
    build_s = time.perf_counter() - started
    memory = _memory()
    queries = _sample_queries(index, job["n_queries"], job["seed"])
    Path(job["queries_file"]).write_text(json.dumps(queries))
    docs = [f"{a.title} {a.description} {' '.join(a.tags)} {a.body[:500]}" for a in index.articles]
    Path(job["mvp_docs_file"]).write_text(json.dumps(docs))
    return {"from_cache": from_cache, "build_s": build_s, "articles": len(index.articles),
            "passages": len(index.passages), "warnings": len(index.corpus.warnings),
            "cache_mb": _index_files_bytes(job["data_dir"]) / MB,
            "build_maxrss_mb": memory["maxrss_mb"], "build_rss_mb": memory["rss_mb"]}


def _latencies_ms(fn: Any, queries: list[str], warmup: int = 10) -> list[float]:
    for q in queries[:warmup]:
        fn(q)
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def worker_serve(job: dict[str, Any]) -> dict[str, Any]:
    """Cached start (time since the parent spawned us, and open_index alone), then queries and RSS."""
    from sovereign_mcp.search.store import open_index

    settings = _settings(job)
    started = time.perf_counter()
    index, from_cache = open_index(settings)
    open_s = time.perf_counter() - started
    ready_s = time.time() - job["spawned_at"]
    result: dict[str, Any] = {"from_cache": from_cache, "open_s": open_s, "ready_s": ready_s,
                              "passages": len(index.passages)}
    if job.get("run_queries"):
        from sovereign_mcp.search import api

        queries = json.loads(Path(job["queries_file"]).read_text())
        result["search_ms"] = _latencies_ms(lambda q: index.search(q, n=5), queries)
        result["api_ms"] = _latencies_ms(lambda q: api.search_blog(index, q, n=5), queries)
        result["empty"] = sum(1 for q in queries if not index.search(q, n=5))
        result.update(_memory())
    return result


def worker_main(mode: str, raw: str) -> int:
    job = json.loads(raw)
    result = {"build": worker_build, "serve": worker_serve}[mode](job)
    print("\nRESULT " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side.
# ---------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Env:
    """Isolated environment for subprocesses: no SOVEREIGN_MCP_* variables, empty user config dir."""

    def __init__(self, root: Path) -> None:
        self.cwd = root
        (root / "xdg-config").mkdir(exist_ok=True)
        self.vars = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_MCP_")}
        self.vars["XDG_CONFIG_HOME"] = str(root / "xdg-config")


def run_worker(env: Env, mode: str, job: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    job = {**job, "spawned_at": time.time()}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_worker", mode, json.dumps(job)],
                          capture_output=True, text=True, cwd=env.cwd, env=env.vars, timeout=timeout,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {mode} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])




def make_copies(src: Path, dest: Path, total_files: int) -> int:
    """``src``'s Markdown files plus renamed copies until ``total_files``; returns the file count."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in (".md", ".markdown")
                   and not any(part.startswith(".") for part in p.relative_to(src).parts))
    count = 0
    copy = 0
    while count < total_files:
        for path in files:
            if count >= total_files:
                break
            rel = path.relative_to(src)
            if copy == 0:
                target, text = dest / rel, path.read_text(encoding="utf-8")
            else:
                stem = rel.parent.name if rel.stem in ("index", "_index") and rel.parent.name else rel.stem
                target = dest / rel.parent / f"{stem}-copy{copy}{rel.suffix}"
                text = _drop_url_lines(path.read_text(encoding="utf-8"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            count += 1
        copy += 1
    return count


def _drop_url_lines(text: str) -> str:
    """Remove ``url:`` / ``slug:`` / ``permalink:`` lines from YAML front matter (slug from file name)."""
    if not text.startswith("---"):
        return text
    end = text.find("\n---", 3)
    if end < 0:
        return text
    head = [ln for ln in text[:end].split("\n")
            if not ln.lstrip().lower().startswith(("url:", "slug:", "permalink:"))]
    return "\n".join(head) + text[end:]


def mvp_latencies(docs: list[str], queries: list[str]) -> list[float]:
    """Per-query latency (ms) of the MVP ranking: TfidfVectorizer refit on every query, top 5."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    def rank(query: str) -> list[int]:
        vectorizer = TfidfVectorizer(stop_words="english")
        matrix = vectorizer.fit_transform(docs)
        scores = cosine_similarity(vectorizer.transform([query]), matrix).ravel()
        top = np.argsort(-scores, kind="stable")[:5]
        return [int(i) for i in top if scores[i] > 0]

    return _latencies_ms(rank, queries, warmup=1)




def _proc_peak_rss_mb(pid: int) -> float:
    """VmHWM (peak RSS) of another process from /proc (Linux), NaN elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def mcp_http(env: Env, corpus: Path, data_dir: Path, queries: list[str], start_timeout: float,
             embeddings: str = "off") -> dict[str, Any]:
    """Start ``sovereign-mcp serve``, time ``search_blog`` over MCP Streamable HTTP, stop the server."""
    import psutil

    port = free_port()
    log_path = data_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "sovereign_mcp", "serve", "--corpus", str(corpus), "--port", str(port),
           "--data-dir", str(data_dir), "--no-watch", "--log-level", "warning"]
    spawned = time.perf_counter()
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=env.cwd, env={**env.vars, "SOVEREIGN_MCP_RATE_LIMIT__ENABLED": "false",
                                                       "SOVEREIGN_MCP_SEARCH__EMBEDDINGS": embeddings},
                                stdout=log_file, stderr=subprocess.STDOUT)  # timing, not the 60/minute limit
    try:
        deadline = spawned + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            url = f"http://127.0.0.1:{port}/health"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    health = json.loads(resp.read())
                    break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"server not healthy after {start_timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        health_s = time.perf_counter() - spawned
        timings = time_http(port, "search_blog", queries)
        server = psutil.Process(proc.pid)
        return {"health_s": health_s, **timings, "rss_mb": server.memory_info().rss / MB,
                "peak_mb": _proc_peak_rss_mb(proc.pid), "from_cache": health.get("index_from_cache"),
                "passages": health.get("passages")}
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def time_http(port: int, tool: str, queries: list[str]) -> dict[str, list[float]]:
    """One client, sequential: ``tool`` over MCP Streamable HTTP (``fastmcp.Client``, 5 warm-up calls), then
    ``GET /health`` on one keep-alive connection (httpx, 5 warm-up requests); milliseconds per call."""
    import asyncio

    import httpx
    from fastmcp import Client

    async def calls() -> list[float]:
        out: list[float] = []
        async with Client(f"http://127.0.0.1:{port}/mcp", cache=False, timeout=60) as client:
            for q in queries[:5]:
                await client.call_tool(tool, {"query": q})
            for q in queries:
                t0 = time.perf_counter()
                result = await client.call_tool(tool, {"query": q})
                out.append(1000 * (time.perf_counter() - t0))
                if result.is_error:
                    raise RuntimeError(f"{tool} failed for {q!r}: {result.content}")
        return out

    mcp_ms = asyncio.run(calls())
    health_ms = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for i in range(len(queries) + 5):
            t0 = time.perf_counter()
            client.get("/health").raise_for_status()
            if i >= 5:
                health_ms.append(1000 * (time.perf_counter() - t0))
    return {"ms": mcp_ms, "health_ms": health_ms}


def trivial_http(env: Env, queries: list[str]) -> dict[str, Any]:
    """The baseline: FastMCP's trivial tool and /health (benchmarks/_trivial_server.py), timed like search_blog."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "_trivial_server.py"), str(port)], cwd=env.cwd,
                            env=env.vars, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.perf_counter() + 60
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("the trivial FastMCP server did not start")
            time.sleep(0.05)
        return time_http(port, "ping", queries)
    finally:
        stop(proc)


def measure_corpus(env: Env, key: str, corpus: Path, work: Path, args: argparse.Namespace, *,
                   mvp_queries: int, mcp: bool, embeddings: str = "off") -> dict[str, Any]:
    data_dir = work / f"data-{key}"
    shutil.rmtree(data_dir, ignore_errors=True)
    job = {"corpus": str(corpus), "data_dir": str(data_dir), "seed": args.seed, "n_queries": args.queries,
           "embeddings": embeddings,
           "queries_file": str(work / f"queries-{key}.json"), "mvp_docs_file": str(work / f"mvp-{key}.json")}
    row: dict[str, Any] = {}
    log(f"{key}: cold build (open_index use_cache=False, fresh data dir)")
    row["build"] = run_worker(env, "build", job)
    log(f"{key}: {row['build']['articles']} articles, {row['build']['passages']} passages, "
        f"built in {row['build']['build_s']:.2f} s")
    if key == "B" and row["build"]["passages"] < 9 * row["build"]["articles"]:
        log("B: WARNING fewer than ~10 passages per synthetic article; has the passage splitting changed?")
    starts = []
    for i in range(max(1, args.start_runs)):
        log(f"{key}: cached start {i + 1}/{args.start_runs}" + (" + in-process queries" if i == 0 else ""))
        starts.append(run_worker(env, "serve", {**job, "run_queries": i == 0}))
    if not all(s["from_cache"] for s in starts):
        raise RuntimeError(f"{key}: the second open_index did not load from the cache")
    row["serve"] = starts[0]
    row["ready_s"] = statistics.median(s["ready_s"] for s in starts)
    row["open_s"] = statistics.median(s["open_s"] for s in starts)
    queries = json.loads(Path(job["queries_file"]).read_text())
    row["n_queries"] = len(queries)
    if mvp_queries > 0:
        docs = json.loads(Path(job["mvp_docs_file"]).read_text())
        log(f"{key}: MVP (refit per query) on {min(mvp_queries, len(queries))} queries")
        row["mvp_ms"] = mvp_latencies(docs, queries[:mvp_queries])
    if mcp:
        n = min(args.mcp_queries, len(queries))
        log(f"{key}: MCP over HTTP, {n} search_blog calls")
        row["mcp"] = mcp_http(env, corpus, data_dir, queries[:n],
                              start_timeout=60 + row["ready_s"] * 10, embeddings=embeddings)
        log(f"{key}: baseline, FastMCP's trivial tool over HTTP, {n} calls")
        row["trivial"] = trivial_http(env, queries[:n])
    return row


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN -> "-"


def print_table(rows: dict[str, dict[str, Any]], labels: dict[str, str]) -> None:
    keys = list(rows)

    def get(path: str, fn: Any = None) -> list[str]:
        out = []
        for k in keys:
            node: Any = rows[k]
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            out.append("-" if node is None else fn(node) if fn else str(node))
        return out

    def lat(path: str) -> list[str]:
        return get(path, lambda v: f"{fmt(pct(v, 50))} / {fmt(pct(v, 95))}")

    def speedup(k: str) -> str:
        r = rows[k]
        if "mvp_ms" not in r:
            return "-"
        return f"{pct(r['mvp_ms'], 50) / pct(r['serve']['search_ms'], 50):,.0f}x"

    table = [
        ("articles / passages", get("build", lambda b: f"{b['articles']:,} / {b['passages']:,}")),
        ("queries (no result)", [f"{rows[k]['n_queries']} ({rows[k]['serve'].get('empty', '-')})" for k in keys]),
        ("cold build: open_index(use_cache=False) s", get("build.build_s", fmt)),
        ("  build process peak RSS MB", get("build.build_maxrss_mb", lambda v: fmt(v, 0))),
        ("  index cache file MB", get("build.cache_mb", lambda v: fmt(v, 1))),
        ("cached start: spawn -> index ready s", get("ready_s", fmt)),
        ("cached start: open_index() only s", get("open_s", fmt)),
        ("serving RSS MB (psutil rss)", get("serve.rss_mb", lambda v: fmt(v, 0))),
        ("serving peak RSS MB (ru_maxrss)", get("serve.maxrss_mb", lambda v: fmt(v, 0))),
        ("sovereign-mcp index.search p50 / p95 ms", lat("serve.search_ms")),
        ("sovereign-mcp api.search_blog p50 / p95 ms", lat("serve.api_ms")),
        ("MVP (refit per query) p50 / p95 ms", lat("mvp_ms")),
        ("  MVP queries", get("mvp_ms", lambda v: str(len(v)))),
        ("  speed-up p50 (MVP / index.search)", [speedup(k) for k in keys]),
        ("MCP HTTP search_blog p50 / p95 ms", lat("mcp.ms")),
        ("  MCP calls", get("mcp.ms", lambda v: str(len(v)))),
        ("  baseline: trivial FastMCP tool p50 / p95 ms", lat("trivial.ms")),
        ("GET /health keep-alive p50 / p95 ms", lat("mcp.health_ms")),
        ("  baseline: trivial FastMCP /health p50 / p95 ms", lat("trivial.health_ms")),
        ("  server spawn -> /health 200 s", get("mcp.health_s", fmt)),
        ("  server RSS / peak MB after calls", get("mcp", lambda m: f"{fmt(m['rss_mb'], 0)} / {fmt(m['peak_mb'], 0)}")),
    ]
    width = max(len(name) for name, _ in table)
    cols = [max(len(labels[k]), *(len(vals[i]) for _, vals in table)) for i, k in enumerate(keys)]
    print()
    print(f"{'':{width}}  " + "  ".join(f"{labels[k]:>{c}}" for k, c in zip(keys, cols, strict=True)))
    for name, vals in table:
        print(f"{name:{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(vals, cols, strict=True)))
    print()


def verdicts(rows: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(target, PASS|FAIL|SKIP, detail)`` per target; SKIP when the corpus is too small to judge (--quick)."""
    out = []

    def judge(target: str, ok: bool, big_enough: bool, detail: str) -> None:
        verdict = "PASS" if ok else "FAIL"
        if not big_enough:
            detail += f"; would be {verdict}, but the corpus is too small (--quick)"
            verdict = "SKIP"
        out.append((target, verdict, detail))

    for key, limit, label in (("B", TARGET_P50_MS, "lexical"), ("B+dense", TARGET_DENSE_P50_MS, "dense re-rank")):
        row = rows.get(key)
        if not row:
            continue
        p50, passages = pct(row["serve"]["search_ms"], 50), row["build"]["passages"]
        judge(f"in-process p50 <= {limit:g} ms at {TARGET_P50_PASSAGES // 1000}k passages ({label})", p50 <= limit,
              passages >= 0.95 * TARGET_P50_PASSAGES, f"p50 {p50:.2f} ms at {passages:,} passages ({key})")
        rss, articles = row["serve"]["rss_mb"], row["build"]["articles"]
        extra = f"; real MCP server process {row['mcp']['rss_mb']:.0f} MB" if "mcp" in row else ""
        judge(f"serving RSS <= {TARGET_RSS_MB:g} MB at 20k articles ({label})", rss <= TARGET_RSS_MB,
              articles >= TARGET_RSS_ARTICLES,
              f"RSS {rss:.0f} MB (peak {row['serve']['maxrss_mb']:.0f} MB) at {articles:,} articles ({key}){extra}")
    a1 = rows.get("A'")
    if a1:
        articles = a1["build"]["articles"]
        judge(f"cached start (open_index from cache) <= {TARGET_START_S:g} s for 1k articles",
              a1["open_s"] <= TARGET_START_S, articles >= 0.95 * TARGET_START_ARTICLES,
              f"open_index {a1['open_s']:.2f} s, spawn -> ready {a1['ready_s']:.2f} s, {articles:,} articles (A')")
        if "mcp" in a1:
            for name, path, limit, base in (("MCP HTTP search_blog", "ms", TARGET_MCP_P50_MS, "trivial tool"),
                                            ("GET /health keep-alive", "health_ms", TARGET_HEALTH_P50_MS,
                                             "trivial /health")):
                p50, baseline = pct(a1["mcp"][path], 50), pct(a1["trivial"][path], 50)
                judge(f"{name} p50 <= {limit:g} ms, one client", p50 <= limit, True,
                      f"p50 {p50:.2f} ms (A'); baseline {base} {baseline:.2f} ms, same run")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark sovereign-mcp search speed: index build and cached start time, serving RSS, "
                    "latency in-process and over MCP HTTP, against the MVP ranking (TfidfVectorizer refit per "
                    "query). Prints a table and PASS/FAIL per target; exit 1 if a target fails.",
        epilog="Corpora: A = the real jvns blog, A' = jvns copied to ~1,000 articles, B = synthetic. "
               "About 5-7 minutes on 2 cores; --quick about 2.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="5,000 synthetic articles instead of 20,000, no MVP and no MCP run on B")
    parser.add_argument("--articles", type=int, default=None,
                        help="synthetic articles in corpus B (default 20000, or 5000 with --quick)")
    parser.add_argument("--queries", type=int, default=300, help="queries per corpus, in-process and MVP (default 300)")
    parser.add_argument("--mcp-queries", type=int, default=200, help="search_blog calls over MCP HTTP (default 200)")
    parser.add_argument("--mvp-big-queries", type=int, default=10,
                        help="MVP queries on corpus B, which takes seconds each (default 10; 0 skips)")
    parser.add_argument("--start-runs", type=int, default=3,
                        help="cached-start processes per corpus; the median is reported (default 3)")
    parser.add_argument("--no-dense", action="store_true",
                        help="skip corpus B with the dense re-rank (search.embeddings = 'wordllama')")
    parser.add_argument("--jvns", type=Path, default=DEFAULT_JVNS, help=f"the real blog (default {DEFAULT_JVNS})")
    parser.add_argument("--seed", type=int, default=1234, help="seed for the synthetic corpus and the queries")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for corpora, data dirs and logs (default: a temp dir, removed at the end)")
    args = parser.parse_args(argv)
    n_synthetic = args.articles if args.articles is not None else (5_000 if args.quick else 20_000)
    if not args.jvns.is_dir():
        parser.error(f"--jvns folder not found: {args.jvns}")

    began = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sovereign-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        env = Env(work)
        a1_dir = work / "corpus-A1"
        shutil.rmtree(a1_dir, ignore_errors=True)
        n_files = make_copies(args.jvns, a1_dir, 1000)
        log(f"A': {n_files} files in {a1_dir}")
        b_dir = work / f"corpus-B-{n_synthetic}-{args.seed}"
        if not b_dir.is_dir():
            sys.path.insert(0, str(HERE))
            from _synthetic import write_corpus

            log(f"B: writing {n_synthetic:,} synthetic articles")
            t0 = time.perf_counter()
            written = write_corpus(b_dir.with_suffix(".tmp"), n_synthetic, args.seed)
            b_dir.with_suffix(".tmp").rename(b_dir)
            log(f"B: {written / 1e6:.0f} MB written in {time.perf_counter() - t0:.1f} s")
        labels = {"A": "A: jvns", "A'": "A': jvns x2.5", "B": f"B: synthetic {n_synthetic // 1000}k"}
        rows = {
            "A": measure_corpus(env, "A", args.jvns.resolve(), work, args, mvp_queries=args.queries, mcp=False),
            "A'": measure_corpus(env, "A1", a1_dir, work, args, mvp_queries=args.queries, mcp=True),
            "B": measure_corpus(env, "B", b_dir, work, args,
                                mvp_queries=0 if args.quick else args.mvp_big_queries, mcp=not args.quick),
        }
        if not args.no_dense:
            rows["B+dense"] = measure_corpus(env, "Bdense", b_dir, work, args, mvp_queries=0, mcp=False,
                                             embeddings="wordllama")
            labels["B+dense"] = f"B + wordllama {n_synthetic // 1000}k"
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print_table(rows, labels)
    failed = False
    for target, verdict, detail in verdicts(rows):
        failed |= verdict == "FAIL"
        print(f"{verdict}  {target}: {detail}")
    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s"
          f"{' (--quick)' if args.quick else ''}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "_worker":
        sys.exit(worker_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())
