"""Observability on the real ``sovereign-mcp serve`` process (loopback): ``GET /metrics`` scrapes cleanly
(parsed with prometheus-client's own parser) and its counters move with real tool calls over HTTP (ok, tool
error, unknown tool, a 402 challenge, an invoice paid through the dev backend); its switches (off -> 404,
metrics_token -> 401 without it) and prometheus-client multiprocess mode; JSON logs with request ids; and no
preimage, macaroon or operator token in the server's logs while paid and bearer calls are made at debug level.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from prometheus_client.parser import text_string_to_metric_families

from sovereign_mcp.observability.logs import JsonFormatter, RedactFilter, RequestIdFilter, redact
from sovereign_mcp.payments.backends.dev import DevBackend
from sovereign_mcp.payments.store import TokenStore
from tests.helpers import REPO, spawn_server, stop_server

pytestmark = pytest.mark.e2e

ARTICLE = "---\ntitle: Metered\ndate: 2026-05-01\n---\n\n## Why\n\nThe gate checks every draft. It is deterministic.\n"
CORPUS = "---\ntitle: Lightning tips\ndate: 2025-03-01\ntags: [lightning]\n---\n\n## Value\n\nReaders pay for tools.\n"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2026-07-28"}


# -- a server whose stderr goes to a file (a pipe nobody reads would block a server logging at debug) ----------

class Server:
    def __init__(self, url: str, home: Path, log: Path) -> None:
        self.url, self.home, self.log, self.data = url, home, log, home / "data"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("SOVEREIGN_MCP_", "PROMETHEUS_"))}
        env.update({"XDG_CONFIG_HOME": str(self.home / "xdg-config"), "XDG_DATA_HOME": str(self.home / "xdg"),
                    "PYTHONUNBUFFERED": "1", **extra})
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "sovereign_mcp", *args, "--data-dir", str(self.data)],
                              capture_output=True, text=True, timeout=60, cwd=self.home, env=self.env())
        assert done.returncode == 0, done.stderr
        return done.stdout


@contextlib.contextmanager
def serve(home: Path, corpus: Path, *args: str, **env: str) -> Iterator[Server]:
    log = home / "server.log"
    proc, url = spawn_server("--corpus", str(corpus), "--data-dir", str(home / "data"), *args, log=log, cwd=home,
                             env=Server("", home, log).env(**env), inherit_env=False)
    try:
        yield Server(url, home, log)
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("obs-corpus")
    (folder / "tips.md").write_text(CORPUS, encoding="utf-8")
    return folder


def wait_for_line(log: Path, needle: str, timeout: float = 10.0) -> str:
    """The log's text once it contains ``needle`` (the access line is written just after the response)."""
    deadline = time.monotonic() + timeout
    while needle not in (text := log.read_text()):
        assert time.monotonic() < deadline, f"{needle!r} never logged"
        time.sleep(0.05)
    return text


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of one scrape, through prometheus-client's parser (which
    raises on malformed exposition text)."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def tools_call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


def pay(data: Path, invoice: str) -> str:
    """Settle a dev-backend invoice through the server's own SQLite file; returns the preimage (hex)."""
    store = TokenStore(data / "l402.sqlite3")
    try:
        return DevBackend(store, data / "l402-dev-node.key").pay(invoice)
    finally:
        store.close()


# -- the main server: json logs at debug, payments on (dev backend), operator auth on ---------------------------

@pytest.fixture(scope="module")
def server(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("obs"), corpus, "--log-level", "debug",
               SOVEREIGN_MCP_OBSERVABILITY__LOG_FORMAT="json") as srv:
        yield srv


