"""The live probe against a real HTTP server on 127.0.0.1 that speaks SGLang's endpoints
(``tests/fakes/fake_sglang.py``), and the diagnoser run on what it reads back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sovereign_mcp.config import Settings
from sovereign_mcp.diagnostics.engine import Diagnoser
from sovereign_mcp.diagnostics.probe import ProbeResult, mem_available_gb, parse_metrics, probe_sglang
from sovereign_mcp.diagnostics.service import DiagnosticsService
from sovereign_mcp.kb.loader import load_kb
from tests.fakes.fake_sglang import METRICS, MODEL_INFO, SERVER_ARGS, fake_sglang
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
KB = load_kb([REPO / "kb"])
MEMINFO = """\
MemTotal:       128524288 kB
MemFree:         3145728 kB
MemAvailable:   50331648 kB
Buffers:          524288 kB
Cached:         45088768 kB
"""


@pytest.fixture()
def meminfo(tmp_path: Path) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    return path


def service(tmp_path: Path, meminfo: Path, timeout: float = 1.0) -> DiagnosticsService:
    settings = Settings(data_dir=tmp_path / "data", diagnostics={
        "hardware": "GB10 (DGX Spark)", "meminfo_path": meminfo, "probe_timeout": timeout})
    return DiagnosticsService(settings, KB, lambda slug: f"https://blog.example.org/{slug}/")


def test_probe_reads_everything(meminfo: Path):
    with fake_sglang() as fake:
        result = probe_sglang(fake.url + "/", timeout=2, meminfo=meminfo)
    assert result.url == fake.url
    assert result.reachable is True and result.ready is True and result.health_status == 200
    assert result.server_args == SERVER_ARGS
    assert result.model_info == MODEL_INFO and result.model_info["is_generation"] is True
    assert result.metrics == {"kv_cache_usage": 0.93, "running_requests": 3.0, "queued_requests": 2.0,
                              "gen_throughput_tok_s": 38.5}
    assert result.mem_available_gb == pytest.approx(51.54, abs=0.01)
    assert result.deprecated_endpoints == [] and result.errors == []
    # read-only: GETs only, and never the deprecated names when the new ones answer
    assert {m for m, _ in fake.requests} == {"GET"}
    assert [p for _, p in fake.requests] == ["/health", "/server_info", "/model_info", "/metrics"]


def test_probe_falls_back_to_deprecated_endpoints(meminfo: Path):
    with fake_sglang(deprecated=True) as fake:
        result = probe_sglang(fake.url, timeout=2, meminfo=meminfo)
    assert result.ready is True
    assert result.server_args["attention_backend"] == "flashinfer"
    assert result.model_info["model_path"] == MODEL_INFO["model_path"]
    assert result.deprecated_endpoints == ["/get_server_info", "/get_model_info"]
    assert result.errors == []
    assert [p for _, p in fake.requests] == ["/health", "/server_info", "/get_server_info", "/model_info",
                                            "/get_model_info", "/metrics"]


def test_probe_without_metrics_says_how_to_enable_them(meminfo: Path):
    with fake_sglang(metrics=None) as fake:
        result = probe_sglang(fake.url, timeout=2, meminfo=meminfo)
    assert result.metrics == {}
    assert result.errors == ["GET /metrics: HTTP 404 (start SGLang with --enable-metrics)"]


def test_warming_up_is_not_ready(tmp_path: Path, meminfo: Path):
    with fake_sglang(health_status=503) as fake:
        result = probe_sglang(fake.url, timeout=2, meminfo=meminfo)
        report = service(tmp_path, meminfo).run(probe_url=fake.url)
    assert result.reachable is True and result.ready is False and result.health_status == 503
    finding = next(f for f in report.findings if f.rule_id == "probe-not-ready")
    assert finding.severity == "medium" and finding.evidence == "/health answered HTTP 503"
    assert "warm-up" in finding.fix


def test_unreachable_port_is_reported_not_raised(tmp_path: Path, meminfo: Path):
    url = f"http://127.0.0.1:{free_port()}"
    result = probe_sglang(url, timeout=1, meminfo=meminfo)
    assert result.reachable is False and result.ready is None and result.health_status is None
    assert result.errors == [f"not reachable at {url}: connection refused"]
    assert result.mem_available_gb == pytest.approx(51.54, abs=0.01)
    report = service(tmp_path, meminfo).run(probe_url=url)
    assert report.verdict == "invalid"
    assert [(f.rule_id, f.severity) for f in report.findings] == [("probe-unreachable", "high")]
    assert report.findings[0].evidence == f"not reachable at {url}: connection refused"
    assert report.probe is not None and report.probe.reachable is False


def test_hanging_server_times_out(meminfo: Path):
    with fake_sglang(hang={"/health"}) as fake:
        started = time.monotonic()
        result = probe_sglang(fake.url, timeout=0.3, meminfo=meminfo)
        elapsed = time.monotonic() - started
    assert elapsed < 3
    assert result.reachable is False
    assert result.errors == [f"not reachable at {fake.url}: timed out"]


def test_one_hanging_endpoint_does_not_stop_the_rest(meminfo: Path):
    with fake_sglang(hang={"/server_info"}) as fake:
        result = probe_sglang(fake.url, timeout=0.3, meminfo=meminfo)
    assert result.reachable is True and result.ready is True
    assert result.server_args == {}
    assert result.errors == ["GET /server_info: timed out"]
    assert result.model_info == MODEL_INFO and result.metrics["kv_cache_usage"] == 0.93


def test_non_json_server_info(meminfo: Path):
    with fake_sglang() as fake:
        fake.server_args = None  # type: ignore[assignment]  # json "null": not an object
        result = probe_sglang(fake.url, timeout=2, meminfo=meminfo)
    assert result.server_args == {} and result.reachable is True


def test_diagnoser_reads_the_server_args_back(tmp_path: Path, meminfo: Path):
    with fake_sglang() as fake:
        report = service(tmp_path, meminfo).run(probe_url=fake.url)
    ids = [f.rule_id for f in report.findings]
    assert ids[:2] in (["sglang-flashinfer-on-gb10", "sglang-mem-fraction-too-high"],
                       ["sglang-mem-fraction-too-high", "sglang-flashinfer-on-gb10"])
    assert set(ids) == {"sglang-flashinfer-on-gb10", "sglang-mem-fraction-too-high", "sglang-cuda-graph-max-bs-high",
                        "probe-kv-cache-full", "probe-requests-queued"}
    assert report.verdict == "invalid"
    flashinfer = report.findings[ids.index("sglang-flashinfer-on-gb10")]
    assert flashinfer.severity == "high" and flashinfer.evidence == "--attention-backend flashinfer"
    assert flashinfer.sources == ["https://blog.example.org/flashinfer-vs-triton-gb10/",
                                  "https://blog.example.org/mistral-small-4-sglang-gb10/"]
    assert report.findings[ids.index("probe-kv-cache-full")].evidence == "sglang:token_usage 0.93"
    assert report.findings[ids.index("probe-requests-queued")].evidence == "sglang:num_queue_reqs 2"
    assert "--attention-backend triton" in report.apply and "--mem-fraction-static 0.75" in report.apply
    assert report.probe is not None and report.probe.mem_available_gb == pytest.approx(51.54, abs=0.01)


def test_healthy_server_on_the_baseline_is_valid(tmp_path: Path, meminfo: Path):
    args = {**SERVER_ARGS, "attention_backend": "triton", "mem_fraction_static": 0.75, "cuda_graph_max_bs": 16}
    quiet = METRICS.replace("} 0.93", "} 0.12").replace('sglang:num_queue_reqs{model_name="m"} 2.0',
                                                        'sglang:num_queue_reqs{model_name="m"} 0.0')
    with fake_sglang(server_args=args, metrics=quiet) as fake:
        report = service(tmp_path, meminfo).run(probe_url=fake.url)
    assert report.findings == [] and report.verdict == "valid"
    assert report.probe is not None and report.probe.metrics["kv_cache_usage"] == 0.12


def test_probe_switches_from_the_server_become_flags(tmp_path: Path, meminfo: Path):
    args = {**SERVER_ARGS, "attention_backend": "triton", "mem_fraction_static": 0.75, "cuda_graph_max_bs": 16,
            "disable_cuda_graph": True, "tp_size": 2}
    with fake_sglang(server_args=args) as fake:
        report = service(tmp_path, meminfo).run(probe_url=fake.url, hardware="DGX Spark")
    ids = {f.rule_id for f in report.findings}
    assert {"sglang-cuda-graph-disabled", "sglang-tensor-parallel-single-gpu"} <= ids


def test_launch_command_wins_over_probed_args(tmp_path: Path, meminfo: Path):
    with fake_sglang() as fake:
        report = service(tmp_path, meminfo).run(
            probe_url=fake.url,
            launch_command="python -m sglang.launch_server --attention-backend triton --mem-fraction-static 0.75 "
                           "--cuda-graph-max-bs 16")
    assert {f.rule_id for f in report.findings} == {"probe-kv-cache-full", "probe-requests-queued"}
    assert report.verdict == "valid_with_warnings"


def test_probe_result_without_server_args_is_only_probe_findings():
    report = Diagnoser(KB).diagnose(probe=ProbeResult(url="http://127.0.0.1:1", reachable=True, ready=True,
                                                      health_status=200))
    assert report.findings == [] and report.verdict == "valid"


def test_mem_available_edge_cases(tmp_path: Path):
    assert mem_available_gb(tmp_path / "missing") is None
    (tmp_path / "bad").write_text("MemAvailable: lots kB\n")
    assert mem_available_gb(tmp_path / "bad") is None
    (tmp_path / "none").write_text("MemTotal: 1 kB\n")
    assert mem_available_gb(tmp_path / "none") is None
    (tmp_path / "ok").write_text("MemAvailable:   1000000 kB\n")
    assert mem_available_gb(tmp_path / "ok") == 1.02


def test_parse_metrics_sums_label_sets_and_ignores_the_rest():
    text = METRICS + 'sglang:num_running_reqs{model_name="other"} 2.0\n'
    assert parse_metrics(text)["running_requests"] == 5.0
    assert parse_metrics("") == {}
    assert parse_metrics("# HELP x y\n# TYPE x gauge\nx 1\n") == {}
