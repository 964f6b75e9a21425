"""``diagnose_sglang`` on every surface: the ``sovereign-mcp diagnose`` CLI (in-process), the MCP tool on
the real ``sovereign-mcp serve`` process (fastmcp.Client over HTTP), and ``/api/diagnose``. The live
probe targets the loopback fake SGLang of ``tests/fakes/fake_sglang.py``."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastmcp import Client

from sovereign_mcp.cli import main as cli_main
from sovereign_mcp.config import Settings
from sovereign_mcp.diagnostics.engine import MAX_LOG_BYTES
from sovereign_mcp.diagnostics.service import DiagnosticsService
from sovereign_mcp.kb.loader import load_kb
from tests.diagnostics.test_diagnose_rules import BASELINE_COMMAND, COMMAND_CASES, LOG_CASES
from tests.fakes.fake_sglang import FakeSGLang, fake_sglang
from tests.helpers import free_port, isolate, operator_token, running_server

REPO = Path(__file__).resolve().parents[2]
KB = load_kb([REPO / "kb"])
KV_LOG = LOG_CASES["sglang-kv-pool-empty"][1]
KV_LINE = next(i for i, line in enumerate(KV_LOG.splitlines(), 1) if "Not enough memory" in line)
MEMINFO = "MemTotal:       128524288 kB\nMemAvailable:   50331648 kB\n"
CITED = sorted({slug for e in KB.entries.values() if e.type == "diagnosis" for slug in e.data.articles})
MVP = {"attention_backend": "flashinfer", "mem_fraction": 0.9, "cuda_graph_max_bs": 64,
       "image_tag": "lmsysorg/sglang:latest",
       "error_message": "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static."}


# ---- CLI ---------------------------------------------------------------------------------------


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    isolate(monkeypatch, tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli_main(["diagnose", "--data-dir", str(tmp_path / "data"), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_invalid_log_exits_1(cli, tmp_path: Path):
    log = tmp_path / "sglang.log"
    log.write_text(KV_LOG, encoding="utf-8")
    code, out, _ = cli("--log", str(log))
    assert code == 1
    assert out.startswith("verdict: invalid  (hardware: GB10 (DGX Spark))")
    assert "[high] No room left for the KV cache (sglang-kv-pool-empty)" in out
    assert f"evidence: line {KV_LINE}: RuntimeError: Not enough memory." in out
    assert "apply:\n  --mem-fraction-static 0.75" in out


def test_cli_baseline_command_exits_0(cli):
    code, out, _ = cli("--cmd", BASELINE_COMMAND)
    assert code == 0
    assert out.startswith("verdict: valid  (hardware: GB10 (DGX Spark))")
    assert "apply:" not in out


def test_cli_json_output(cli, tmp_path: Path):
    log = tmp_path / "sglang.log"
    log.write_bytes(KV_LOG.encode() + b"\xff\xfe binary tail\n")  # undecodable bytes are replaced, not fatal
    code, out, _ = cli("--log", str(log), "--cmd", COMMAND_CASES["sglang-flashinfer-on-gb10"], "--json")
    assert code == 1
    report = json.loads(out)
    assert {"verdict", "findings", "apply", "baseline", "hardware", "launch", "probe"} <= set(report)
    assert report["verdict"] == "invalid"
    assert [f["rule_id"] for f in report["findings"]] == ["sglang-kv-pool-empty", "sglang-flashinfer-on-gb10"]
    assert report["findings"][0]["line"] == KV_LINE
    assert report["apply"][:2] == ["--mem-fraction-static 0.75", "grep MemAvailable /proc/meminfo"]
    assert "--attention-backend triton" in report["apply"]
    assert report["baseline"]["id"] == "sglang-gb10-baseline"
    assert report["launch"]["flags"]["--attention-backend"] == "flashinfer"


def test_cli_log_from_stdin(cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(LOG_CASES["sglang-port-in-use"][1].encode())))
    code, out, _ = cli("--log", "-", "--json")
    report = json.loads(out)
    assert code == 0  # medium: valid_with_warnings is not a failure
    assert report["verdict"] == "valid_with_warnings"
    assert [f["rule_id"] for f in report["findings"]] == ["sglang-port-in-use"]


def test_cli_env_and_hardware(cli):
    eagle = "python -m sglang.launch_server --attention-backend triton --speculative-algorithm EAGLE"
    code, out, _ = cli("--cmd", eagle, "--json")
    assert [f["rule_id"] for f in json.loads(out)["findings"]] == ["sglang-eagle-without-spec-v2"]
    code, out, _ = cli("--cmd", eagle, "--env", "SGLANG_ENABLE_SPEC_V2=True", "--env", "HF_HOME=/srv/hf", "--json")
    assert code == 0 and json.loads(out)["verdict"] == "valid"
    code, out, _ = cli("--cmd", COMMAND_CASES["sglang-flashinfer-on-gb10"], "--hardware", "H100", "--json")
    assert code == 0 and json.loads(out)["findings"] == []


def test_cli_probe_url(cli, tmp_path: Path):
    with fake_sglang() as fake:
        code, out, _ = cli("--probe", fake.url, "--json")
        text_code, text, _ = cli("--probe", fake.url)
    assert code == text_code == 1
    report = json.loads(out)
    assert report["probe"]["reachable"] is True and report["probe"]["ready"] is True
    assert report["probe"]["metrics"]["kv_cache_usage"] == 0.93
    assert "sglang-flashinfer-on-gb10" in [f["rule_id"] for f in report["findings"]]
    assert f"probe {fake.url}: reachable=True ready=True" in text


def test_cli_probe_url_from_config(cli, tmp_path: Path):
    (tmp_path / "meminfo").write_text(MEMINFO)
    with fake_sglang(health_status=503) as fake:
        config = tmp_path / "sovereign-mcp.toml"
        config.write_text(f'[diagnostics]\nsglang_url = "{fake.url}"\nmeminfo_path = "{tmp_path / "meminfo"}"\n')
        code, out, _ = cli("--config", str(config), "--probe", "--json")
    report = json.loads(out)
    assert report["probe"]["url"] == fake.url and report["probe"]["ready"] is False
    assert report["probe"]["mem_available_gb"] == pytest.approx(51.54, abs=0.01)
    assert "probe-not-ready" in [f["rule_id"] for f in report["findings"]]
    assert code == 1  # the flashinfer args read back are high


def test_cli_unreachable_probe_is_a_finding(cli):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, _ = cli("--probe", url, "--json")
    report = json.loads(out)
    assert code == 1
    assert report["findings"][0]["rule_id"] == "probe-unreachable"
    assert report["findings"][0]["evidence"] == f"not reachable at {url}: connection refused"


@pytest.mark.parametrize(("args", "message"), [
    ((), "nothing to diagnose"),
    (("--probe",), "--probe needs a URL"),
    (("--log", "/nonexistent/sglang.log"), "cannot read log"),
])
def test_cli_usage_errors_exit_2(cli, args: tuple[str, ...], message: str):
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert message in err


def test_cli_log_over_one_megabyte_exits_2(cli, tmp_path: Path):
    log = tmp_path / "big.log"
    log.write_bytes(b"x" * (MAX_LOG_BYTES + 1))
    code, _, err = cli("--log", str(log))
    assert code == 2 and "paste the last part" in err


# ---- MCP and /api/diagnose on the real server --------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("diag-corpus")
    for slug in CITED:
        shutil.copy(REPO / "corpus" / f"{slug}.md", folder / f"{slug}.md")
    return folder


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSGLang]:
    with fake_sglang() as server:
        yield server


@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("diag-server")


@pytest.fixture(scope="module")
def operator(server_home: Path) -> str:
    """An operator bearer token: the live probe is operator-only over HTTP."""
    return operator_token(server_home / "data")


@pytest.fixture(scope="module")
def server(corpus: Path, fake: FakeSGLang, server_home: Path) -> Iterator[str]:
    tmp = server_home
    (tmp / "meminfo").write_text(MEMINFO)
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as mp:  # the server process's environment only
            isolate(mp, tmp, chdir=False)
            mp.setenv("SOVEREIGN_MCP_DIAGNOSTICS__SGLANG_URL", fake.url)
            mp.setenv("SOVEREIGN_MCP_DIAGNOSTICS__MEMINFO_PATH", str(tmp / "meminfo"))
            mp.setenv("SOVEREIGN_MCP_PAYMENTS__ENABLED", "false")
            url = stack.enter_context(running_server("--corpus", str(corpus), "--data-dir", str(tmp / "data")))
        yield url


def local_service(tmp_path: Path) -> DiagnosticsService:
    return DiagnosticsService(Settings(data_dir=tmp_path, diagnostics={"hardware": "GB10 (DGX Spark)"}), KB)


def _summary(report: dict) -> list[tuple]:
    return [(f["rule_id"], f["severity"], f["evidence"], f["line"]) for f in report["findings"]]


@pytest.mark.e2e
async def test_mcp_tool_listing(server: str):
    async with Client(f"{server}/mcp") as client:
        tools = {t.name: t for t in await client.list_tools()}
    tool = tools["diagnose_sglang"]
    assert tool.annotations.read_only_hint is True and tool.annotations.open_world_hint is False
    assert tool.output_schema and tool.output_schema["type"] == "object"
    assert {"error_log", "launch_command", "env", "hardware", "probe", "attention_backend", "mem_fraction",
            "cuda_graph_max_bs", "image_tag", "error_message"} <= set(tool.input_schema["properties"])


@pytest.mark.e2e
async def test_mcp_error_log_and_launch_command(server: str, tmp_path: Path):
    async with Client(f"{server}/mcp") as client:
        log = (await client.call_tool("diagnose_sglang", {"error_log": KV_LOG})).structured_content
        cmd = (await client.call_tool("diagnose_sglang", {
            "launch_command": COMMAND_CASES["sglang-eagle-without-spec-v2"]})).structured_content
        env = (await client.call_tool("diagnose_sglang", {
            "launch_command": COMMAND_CASES["sglang-eagle-without-spec-v2"],
            "env": {"SGLANG_ENABLE_SPEC_V2": "True"}})).structured_content
        h100 = (await client.call_tool("diagnose_sglang", {
            "launch_command": COMMAND_CASES["sglang-flashinfer-on-gb10"], "hardware": "H100"})).structured_content
    assert log["verdict"] == "invalid"
    top = log["findings"][0]
    assert (top["rule_id"], top["line"]) == ("sglang-kv-pool-empty", KV_LINE)
    assert top["sources"] and all(url.endswith("/mistral-small-4-sglang-gb10/") for url in top["sources"])
    assert _summary(log) == _summary(local_service(tmp_path).run(error_log=KV_LOG).model_dump())
    assert cmd["verdict"] == "valid_with_warnings" and cmd["launch"]["kind"] == "python"
    assert [f["rule_id"] for f in cmd["findings"]] == ["sglang-eagle-without-spec-v2"]
    assert env["verdict"] == "valid" and env["findings"] == []
    assert h100["hardware"] == "H100" and h100["findings"] == []


@pytest.mark.e2e
async def test_mcp_mvp_arguments(server: str, tmp_path: Path):
    async with Client(f"{server}/mcp") as client:
        report = (await client.call_tool("diagnose_sglang", MVP)).structured_content
    assert report["verdict"] == "invalid"
    assert _summary(report) == _summary(local_service(tmp_path).run(**MVP).model_dump())
    assert {f["rule_id"] for f in report["findings"]} >= {"sglang-flashinfer-on-gb10", "sglang-image-without-sm121a"}


@pytest.mark.e2e
async def test_mcp_probe_uses_the_configured_server(server: str, fake: FakeSGLang, operator: str):
    async with Client(f"{server}/mcp", auth=operator) as client:
        report = (await client.call_tool("diagnose_sglang", {"probe": True})).structured_content
    probe = report["probe"]
    assert probe["url"] == fake.url and probe["reachable"] is True and probe["ready"] is True
    assert probe["server_args"]["attention_backend"] == "flashinfer"
    assert probe["metrics"] == {"kv_cache_usage": 0.93, "running_requests": 3.0, "queued_requests": 2.0,
                                "gen_throughput_tok_s": 38.5}
    assert probe["mem_available_gb"] == pytest.approx(51.54, abs=0.01)
    ids = [f["rule_id"] for f in report["findings"]]
    assert ids[0] in ("sglang-flashinfer-on-gb10", "sglang-mem-fraction-too-high")
    assert {"sglang-flashinfer-on-gb10", "probe-kv-cache-full", "probe-requests-queued"} <= set(ids)
    assert ("GET", "/health") in fake.requests


@pytest.mark.e2e
async def test_mcp_bad_arguments_are_tool_errors(server: str):
    async with Client(f"{server}/mcp") as client:
        for bad in ({"mem_fraction": 5}, {"mem_fraction": -0.1}, {"cuda_graph_max_bs": "many"},
                    {"error_log": "x" * (MAX_LOG_BYTES + 1)}, {"hardware": "h" * 201}):
            result = await client.call_tool("diagnose_sglang", bad, raise_on_error=False)
            assert result.is_error, bad
            assert "Traceback" not in result.content[0].text
        # within the character limit but over 1 MB of UTF-8: the engine's own limit
        big = await client.call_tool("diagnose_sglang", {"error_log": "é" * (MAX_LOG_BYTES // 2 + 10)},
                                     raise_on_error=False)
    assert big.is_error and "paste the last part" in big.content[0].text


@pytest.mark.e2e
async def test_api_diagnose_matches_mcp(server: str):
    args = {"error_log": KV_LOG, "launch_command": COMMAND_CASES["sglang-image-without-sm121a"]}
    async with Client(f"{server}/mcp") as client:
        over_mcp = (await client.call_tool("diagnose_sglang", args)).structured_content
        mvp_mcp = (await client.call_tool("diagnose_sglang", MVP)).structured_content
    async with httpx.AsyncClient(base_url=server) as http:
        posted = await http.post("/api/diagnose", json=args)
        mvp_http = await http.post("/api/diagnose", json=MVP)
        got = await http.get("/api/diagnose", params={"attention_backend": "flashinfer", "mem_fraction": "0.9"})
        bad = await http.post("/api/diagnose", json={"mem_fraction": 5})
        probe = await http.post("/api/diagnose", json={"probe": True})
        not_json = await http.post("/api/diagnose", content=b"mem_fraction=0.9",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        big = await http.post("/api/diagnose", headers={"Content-Type": "application/json"},
                              content=json.dumps({"error_log": "é" * (MAX_LOG_BYTES // 2 + 10)},
                                                 ensure_ascii=False).encode())
    assert posted.status_code == 200
    assert posted.json()["findings"] == over_mcp["findings"]
    assert posted.json()["apply"] == over_mcp["apply"] and posted.json()["verdict"] == "invalid"
    assert mvp_http.json()["findings"] == mvp_mcp["findings"]
    assert got.status_code == 200
    assert {f["rule_id"] for f in got.json()["findings"]} == {"sglang-flashinfer-on-gb10",
                                                             "sglang-mem-fraction-too-high"}
    assert bad.status_code == 400 and "mem_fraction" in bad.json()["error"]
    assert bad.json()["details"][0]["field"] == "mem_fraction"
    assert probe.status_code == 401 and "operator-only" in probe.json()["error"]  # needs an operator token
    assert not_json.status_code == 415
    assert big.status_code == 400 and "paste the last part" in big.json()["error"]


@pytest.mark.e2e
async def test_mcp_probe_without_configured_url(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    isolate(monkeypatch, tmp_path, chdir=False)
    monkeypatch.setenv("SOVEREIGN_MCP_PAYMENTS__ENABLED", "false")
    token = operator_token(tmp_path / "data")
    with running_server("--corpus", str(corpus), "--data-dir", str(tmp_path / "data")) as url:
        async with Client(f"{url}/mcp", auth=token) as client:
            result = await client.call_tool("diagnose_sglang", {"probe": True}, raise_on_error=False)
            plain = await client.call_tool("diagnose_sglang", {"launch_command": BASELINE_COMMAND})
    assert result.is_error
    assert result.content[0].text == ("no SGLang server to probe: set diagnostics.sglang_url in the server config")
    assert plain.structured_content["verdict"] == "valid"