@pytest.fixture(scope="module")
def traffic(server: Server) -> dict[str, Any]:
    """Real calls over HTTP between two scrapes; returns both scrapes and the secrets used."""
    before = scrape(server.url)
    operator = server.cli("token", "create", "--scope", "operator", "--label", "obs-test").split()[0]
    challenge = httpx.post(f"{server.url}/mcp", json=tools_call("validate_quality", {"text": ARTICLE}),
                           headers=MCP_HEADERS, timeout=30)
    assert challenge.status_code == 402, challenge.text
    required = challenge.json()["payment_required"]
    preimage = pay(server.data, required["invoice"])
    credential = f"L402 {required['macaroon']}:{preimage}"

    async def calls() -> None:
        async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
            assert not (await client.call_tool("search_blog", {"query": "lightning"})).is_error
            bad = await client.call_tool("get_article", {"slug": "no-such-article"}, raise_on_error=False)
            assert bad.is_error
            unknown = await client.call_tool("no_such_tool_xyz", {}, raise_on_error=False)
            assert unknown.is_error
            # the credential as the tool's l402 argument: FastMCP logs tool arguments at debug level
            paid = await client.call_tool("validate_quality", {"text": ARTICLE, "l402": credential},
                                          raise_on_error=False)
            assert not paid.is_error, paid.content
        bearer = StreamableHttpTransport(f"{server.url}/mcp", headers={"Authorization": f"Bearer {operator}"})
        async with Client(bearer) as client:
            assert not (await client.call_tool("list_jobs", {})).is_error

    import asyncio

    asyncio.run(calls())
    api = httpx.get(f"{server.url}/api/tags", headers={"Authorization": f"Bearer {operator}"}, timeout=30)
    assert api.status_code == 200, api.text
    return {"before": before, "after": scrape(server.url), "secrets": {
        "preimage": preimage, "macaroon": required["macaroon"], "operator token": operator,
        "operator secret": operator.rsplit("_", 1)[1]}, "invoice": required["invoice"]}


def test_scrape_has_every_family(server: Server, traffic: dict[str, Any]) -> None:
    after = traffic["after"]
    names = {name for name, _ in after}
    for family in ("sovereign_mcp_tool_calls_total", "sovereign_mcp_tool_duration_seconds_count",
                   "sovereign_mcp_errors_total", "sovereign_mcp_http_requests_total",
                   "sovereign_mcp_l402_invoices_issued_total", "sovereign_mcp_l402_invoices_paid_total",
                   "sovereign_mcp_l402_sats_earned_total", "sovereign_mcp_l402_tokens", "sovereign_mcp_pipeline_jobs",
                   "sovereign_mcp_gpu_service_state", "sovereign_mcp_index_articles", "sovereign_mcp_index_passages",
                   "sovereign_mcp_build_info", "sovereign_mcp_metrics_source_up"):
        assert family in names, family
    assert value(after, "sovereign_mcp_index_articles") == 1
    assert value(after, "sovereign_mcp_index_passages") >= 1
    assert value(after, "sovereign_mcp_pipeline_jobs", state="queued") == 0
    gpu = {labels: v for (name, labels), v in after.items() if name == "sovereign_mcp_gpu_service_state"}
    services = {dict(labels)["service"] for labels in gpu}
    assert services and all(sum(v for k, v in gpu.items() if dict(k)["service"] == s) == 1 for s in services)
    for source in ("index", "l402", "jobs", "gpu"):
        assert value(after, "sovereign_mcp_metrics_source_up", source=source) == 1, source


