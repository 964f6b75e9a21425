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

from sovereign_mcp.observability.logs import (
    MASK,
    JsonFormatter,
    RedactFilter,
    RequestIdFilter,
    TextFormatter,
    redact,
)
from sovereign_mcp.payments.backends.dev import DevBackend
from sovereign_mcp.payments.store import TokenStore
from sovereign_mcp.server.instance import PidFile, running_pid
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
    """A sessionless (2026-07-28) ``tools/call`` body, with the envelope keys that protocol version requires."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": meta}}


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

    async def challenge() -> dict[str, Any]:  # the in-band payment_required result (HTTP 200)
        async with Client(StreamableHttpTransport(f"{server.url}/mcp")) as client:
            result = await client.call_tool("validate_quality", {"text": ARTICLE}, raise_on_error=False)
        assert result.is_error, result.content
        return result.structured_content["payment_required"]

    import asyncio

    required = asyncio.run(challenge())
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
    assert delta("sovereign_mcp_http_requests_total", route="/mcp", method="POST", status="402") == 0  # in-band
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
    httpx.get(f"{server.url}/nowhere%0Aforged", headers={"X-Request-ID": "newline-in-path"}, timeout=10)
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
    assert any(r["status"] == 200 and r["path"] == "/mcp" for r in access)
    assert [r["path"] for r in access if r["request_id"] == "newline-in-path"] == ["/nowhere\nforged"], \
        "JSON keeps a client's newline inside its record"
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


LND_MACAROON_HEX = "0201036c6e6402f801030a10" + "3f9c" * 60  # admin.macaroon as hex: 264 characters
BASE64_PREIMAGE = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="  # 32 bytes, as LND's REST API returns them


@pytest.mark.parametrize(("line", "secret"), [
    (f"lnd: Grpc-Metadata-macaroon {LND_MACAROON_HEX}", LND_MACAROON_HEX[:70]),
    (f"settled with preimage 0x{'5e' * 32}", "5e" * 32),
    ("lnbits headers {'X-Api-Key': '8f1c2d3e4b5a69788796a5b4c3d2e1f0'}", "8f1c2d3e4b5a69788796a5b4c3d2e1f0"),
    ("X-Api-Key: 8f1c2d3e4b5a69788796a5b4c3d2e1f0", "8f1c2d3e4b5a69788796a5b4c3d2e1f0"),
    ("request headers [(b'x-api-key', b'8f1c2d3e4b5a69788796a5b4c3d2e1f0')]", "8f1c2d3e4b5a69788796a5b4c3d2e1f0"),
    ('lnbits config {"admin_key": "c0ffee42c0ffee42", "api_key": "beefbeef77"}', "c0ffee42c0ffee42"),
    ('lnbits config {"admin_key": "c0ffee42c0ffee42", "api_key": "beefbeef77"}', "beefbeef77"),
    (f"lookup r_preimage={BASE64_PREIMAGE}", BASE64_PREIMAGE[:20]),
    (f'{{"payment_preimage": "{BASE64_PREIMAGE}"}}', BASE64_PREIMAGE[:20]),
    ("cannot reach postgresql://sovereign:hunter2-Pg@db.internal:5432/smcp", "hunter2-Pg"),
    ("limits storage redis://:r3dis-pass@127.0.0.1:6379/0", "r3dis-pass"),
    ("GET /lnurlp/callback?amount=21000&password=hunter2&page=2", "hunter2"),
])
def test_redact_formats(line: str, secret: str) -> None:
    """Each credential format seen in Lightning backends, database URLs and query strings."""
    out = redact(line)
    assert secret not in out and MASK in out, out


def test_redact_keeps_what_is_public() -> None:
    invoice = "lnbc210n1pjdevinvoice0qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7rusq"
    assert redact(f"invoice {invoice}") == f"invoice {invoice}"
    assert redact("token smcp_0a1b2c3d_S3cr3tS3cr3t used") == f"token smcp_0a1b2c3d_{MASK} used"
    assert redact("GET /lnurlp/callback?amount=21000&password=x&page=2").endswith(f"password={MASK}&page=2")
    assert redact("postgresql://sovereign:pw@db/smcp") == f"postgresql://sovereign:{MASK}@db/smcp"
    assert redact("prune=5 https://example.com/a?b=c the preimage was wrong") == \
        "prune=5 https://example.com/a?b=c the preimage was wrong"


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


# -- client-chosen values in labels and text logs; one error per refusal ------------------------------------------

def test_client_methods_paths_and_refused_calls(corpus: Path, tmp_path: Path) -> None:
    """Text logs at info, 2 free calls a minute: a made-up HTTP method is counted as ``other`` (no new series),
    a percent-encoded newline in the path cannot forge a text log line, and a call refused with 429 counts as
    one ``rate_limited`` error (not one for the status and one for the tool call)."""
    with serve(tmp_path, corpus, "--log-level", "info", SOVEREIGN_MCP_PAYMENTS__ENABLED="false",
               SOVEREIGN_MCP_RATE_LIMIT__FREE_CALLS="2/minute") as srv:
        before = scrape(srv.url)
        for method in ("FOO1", "PROPFIND", "BREW"):  # (httpx upper-cases methods)
            httpx.request(method, f"{srv.url}/health", timeout=10)
        forged = "2026-01-01 00:00:00,000 INFO sovereign_mcp [-]: forged line"
        httpx.get(f"{srv.url}/nowhere%0A{forged.replace(' ', '%20')}", timeout=10)
        routing = {**MCP_HEADERS, "Mcp-Method": "tools/call", "Mcp-Name": "search_blog"}  # 2026-07-28 headers
        codes = [httpx.post(f"{srv.url}/mcp", json=tools_call("search_blog", {"query": "lightning"}),
                            headers=routing, timeout=30).status_code for _ in range(4)]
        after = scrape(srv.url)
        text = wait_for_line(srv.log, "forged line")
    refused = codes.count(429)
    assert refused >= 1 and codes.count(200) + refused == 4, codes

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    methods = {dict(labels)["method"] for name, labels in after if name == "sovereign_mcp_http_requests_total"}
    assert methods <= {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"}, methods
    assert sum(delta("sovereign_mcp_http_requests_total", route="/health", method="other", status=status)
               for status in ("200", "405")) == 3
    assert delta("sovereign_mcp_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta("sovereign_mcp_tool_calls_total", tool="search_blog", outcome="rate_limited") == refused
    assert delta("sovereign_mcp_errors_total", kind="rate_limited") == refused, "each refusal counts once"
    lines = text.splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines), "a client forged a log line"
    assert any("/nowhere\\x0a2026-01-01" in line and "sovereign_mcp.access" in line for line in lines), text


def test_text_lines_escape_control_characters() -> None:
    stream = __import__("io").StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("tests.observability.text")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)  # whatever level an earlier test left on the root logger
    try:
        logger.warning("%s %s", "GET", "/a\r\nforged\x1b[2J\u2028next\ttab")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("GET /a\\x0d\\x0aforged\\x1b[2J\\u2028next\ttab")
    assert rest[0].endswith("failed") and rest[1] == "Traceback (most recent call last):", "tracebacks keep lines"


# -- one serve per port and data dir; the pid file belongs to the process that wrote it ---------------------------

def test_a_second_serve_on_a_busy_port_exits_2_and_leaves_the_first_alone(corpus: Path, tmp_path: Path) -> None:
    with serve(tmp_path, corpus, "--workers", "2") as srv:
        port = srv.url.rsplit(":", 1)[1]
        pidf, prom = srv.data / "server.pid", srv.data / f"prometheus-{port}"
        first = pidf.read_text()
        httpx.get(f"{srv.url}/health", timeout=10)
        counted = value(scrape(srv.url), "sovereign_mcp_http_requests_total", route="/health", method="GET",
                        status="200")
        files = sorted(prom.glob("*.db"))
        assert files and counted >= 1

        def second(data: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "sovereign_mcp", "serve", "--host", "127.0.0.1", "--port",
                                   port, "--no-watch", "--workers", "2", "--corpus", str(corpus), "--data-dir",
                                   str(data)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                  env=srv.env())

        same = second(srv.data)
        assert same.returncode == 2, same.stderr
        assert f"already running (pid {first}" in same.stderr
        other = second(tmp_path / "other")
        assert other.returncode == 2, other.stderr
        assert f"port {port} on 127.0.0.1 is in use" in other.stderr
        assert not (tmp_path / "other" / "server.pid").exists() and not (tmp_path / "other" / prom.name).exists()
        assert pidf.read_text() == first, "the running server's pid file was overwritten"
        assert set(files) <= set(prom.glob("*.db")), "the running server's metrics files were deleted"
        again = value(scrape(srv.url), "sovereign_mcp_http_requests_total", route="/health", method="GET",
                      status="200")
        assert again == counted


def test_pid_file_replaces_a_stale_one_and_goes_on_sigterm(corpus: Path, tmp_path: Path) -> None:
    pidf = tmp_path / "data" / "server.pid"
    pidf.parent.mkdir()
    pidf.write_text("999999999")  # above any pid_max: a server that died without cleaning up
    log = tmp_path / "server.log"
    proc, _ = spawn_server("--corpus", str(corpus), "--data-dir", str(pidf.parent), log=log, cwd=tmp_path,
                           env=Server("", tmp_path, log).env(), inherit_env=False)
    try:
        assert int(pidf.read_text()) == proc.pid
    finally:
        code = stop_server(proc)
    assert code == 0, log.read_text()[-2000:]
    assert not pidf.exists(), "the pid file outlived the server"


def test_pid_file_context(tmp_path: Path) -> None:
    path = tmp_path / "run" / "server.pid"
    with pytest.raises(SystemExit), PidFile(path):
        assert int(path.read_text()) == os.getpid()
        raise SystemExit(1)  # what uvicorn does when it cannot start
    assert not path.exists(), "a failed start leaves no pid file"
    with PidFile(path):
        path.write_text("12345")  # another server took the file over meanwhile
    assert path.read_text() == "12345", "a pid file this process did not write is never removed"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(str(sleeper.pid))
        assert running_pid(path) is None, "a live process that is not a sovereign-mcp server: a stale file"
    finally:
        sleeper.kill()
        sleeper.wait()


# -- worker settings do not leak into the worker's children ------------------------------------------------------

def test_worker_settings_leave_no_secrets_for_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from sovereign_mcp.config import Settings
    from sovereign_mcp.server.asgi import SETTINGS_ENV, export_settings, worker_settings

    settings = Settings(observability={"metrics_token": "scrape-secret-42"})
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    export_settings(settings)
    assert "scrape-secret-42" in os.environ[SETTINGS_ENV]
    loaded = worker_settings()
    assert loaded.observability.metrics_token.get_secret_value() == "scrape-secret-42"
    assert SETTINGS_ENV not in os.environ
    child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.environ))"], capture_output=True,
                           text=True, timeout=30, check=True)
    assert SETTINGS_ENV not in child.stdout and "scrape-secret-42" not in child.stdout


# -- tool labels: only registered names, whoever answers the call ------------------------------------------------

async def test_an_inner_answer_for_an_unknown_tool_is_labelled_unknown() -> None:
    from fastmcp import FastMCP
    from fastmcp.server.middleware import Middleware
    from fastmcp.tools import ToolResult

    from sovereign_mcp.observability.metrics import TOOL_CALLS
    from sovereign_mcp.server.middleware.tool_metrics import ToolMetricsMiddleware

    class Refuse(Middleware):  # answers a call before FastMCP looks the tool up (as a limiter may)
        async def on_call_tool(self, context: Any, call_next: Any) -> ToolResult:
            if context.message.name == "known":
                return await call_next(context)
            return ToolResult(structured_content={"rate_limited": True, "retry_after": 1})

    mcp = FastMCP("labels")

    @mcp.tool
    def known() -> str:
        return "ok"

    mcp.add_middleware(Refuse())
    mcp.middleware.insert(0, ToolMetricsMiddleware())
    name = "client_chosen_name_9f3"
    async with Client(mcp) as client:
        await client.call_tool(name, {}, raise_on_error=False)
        await client.call_tool("known", {}, raise_on_error=False)
    labelled = {s.labels["tool"] for m in TOOL_CALLS.collect() for s in m.samples}
    assert name not in labelled and "known" in labelled, labelled