def test_counters_move_with_real_calls(traffic: dict[str, Any]) -> None:
    before, after = traffic["before"], traffic["after"]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "sovereign_mcp_tool_calls_total"
    assert delta(calls, tool="search_blog", outcome="ok") == 1
    assert delta(calls, tool="get_article", outcome="tool_error") == 1
    assert delta(calls, tool="unknown", outcome="tool_error") == 1, "client-chosen names stay out of labels"
    assert not any(dict(k).get("tool") == "no_such_tool_xyz" for _, k in after)
    assert delta(calls, tool="validate_quality", outcome="payment_required") == 1
    assert delta(calls, tool="validate_quality", outcome="ok") == 1
    assert delta(calls, tool="list_jobs", outcome="ok") == 1
    assert delta("sovereign_mcp_tool_duration_seconds_count", tool="search_blog") == 1
    assert delta("sovereign_mcp_errors_total", kind="tool_error") == 2
    assert delta("sovereign_mcp_l402_invoices_issued_total", tool="validate_quality") == 1
    assert delta("sovereign_mcp_l402_invoices_paid_total", tool="validate_quality") == 1
    assert delta("sovereign_mcp_l402_sats_earned_total", tool="validate_quality") == 21
    assert delta("sovereign_mcp_http_requests_total", route="/mcp", method="POST", status="402") == 1
    assert delta("sovereign_mcp_http_requests_total", route="/api/tags", method="GET", status="200") == 1
    assert value(after, "sovereign_mcp_http_requests_total", route="/metrics", method="GET", status="200") >= 1


def test_request_id_header(server: Server) -> None:
    given = httpx.get(f"{server.url}/health", headers={"X-Request-ID": "lb-7f.3_a"}, timeout=10)
    assert given.headers["x-request-id"] == "lb-7f.3_a"
    for bad in ("x" * 65, "has space", "semi;colon"):
        fresh = httpx.get(f"{server.url}/health", headers={"X-Request-ID": bad}, timeout=10).headers["x-request-id"]
        assert fresh != bad and len(fresh) == 32 and int(fresh, 16) >= 0
    a, b = (httpx.get(f"{server.url}/nowhere", timeout=10) for _ in range(2))
    assert a.status_code == 404 and a.headers["x-request-id"] != b.headers["x-request-id"]


def test_json_logs_and_no_secrets(server: Server, traffic: dict[str, Any]) -> None:
    httpx.get(f"{server.url}/health", headers={"X-Request-ID": "trace-me-42"}, timeout=10)
    text = wait_for_line(server.log, '"request_id": "trace-me-42"')
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records, "the server logged nothing"
    for record in records:
        assert {"ts", "level", "logger", "message", "request_id"} <= record.keys(), record
    access = [r for r in records if r["logger"] == "sovereign_mcp.access"]
    mine = [r for r in access if r["request_id"] == "trace-me-42"]
    assert mine and mine[0]["path"] == "/health" and mine[0]["status"] == 200 and mine[0]["method"] == "GET"
    assert isinstance(mine[0]["duration_ms"], float) and mine[0]["client"] == "127.0.0.1"
    assert any(r["status"] == 402 and r["path"] == "/mcp" for r in access)
    assert any(r["request_id"] and r["logger"] != "sovereign_mcp.access" for r in records), \
        "records logged while serving a request carry its id"
    for what, secret in traffic["secrets"].items():
        assert secret not in text, f"the {what} appears in the server's log"
    assert "'l402': 'L402 [REDACTED]'" in text, "the debug line with the tool's arguments was logged, redacted"


def test_metrics_token_and_multiprocess_mode(corpus: Path, tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    with serve(tmp_path, corpus, SOVEREIGN_MCP_OBSERVABILITY__METRICS_TOKEN="scrape-secret",
               SOVEREIGN_MCP_PAYMENTS__ENABLED="false", PROMETHEUS_MULTIPROC_DIR=str(multiproc)) as srv:
        assert httpx.get(f"{srv.url}/metrics", timeout=10).status_code == 401
        wrong = httpx.get(f"{srv.url}/metrics", headers={"Authorization": "Bearer scrape-secreT"}, timeout=10)
        assert wrong.status_code == 401 and "metrics_token" in wrong.text
        httpx.post(f"{srv.url}/api/search", json={"query": "lightning"}, timeout=30).raise_for_status()
        samples = scrape(srv.url, Authorization="Bearer scrape-secret")
        assert value(samples, "sovereign_mcp_http_requests_total", route="/api/search", method="POST",
                     status="200") == 1
        assert list(multiproc.glob("*.db")), "multiprocess mode writes the counters to PROMETHEUS_MULTIPROC_DIR"
        assert ("sovereign_mcp_metrics_source_up", (("source", "l402"),)) not in samples  # payments off
        assert ("sovereign_mcp_l402_sats_earned_total", (("tool", "validate_quality"),)) not in samples


def test_metrics_off_is_404(corpus: Path, tmp_path: Path) -> None:
    with serve(tmp_path, corpus, SOVEREIGN_MCP_OBSERVABILITY__METRICS="false") as srv:
        assert httpx.get(f"{srv.url}/metrics", timeout=10).status_code == 404
        assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200


# -- the filters themselves, through the logging module ----------------------------------------------------------

def test_redact_filter_on_a_real_handler() -> None:
    stream = __import__("io").StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.observability.redact")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    preimage, macaroon = "ab" * 32, "AgEEbHNhdAJCAACk" + "Qx9" * 20 + "=="
    token = "smcp_0123456789abcdef_" + "S3cr3t-_" * 5 + "abc"
    try:
        logger.warning("credential %s", f"L402 {macaroon}:{preimage}")
        logger.warning("headers %r", {"authorization": f"Bearer {token}"})
        logger.info("call", extra={"client": token, "path": "/api/search"})
        try:
            raise ValueError(f"bad preimage {preimage}")
        except ValueError:
            logger.exception("failed for %s", macaroon)
        logger.info("invoice lnbcrt210n1pjdevinvoice0qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7rusq")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 5 and lines[2]["path"] == "/api/search"
    for secret in (preimage, macaroon, token, "S3cr3t"):
        assert secret not in out
    assert "smcp_0123456789abcdef_[REDACTED]" in out, "the token id stays, for tracing"
    assert "lnbcrt210n1pjdevinvoice0qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7rusq" in out
    assert "ValueError" in lines[3]["exc_info"]
    assert redact("no secrets here: /api/search 200") == "no secrets here: /api/search 200"


SENSITIVE = ("credential", "preimage", "macaroon", "secret", "authorization", "password", "root_key", "api_key",
             "invoice_key", "rune")
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def test_no_log_call_passes_a_credential() -> None:
    """Every logging call in the package: none passes a variable or attribute named like a credential."""
    offenders = []
    for path in sorted((REPO / "sovereign_mcp").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LOG_METHODS and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in {"log", "logger", "logging", "access_log", "_log"}):
                continue
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                for inner in ast.walk(arg):
                    name = inner.id if isinstance(inner, ast.Name) else getattr(inner, "attr", None)
                    if isinstance(name, str) and any(s in name.lower() for s in SENSITIVE):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} passes {name}")
    assert not offenders, offenders


def test_two_workers_scrape_the_same_totals(corpus: Path, tmp_path: Path) -> None:
    """``serve --workers 2``: each worker counts into PROMETHEUS_MULTIPROC_DIR, so whichever worker answers the
    scrape reports the requests both served."""
    with serve(tmp_path, corpus, "--workers", "2") as srv:
        assert (srv.data / f"prometheus-{srv.url.rsplit(':', 1)[1]}").is_dir()
        before = value(scrape(srv.url), "sovereign_mcp_http_requests_total", route="/health", method="GET",
                       status="200")
        pids: set[int] = set()
        sent = 0
        while len(pids) < 2 and sent < 300:  # fresh connections until both workers have answered
            pids.add(httpx.get(f"{srv.url}/health", timeout=10).json()["pid"])
            sent += 1
        assert len(pids) == 2, f"one worker answered all {sent} requests"
        for _ in range(8):  # scrapes land on either worker
            totals = value(scrape(srv.url), "sovereign_mcp_http_requests_total", route="/health", method="GET",
                           status="200")
            assert totals == before + sent
