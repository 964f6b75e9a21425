"""Every shipped SGLang ``diagnosis`` rule against realistic input, plus the engine's edge cases.

Log rules get a hand-written SGLang log excerpt (timestamps, INFO lines, a traceback) containing the
exact failure text from SGLang's, Triton's and CUDA's own messages, so a test proves the rule's regex matches the
real text rather than itself. Flag, env and image rules get a realistic launch command. A guard test
fails when a new rule ships without an excerpt or command here.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.loader import load_corpus
from sovereign_mcp.diagnostics.engine import (
    MAX_LOG_BYTES,
    DiagnoseInputError,
    Diagnoser,
    DiagnosisReport,
    mvp_flags,
)
from sovereign_mcp.diagnostics.service import DiagnosticsService
from sovereign_mcp.kb.loader import KnowledgeBase, load_kb
from sovereign_mcp.kb.models import KBEntry

REPO = Path(__file__).resolve().parents[2]
KB = load_kb([REPO / "kb"])
RULES: dict[str, KBEntry] = {e.id: e for e in KB.in_scopes(["sglang"]) if e.type == "diagnosis"}
CORPUS_SLUGS = {a.slug for a in load_corpus([REPO / "corpus"]).articles}
BLOG = "https://blog.example.org/posts/"


def article_url(slug: str) -> str | None:
    return f"{BLOG}{slug}/" if slug in CORPUS_SLUGS else None


@pytest.fixture(scope="module")
def diagnoser() -> Diagnoser:
    assert KB.errors == [], KB.errors
    return Diagnoser(KB, article_url)


# A healthy start of Mistral Small 4 on the GB10 (the shape of SGLang's own log output).
HEALTHY = """\
[2026-03-10 09:14:02] server_args=ServerArgs(model_path='/models/Mistral-Small-4-119B-2603', tokenizer_mode='auto', \
host='0.0.0.0', port=30000, mem_fraction_static=0.75, max_running_requests=16, attention_backend='triton', \
cuda_graph_max_bs=16, tp_size=1, disable_cuda_graph=False)
[2026-03-10 09:14:05 TP0] Init torch distributed begin.
[2026-03-10 09:14:06 TP0] Init torch distributed ends. mem usage=0.00 GB
[2026-03-10 09:14:06 TP0] Load weight begin. avail mem=119.54 GB
Loading safetensors checkpoint shards: 100% Completed | 9/9 [01:12<00:00,  8.01s/it]
[2026-03-10 09:15:20 TP0] Load weight end. type=Mistral3ForConditionalGeneration, dtype=torch.bfloat16, \
avail mem=72.10 GB, mem usage=47.44 GB.
[2026-03-10 09:15:21 TP0] KV Cache is allocated. #tokens: 412345, K size: 10.50 GB, V size: 10.50 GB
[2026-03-10 09:15:21 TP0] Memory pool end. avail mem=27.80 GB
[2026-03-10 09:15:22 TP0] Capture cuda graph begin. This can take up to several minutes. avail mem=27.61 GB
Capturing batches (bs=16 avail_mem=27.40 GB): 100%|##########| 5/5 [00:08<00:00,  1.62s/it]
[2026-03-10 09:15:31 TP0] Capture cuda graph end. Time elapsed: 9.12 s. mem usage=0.35 GB. avail mem=27.26 GB.
[2026-03-10 09:15:33 TP0] max_total_num_tokens=412345, chunked_prefill_size=8192, max_prefill_tokens=16384, \
max_running_requests=16, context_len=131072, available_gpu_mem=27.26 GB
[2026-03-10 09:15:34] INFO:     Started server process [48190]
[2026-03-10 09:15:34] INFO:     Waiting for application startup.
[2026-03-10 09:15:34] INFO:     Application startup complete.
[2026-03-10 09:15:34] INFO:     Uvicorn running on http://0.0.0.0:30000 (Press CTRL+C to quit)
[2026-03-10 09:15:35] INFO:     127.0.0.1:40312 - "GET /get_model_info HTTP/1.1" 200 OK
[2026-03-10 09:15:36 TP0] Prefill batch. #new-seq: 1, #new-token: 7, #cached-token: 0, token usage: 0.00, \
#running-req: 0, #queue-req: 0
[2026-03-10 09:15:38] INFO:     127.0.0.1:40326 - "POST /generate HTTP/1.1" 200 OK
[2026-03-10 09:15:38] The server is fired up and ready to roll!
[2026-03-10 09:16:02 TP0] Decode batch. #running-req: 1, #token: 1130, token usage: 0.00, cuda graph: True, \
gen throughput (token/s): 38.52, #queue-req: 0
[2026-03-10 09:16:04] INFO:     127.0.0.1:40330 - "POST /v1/chat/completions HTTP/1.1" 200 OK
"""

START = """\
[2026-03-10 09:14:02] server_args=ServerArgs(model_path='/models/Mistral-Small-4-119B-2603', port=30000, \
mem_fraction_static=0.75, max_running_requests=16, tp_size=1)
[2026-03-10 09:14:05 TP0] Init torch distributed begin.
[2026-03-10 09:14:06 TP0] Init torch distributed ends. mem usage=0.00 GB
"""

# rule id -> (the text the evidence line must contain, the log). The needle is the exact string the
# failure prints (SGLang, Triton ptxas, docker and nvidia-smi sources).
LOG_CASES: dict[str, tuple[str, str]] = {
    "sglang-alternating-roles": (
        "Conversation roles must alternate user/assistant/user/assistant",
        HEALTHY + """\
[2026-03-10 10:02:19] INFO:     127.0.0.1:51234 - "POST /v1/chat/completions HTTP/1.1" 200 OK
[2026-03-10 10:02:31] Error in request: Conversation roles must alternate user/assistant/user/assistant/...
Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/entrypoints/openai/serving_base.py", line 95, \
in handle_request
    adapted_request, processed_request = self._convert_to_internal_request(request, raw_request)
  File "/usr/local/lib/python3.12/dist-packages/jinja2/sandbox.py", line 394, in call
    return __context.call(__obj, *args, **kwargs)
jinja2.exceptions.TemplateError: Conversation roles must alternate user/assistant/user/assistant/...
[2026-03-10 10:02:31] INFO:     127.0.0.1:51234 - "POST /v1/chat/completions HTTP/1.1" 400 Bad Request
""",
    ),
    "sglang-capture-cuda-graph-failed": (
        "Capture cuda graph failed",
        START + """\
[2026-03-10 09:15:21 TP0] Memory pool end. avail mem=3.12 GB
[2026-03-10 09:15:22 TP0] Capture cuda graph begin. This can take up to several minutes. avail mem=3.02 GB
[2026-03-10 09:15:40 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/model_executor/cuda_graph_runner.py", line 377, in __init__
    self.capture()
RuntimeError: CUDA error: operation not permitted when stream is capturing

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/managers/scheduler.py", line 2960, in run_scheduler_process
    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)
Exception: Capture cuda graph failed: CUDA error: operation not permitted when stream is capturing
Possible solutions:
1. set --mem-fraction-static to a smaller value (e.g., 0.8 or 0.7)
2. set --cuda-graph-max-bs to a smaller value (e.g., 16)
3. disable torch compile by not using --enable-torch-compile
4. disable CUDA graph by --disable-cuda-graph. (Not recommended. Huge performance loss)

[2026-03-10 09:15:40] Received sigquit from a child process. It usually means the child failed.
""",
    ),
    "sglang-default-flashinfer-backend": (
        "Attention backend not set. Use flashinfer backend by default.",
        START + """\
[2026-03-10 09:14:06 TP0] Attention backend not set. Use flashinfer backend by default.
[2026-03-10 09:14:06 TP0] Load weight begin. avail mem=119.54 GB
Loading safetensors checkpoint shards: 100% Completed | 9/9 [01:12<00:00,  8.01s/it]
[2026-03-10 09:15:20 TP0] Load weight end. type=Mistral3ForConditionalGeneration, dtype=torch.bfloat16, \
avail mem=72.10 GB, mem usage=47.44 GB.
[2026-03-10 09:15:25 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/flashinfer/prefill.py", line 1408, in plan
    self._cached_module = get_batch_prefill_module(self._backend)(*args)
RuntimeError: BatchPrefillWithPagedKVCache failed: unspecified launch failure
""",
    ),
    "sglang-docker-rm-with-restart": (
        "Conflicting options: --restart and --rm",
        """\
$ docker run --rm --restart unless-stopped --gpus all --ipc=host -p 30000:30000 lmsysorg/sglang:spark \\
    python3 -m sglang.launch_server --model-path /models/Mistral-Small-4 --attention-backend triton
docker: Conflicting options: --restart and --rm.
See 'docker run --help'.
$ echo $?
125
""",
    ),
    "sglang-invalid-device-ordinal": (
        "invalid device ordinal",
        START + """\
[2026-03-10 09:14:06 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/managers/scheduler.py", line 2960, in run_scheduler_process
    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)
  File "/usr/local/lib/python3.12/dist-packages/torch/cuda/__init__.py", line 567, in set_device
    torch._C._cuda_setDevice(device)
torch.AcceleratorError: CUDA error: invalid device ordinal
CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.
For debugging consider passing CUDA_LAUNCH_BLOCKING=1
""",
    ),
    "sglang-kv-pool-empty": (
        "Not enough memory. Please try to increase --mem-fraction-static",
        START + """\
[2026-03-10 09:14:06 TP0] Load weight begin. avail mem=119.54 GB
[2026-03-10 09:15:20 TP0] Load weight end. type=Mistral3ForConditionalGeneration, dtype=torch.bfloat16, \
avail mem=52.10 GB, mem usage=67.44 GB.
[2026-03-10 09:15:20 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/model_executor/model_runner.py", line 1582, in \
init_memory_pool
    raise RuntimeError(
RuntimeError: Not enough memory. Please try to increase --mem-fraction-static. Current value: mem_fraction_static=0.4
[2026-03-10 09:15:20] Received sigquit from a child process. It usually means the child failed.
""",
    ),
    "sglang-no-kernel-image": (
        "no kernel image is available for execution on the device",
        START + """\
[2026-03-10 09:15:22 TP0] Capture cuda graph begin. This can take up to several minutes. avail mem=27.61 GB
[2026-03-10 09:15:23 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sgl_kernel/elementwise.py", line 42, in rmsnorm
    torch.ops.sgl_kernel.rmsnorm.default(out, input, weight, eps, enable_pdl)
  File "/usr/local/lib/python3.12/dist-packages/torch/_ops.py", line 829, in __call__
    return self._op(*args, **kwargs)
RuntimeError: CUDA error: no kernel image is available for execution on the device
Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.
""",
    ),
    "sglang-nvidia-smi-memory-na": (
        "memory.used [MiB]",
        """\
$ nvidia-smi --query-gpu=name,compute_cap,memory.used,memory.total --format=csv
name, compute_cap, memory.used [MiB], memory.total [MiB]
NVIDIA GB10, 12.1, [N/A], [N/A]
$ grep MemAvailable /proc/meminfo
MemAvailable:   50331648 kB
""",
    ),
    "sglang-oom-page-cache": (
        "CUDA out of memory",
        START + """\
[2026-03-10 09:14:06 TP0] Load weight begin. avail mem=119.54 GB
[2026-03-10 09:14:40 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/model_loader/loader.py", line 402, \
in load_weights_and_postprocess
    model.load_weights(weights)
  File "/usr/local/lib/python3.12/dist-packages/torch/utils/_device.py", line 104, in __torch_function__
    return func(*args, **kwargs)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 119.70 GiB \
of which 1.23 GiB is free. Including non-PyTorch memory, this process has 94.10 GiB memory in use.
[2026-03-10 09:14:40] Received sigquit from a child process. It usually means the child failed.
""",
    ),
    "sglang-orphan-workers": (
        "sglang::scheduler_TP0",
        """\
$ sudo systemctl stop sglang-mistral4.service
$ ps -eo pid,ppid,cmd | grep '[s]glang::'
  48213       1 sglang::scheduler_TP0
  48214       1 sglang::detokenizer
""",
    ),
    "sglang-piecewise-cuda-graph-failed": (
        "Piecewise CUDA Graph failed",
        START + """\
[2026-03-10 09:15:22 TP0] Capture piecewise CUDA graph begin. avail mem=27.61 GB
[2026-03-10 09:15:41 TP0] Piecewise CUDA Graph failed with error: CUDA error: CUBLAS_STATUS_INTERNAL_ERROR when \
calling `cublasGemmEx( handle, opa, opb, m, n, k, &falpha, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb)`
To work around this error, add --disable-piecewise-cuda-graph to your launch command.
[2026-03-10 09:15:41 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/model_executor/piecewise_cuda_graph_runner.py", line 260, \
in capture
    self.capture_one_batch_size(num_tokens)
RuntimeError: CUDA error: CUBLAS_STATUS_INTERNAL_ERROR
""",
    ),
    "sglang-port-in-use": (
        "is not available in 30 seconds",
        """\
[2026-03-10 09:13:30] server_args=ServerArgs(model_path='/models/Mistral-Small-4-119B-2603', port=30000)
[2026-03-10 09:13:31] port 30000 is in use. Waiting for 15 seconds for port to be available.
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/usr/local/lib/python3.12/dist-packages/sglang/launch_server.py", line 14, in <module>
    launch_server(server_args)
  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/utils/common.py", line 788, in wait_port_available
    raise ValueError(
ValueError: port at 30000 is not available in 30 seconds. port is used by a process already. \
process.name()='python3' process.cmdline()=['python3', '-m', 'sglang.launch_server'] pid=48190
""",
    ),
    "sglang-ptxas-sm121a": (
        "ptxas fatal   : Value 'sm_121a' is not defined for option 'gpu-name'",
        START + """\
[2026-03-10 09:15:22 TP0] Capture cuda graph begin. This can take up to several minutes. avail mem=27.61 GB
[2026-03-10 09:15:30 TP0] Scheduler hit an exception: Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/triton/backends/nvidia/compiler.py", line 448, in make_cubin
    raise PTXASError(f"{error}\\n{log}")
triton.runtime.errors.PTXASError: PTXAS error: Internal Triton PTX codegen error
`ptxas` stderr:
ptxas fatal   : Value 'sm_121a' is not defined for option 'gpu-name'

Repro command: /usr/local/lib/python3.12/dist-packages/triton/backends/nvidia/bin/ptxas -lineinfo -v \
--gpu-name sm_121a /tmp/tmpq1x8k2ab.ptx -o /tmp/tmpq1x8k2ab.ptx.o
""",
    ),
    "sglang-restart-oom-no-cooldown": (
        "NV_ERR_NO_MEMORY",
        """\
Mar 10 09:20:01 spark systemd[1]: Stopped sglang-mistral4.service - SGLang Mistral Small 4.
Mar 10 09:20:03 spark systemd[1]: Started sglang-mistral4.service - SGLang Mistral Small 4.
Mar 10 09:22:38 spark python3[51234]: [2026-03-10 09:22:38] The server is fired up and ready to roll!
Mar 10 09:22:41 spark python3[51234]: [2026-03-10 09:22:41 TP0] Prefill batch. #new-seq: 1, #new-token: 8192, \
#cached-token: 0, token usage: 0.41, #running-req: 0, #queue-req: 0
Mar 10 09:22:42 spark kernel: NVRM: nvAssertOkFailedNoLog: Assertion failed: Out of memory [NV_ERR_NO_MEMORY] \
(0x00000051) returned from _memmgrAllocInternal(pGpu, pMemoryManager, pFbAllocInfo) @ mem_mgr.c:1710
Mar 10 09:22:42 spark python3[51234]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB.
Mar 10 09:22:43 spark systemd[1]: sglang-mistral4.service: Main process exited, code=exited, status=1/FAILURE
""",
    ),
}

# rule id -> a launch command that triggers it (and nothing more severe).
COMMAND_CASES: dict[str, str] = {
    "sglang-cuda-graph-disabled": (
        "python -m sglang.launch_server --model-path /models/Mistral-Small-4-119B-2603 --attention-backend triton "
        "--mem-fraction-static 0.75 --max-running-requests 16 --port 30000 --disable-cuda-graph"
    ),
    "sglang-cuda-graph-max-bs-high": (
        "python3 -m sglang.launch_server --model-path /models/Mistral-Small-4-119B-2603 --attention-backend=triton "
        "--mem-fraction-static=0.75 --cuda-graph-max-bs=64 --max-running-requests 16"
    ),
    "sglang-docker-rm-with-restart": (
        "docker run --rm -d --restart unless-stopped --name sglang --gpus all --ipc=host -p 30000:30000 "
        "-v /srv/models:/models lmsysorg/sglang:spark python3 -m sglang.launch_server "
        "--model-path /models/Mistral-Small-4 --attention-backend triton --mem-fraction-static 0.75"
    ),
    "sglang-eagle-without-spec-v2": """\
[Service]
Environment="TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas"
ExecStart=/opt/sglang/venv/bin/python -m sglang.launch_server \\
    --model-path /models/Mistral-Small-4-119B-2603 \\
    --attention-backend triton --mem-fraction-static 0.75 \\
    --speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-eagle-topk 1 \\
    --max-running-requests 16 --port 30000
""",
    "sglang-flashinfer-on-gb10": (
        "python -m sglang.launch_server --model-path /models/Mistral-Small-4-119B-2603 "
        "--attention-backend flashinfer --mem-fraction-static 0.75 --port 30000"
    ),
    "sglang-image-without-sm121a": (
        "docker run -d --name sglang --gpus all --ipc=host --shm-size 32g -p 30000:30000 "
        "-v /srv/models:/models lmsysorg/sglang:latest python3 -m sglang.launch_server "
        "--model-path /models/Mistral-Small-4 --attention-backend triton --mem-fraction-static 0.75"
    ),
    "sglang-max-running-requests-high": (
        "python -m sglang.launch_server --model-path /models/m --attention-backend triton "
        "--mem-fraction-static 0.75 --max-running-requests 64"
    ),
    "sglang-mem-fraction-too-high": (
        "SGLANG_ENABLE_SPEC_V2=True python -m sglang.launch_server --model-path /models/m "
        "--attention-backend triton --mem-fraction-static 0.9"
    ),
    "sglang-tensor-parallel-single-gpu": (
        "python -m sglang.launch_server --model-path /models/m --attention-backend triton "
        "--mem-fraction-static 0.75 --tp-size 2"
    ),
}

BASELINE_COMMAND = (
    "python -m sglang.launch_server --model-path /models/Mistral-Small-4-119B-2603 --attention-backend triton "
    "--mem-fraction-static 0.75 --cuda-graph-max-bs 16 --max-running-requests 16 --port 30000"
)
EXPECTED_VERDICT = {"high": "invalid", "medium": "valid_with_warnings", "low": "valid_with_warnings"}


def _check_report(report: DiagnosisReport, rule: KBEntry) -> None:
    ids = [f.rule_id for f in report.findings]
    assert rule.id in ids, ids
    assert report.findings[0].rule_id == rule.id or report.findings[0].severity == rule.severity, ids
    assert report.verdict == EXPECTED_VERDICT[rule.severity]
    finding = report.findings[ids.index(rule.id)]
    assert finding.severity == rule.severity and finding.title == rule.title
    assert finding.fix == rule.data.fix and finding.problem == rule.data.explanation
    if rule.data.commands:
        assert rule.data.commands[0] in report.apply
    assert finding.sources == [f"{BLOG}{slug}/" for slug in rule.data.articles]
    assert finding.sources, "every shipped rule cites at least one published article"


def test_every_rule_has_a_case():
    missing = sorted(set(RULES) - set(LOG_CASES) - set(COMMAND_CASES))
    assert not missing, f"diagnosis rules without a test excerpt or command: {missing}"
    assert len(RULES) >= 22
    for rule_id in LOG_CASES:
        assert RULES[rule_id].data.log, f"{rule_id} has no log matcher"
    for rule_id in COMMAND_CASES:
        data = RULES[rule_id].data
        assert data.flags or data.env or data.image, f"{rule_id} has no flag/env/image matcher"


def test_cited_articles_exist_in_the_shipped_corpus():
    for rule in RULES.values():
        assert set(rule.data.articles) <= CORPUS_SLUGS, (rule.id, set(rule.data.articles) - CORPUS_SLUGS)


@pytest.mark.parametrize("rule_id", sorted(LOG_CASES))
def test_log_rule_matches_real_text(diagnoser: Diagnoser, rule_id: str):
    needle, log = LOG_CASES[rule_id]
    rule = RULES[rule_id]
    lines = log.splitlines()
    expected_line = next(i for i, line in enumerate(lines, 1) if needle in line)
    report = diagnoser.diagnose(error_log=log)
    _check_report(report, rule)
    finding = next(f for f in report.findings if f.rule_id == rule_id)
    assert finding.line == expected_line
    assert finding.evidence == f"line {expected_line}: {lines[expected_line - 1].strip()[:300]}"
    assert needle in finding.evidence


@pytest.mark.parametrize("rule_id", sorted(COMMAND_CASES))
def test_setup_rule_matches_launch_command(diagnoser: Diagnoser, rule_id: str):
    rule = RULES[rule_id]
    report = diagnoser.diagnose(launch_command=COMMAND_CASES[rule_id])
    _check_report(report, rule)
    finding = next(f for f in report.findings if f.rule_id == rule_id)
    assert finding.line is None and finding.evidence
    assert report.unknown_flags == []  # realistic commands use real flags (flag_catalog, when shipped)
    assert report.launch["kind"] in ("python", "docker")
    assert report.baseline is not None and report.baseline.id == "sglang-gb10-baseline"


def test_article_url_callback_decides_the_sources():
    asked: list[str] = []

    def only_one(slug: str) -> str | None:
        asked.append(slug)
        return "https://example.net/triton" if slug == "flashinfer-vs-triton-gb10" else None

    report = Diagnoser(KB, only_one).diagnose(launch_command=COMMAND_CASES["sglang-flashinfer-on-gb10"])
    assert report.findings[0].sources == ["https://example.net/triton"]
    assert set(RULES["sglang-flashinfer-on-gb10"].data.articles) <= set(asked)
    assert Diagnoser(KB).diagnose(launch_command=COMMAND_CASES["sglang-flashinfer-on-gb10"]).findings[0].sources == []


# ---- negative cases ---------------------------------------------------------------------------


def test_healthy_startup_log_is_unknown_without_findings(diagnoser: Diagnoser):
    report = diagnoser.diagnose(error_log=HEALTHY)
    assert report.verdict == "unknown"
    assert report.findings == [] and report.apply == []


def test_gb10_baseline_command_is_valid(diagnoser: Diagnoser):
    report = diagnoser.diagnose(launch_command=BASELINE_COMMAND, env={"SGLANG_ENABLE_SPEC_V2": "True"})
    assert report.verdict == "valid"
    assert report.findings == [] and report.apply == []
    assert report.baseline is not None
    assert report.baseline.flags["--attention-backend"] == "triton"
    assert report.baseline.flags["--mem-fraction-static"] == "0.75"
    assert report.baseline.flags["--max-running-requests"] == "16"
    assert report.launch["flags"]["--cuda-graph-max-bs"] == "16"


def test_baseline_healthy_log_and_command_together(diagnoser: Diagnoser):
    report = diagnoser.diagnose(error_log=HEALTHY, launch_command=BASELINE_COMMAND)
    assert report.findings == []
    assert report.verdict == "unknown"  # a log that matched nothing is not proof of health


@pytest.mark.parametrize("hardware", ["H100", "NVIDIA H100 80GB HBM3", "RTX 4090"])
def test_flashinfer_is_fine_on_other_hardware(diagnoser: Diagnoser, hardware: str):
    report = diagnoser.diagnose(launch_command=COMMAND_CASES["sglang-flashinfer-on-gb10"], hardware=hardware)
    assert report.findings == [] and report.verdict == "valid"
    assert report.hardware == hardware
    assert report.baseline is None


@pytest.mark.parametrize("hardware", ["GB10", "DGX Spark", "nvidia dgx spark (sm_121)", "  "])
def test_gb10_names_and_the_default_hardware(diagnoser: Diagnoser, hardware: str):
    report = diagnoser.diagnose(launch_command=COMMAND_CASES["sglang-flashinfer-on-gb10"], hardware=hardware)
    assert [f.rule_id for f in report.findings] == ["sglang-flashinfer-on-gb10"]


@pytest.mark.parametrize(("value", "flagged"), [("0.75", False), ("0.85", False), ("0.850", False),
                                                ("0.86", True), ("0.9", True), ("1", True), ("high", False)])
def test_mem_fraction_threshold(diagnoser: Diagnoser, value: str, flagged: bool):
    report = diagnoser.diagnose(launch_command=f"python -m sglang.launch_server --attention-backend triton "
                                               f"--mem-fraction-static {value}")
    assert ("sglang-mem-fraction-too-high" in [f.rule_id for f in report.findings]) is flagged
    assert report.verdict == ("invalid" if flagged else "valid")


EAGLE = ("python -m sglang.launch_server --model-path /models/m --attention-backend triton "
         "--mem-fraction-static 0.75 --speculative-algorithm EAGLE")


@pytest.mark.parametrize("how", ["prefix", "export", "env-dict", "env-lines", "systemd", "docker"])
def test_eagle_with_spec_v2_is_not_flagged(diagnoser: Diagnoser, how: str):
    kwargs: dict = {"launch_command": EAGLE}
    if how == "prefix":
        kwargs["launch_command"] = "SGLANG_ENABLE_SPEC_V2=True " + EAGLE
    elif how == "export":
        kwargs["launch_command"] = "export SGLANG_ENABLE_SPEC_V2=True\n" + EAGLE
    elif how == "env-dict":
        kwargs["env"] = {"SGLANG_ENABLE_SPEC_V2": "True"}
    elif how == "env-lines":
        kwargs["env"] = "export HF_HOME=/srv/hf\nEnvironment=\"SGLANG_ENABLE_SPEC_V2=True\""
    elif how == "systemd":
        kwargs["launch_command"] = 'Environment="SGLANG_ENABLE_SPEC_V2=True"\nExecStart=/usr/bin/' + EAGLE
    else:
        kwargs["launch_command"] = ("docker run -d --gpus all -e SGLANG_ENABLE_SPEC_V2=True lmsysorg/sglang:spark "
                                    + EAGLE.replace("python", "python3"))
    report = diagnoser.diagnose(**kwargs)
    assert report.findings == [], [f.rule_id for f in report.findings]
    assert report.verdict == "valid"


@pytest.mark.parametrize("value", [None, "False", "0"])
def test_eagle_without_spec_v2_is_flagged(diagnoser: Diagnoser, value: str | None):
    env = {} if value is None else {"SGLANG_ENABLE_SPEC_V2": value}
    report = diagnoser.diagnose(launch_command=EAGLE, env=env)
    assert [f.rule_id for f in report.findings] == ["sglang-eagle-without-spec-v2"]
    assert report.findings[0].evidence.endswith("SGLANG_ENABLE_SPEC_V2 not set" if value is None
                                                else f"SGLANG_ENABLE_SPEC_V2={value}")


@pytest.mark.parametrize("value", ["1", "true"])
def test_eagle_with_spec_v2_spelled_as_sglang_accepts(diagnoser: Diagnoser, value: str):
    report = diagnoser.diagnose(launch_command=EAGLE, env={"SGLANG_ENABLE_SPEC_V2": value})
    assert report.findings == []


@pytest.mark.parametrize("image", ["lmsysorg/sglang:latest", "lmsysorg/sglang", "docker.io/lmsysorg/sglang:v0.4.10",
                                   "lmsysorg/sglang:v0.5.4", "latest", "v0.5.4"])
def test_image_without_cuda13_is_flagged(diagnoser: Diagnoser, image: str):
    report = diagnoser.diagnose(image=image)
    assert [f.rule_id for f in report.findings] == ["sglang-image-without-sm121a"]
    assert report.findings[0].evidence == f"image {image}"


@pytest.mark.parametrize("image", ["lmsysorg/sglang:spark", "lmsysorg/sglang:latest-cu130",
                                   "lmsysorg/sglang:v0.5.4-cu130", "latest-cu130", "spark"])
def test_cuda13_images_are_not_flagged(diagnoser: Diagnoser, image: str):
    report = diagnoser.diagnose(image=image)
    assert report.findings == [] and report.verdict == "valid"


def test_image_rule_respects_hardware(diagnoser: Diagnoser):
    assert diagnoser.diagnose(image="lmsysorg/sglang:latest", hardware="H100").findings == []


# ---- ranking -----------------------------------------------------------------------------------


def test_high_failure_ranks_before_earlier_medium_one(diagnoser: Diagnoser):
    log = "\n".join([
        "[2026-03-10 09:13:30] server_args=ServerArgs(model_path='/models/m', port=30000)",
        "[2026-03-10 09:13:31] port 30000 is in use. Waiting for 15 seconds for port to be available.",
        "ValueError: port at 30000 is not available in 30 seconds. port is used by a process already.",
        "[2026-03-10 09:14:02] server_args=ServerArgs(model_path='/models/m', port=30001)",
        "[2026-03-10 09:14:05 TP0] Init torch distributed begin.",
        "[2026-03-10 09:14:06 TP0] Load weight begin. avail mem=119.54 GB",
        "[2026-03-10 09:15:20 TP0] Load weight end. avail mem=52.10 GB, mem usage=67.44 GB.",
        "Traceback (most recent call last):",
        '  File "/usr/local/lib/python3.12/dist-packages/sglang/srt/model_executor/model_runner.py", line 1582',
        "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
    ])
    report = diagnoser.diagnose(error_log=log)
    assert [(f.rule_id, f.line) for f in report.findings] == [("sglang-kv-pool-empty", 10),
                                                              ("sglang-port-in-use", 3)]
    assert report.verdict == "invalid"
    assert report.apply[0] == RULES["sglang-kv-pool-empty"].data.commands[0]


def test_log_findings_rank_before_setup_findings_of_same_severity(diagnoser: Diagnoser):
    _, log = LOG_CASES["sglang-kv-pool-empty"]
    report = diagnoser.diagnose(error_log=log, launch_command=COMMAND_CASES["sglang-flashinfer-on-gb10"])
    assert [f.rule_id for f in report.findings] == ["sglang-kv-pool-empty", "sglang-flashinfer-on-gb10"]


def test_severity_orders_mixed_setup_findings(diagnoser: Diagnoser):
    report = diagnoser.diagnose(launch_command=(
        "docker run --rm --restart always --gpus all lmsysorg/sglang:latest python3 -m sglang.launch_server "
        "--max-running-requests 64 --cuda-graph-max-bs 128 --attention-backend flashinfer "
        "--mem-fraction-static 0.95 --disable-cuda-graph --speculative-algorithm EAGLE"))
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, key=["high", "medium", "low"].index)
    assert {f.rule_id for f in report.findings} == {
        "sglang-docker-rm-with-restart", "sglang-image-without-sm121a", "sglang-max-running-requests-high",
        "sglang-cuda-graph-max-bs-high", "sglang-flashinfer-on-gb10", "sglang-mem-fraction-too-high",
        "sglang-cuda-graph-disabled", "sglang-eagle-without-spec-v2"}
    assert len(report.apply) == len(set(report.apply))


# ---- MVP arguments ----------------------------------------------------------------------------

MVP_ERROR = "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static."


def test_mvp_flags_mapping():
    assert mvp_flags() == {}
    assert mvp_flags("flashinfer", 0.9, 64) == {"--attention-backend": "flashinfer",
                                                "--mem-fraction-static": "0.9", "--cuda-graph-max-bs": "64"}
    assert mvp_flags(mem_fraction=0.0, cuda_graph_max_bs=0) == {"--mem-fraction-static": "0.0",
                                                                "--cuda-graph-max-bs": "0"}


def test_mvp_arguments_match_the_equivalent_launch_command(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, diagnostics={"hardware": "GB10 (DGX Spark)"})
    service = DiagnosticsService(settings, KB, article_url)
    mvp = service.run(attention_backend="flashinfer", mem_fraction=0.9, cuda_graph_max_bs=64,
                      image_tag="lmsysorg/sglang:latest", error_message=MVP_ERROR)
    command = service.run(
        launch_command=("docker run --gpus all --ipc=host -p 30000:30000 lmsysorg/sglang:latest "
                        "python3 -m sglang.launch_server --attention-backend flashinfer "
                        "--mem-fraction-static 0.9 --cuda-graph-max-bs 64"),
        error_log=MVP_ERROR)

    def key(report: DiagnosisReport) -> list[tuple]:
        return [(f.rule_id, f.severity, f.evidence, f.line, tuple(f.sources)) for f in report.findings]

    assert key(mvp) == key(command)
    assert {f.rule_id for f in mvp.findings} == {"sglang-kv-pool-empty", "sglang-flashinfer-on-gb10",
                                                 "sglang-mem-fraction-too-high", "sglang-image-without-sm121a",
                                                 "sglang-cuda-graph-max-bs-high"}
    assert mvp.verdict == command.verdict == "invalid"
    assert mvp.apply == command.apply
    assert mvp.baseline == command.baseline
    # error_message is appended to error_log
    both = service.run(error_log=LOG_CASES["sglang-port-in-use"][1], error_message=MVP_ERROR)
    assert {f.rule_id for f in both.findings} == {"sglang-port-in-use", "sglang-kv-pool-empty"}


def test_launch_command_overrides_mvp_flags(diagnoser: Diagnoser):
    report = diagnoser.diagnose(launch_command=BASELINE_COMMAND, extra_flags=mvp_flags("flashinfer"))
    assert report.findings == []


# ---- garbage, size limits, empty input --------------------------------------------------------


def test_random_bytes_never_raise(diagnoser: Diagnoser):
    rng = random.Random(1234)
    for size in (1, 17, 4096, 200_000):
        text = rng.randbytes(size).decode("utf-8", "replace")
        for kwargs in ({"error_log": text}, {"launch_command": text}, {"env": text}, {"image": text[:300]},
                       {"hardware": text[:200]}):
            report = diagnoser.diagnose(**kwargs)
            assert report.verdict in ("unknown", "valid"), kwargs.keys()


def test_binary_looking_text(diagnoser: Diagnoser):
    blob = "\x7fELF\x02\x01\x01\x00\x00\x00" + "\x00" * 64 + "\ufffd\ufffd\x1b[31m\r\n" * 100 + "\x00sglang::\x00"
    report = diagnoser.diagnose(error_log=blob, launch_command=blob, env=blob)
    assert report.findings == []
    assert report.verdict in ("unknown", "valid")


def test_one_megabyte_log_with_failure_at_the_end(diagnoser: Diagnoser):
    failure = "RuntimeError: CUDA error: no kernel image is available for execution on the device"
    filler = ("[2026-03-10 09:16:02 TP0] Decode batch. #running-req: 1, #token: 1130, token usage: 0.00, "
              "cuda graph: True, gen throughput (token/s): 38.52, #queue-req: 0\n")
    count = (MAX_LOG_BYTES - len(failure)) // len(filler)
    log = filler * count + failure
    assert len(log.encode()) <= MAX_LOG_BYTES
    report = diagnoser.diagnose(error_log=log)
    assert [f.rule_id for f in report.findings] == ["sglang-no-kernel-image"]
    assert report.findings[0].line == count + 1
    assert report.findings[0].evidence == f"line {count + 1}: {failure}"


def test_over_one_megabyte_is_refused(diagnoser: Diagnoser):
    log = "x" * MAX_LOG_BYTES + "\n"
    with pytest.raises(DiagnoseInputError, match="1024 KB"):
        diagnoser.diagnose(error_log=log)
    # multi-byte characters count as bytes, not characters
    with pytest.raises(DiagnoseInputError):
        diagnoser.diagnose(error_log="é" * (MAX_LOG_BYTES // 2 + 1))
    assert diagnoser.diagnose(error_log="é" * (MAX_LOG_BYTES // 2)).verdict == "unknown"


def test_empty_and_blank_inputs_are_unknown(diagnoser: Diagnoser):
    for kwargs in ({}, {"error_log": ""}, {"error_log": "   \n\t\n"}, {"launch_command": ""}, {"env": ""},
                   {"env": {}}, {"image": ""}, {"hardware": ""},
                   {"error_log": "", "launch_command": "", "env": "", "hardware": "", "image": ""}):
        report = diagnoser.diagnose(**kwargs)
        assert report.verdict == "unknown", kwargs
        assert report.findings == [] and report.apply == []
        assert report.hardware == "GB10 (DGX Spark)"


def test_command_without_flags_is_unknown_with_a_note(diagnoser: Diagnoser):
    report = diagnoser.diagnose(launch_command="echo hello world")
    assert report.verdict == "unknown"
    assert any("no sglang.launch_server" in note for note in report.notes)


def test_no_rules_without_a_kb():
    report = Diagnoser(KnowledgeBase()).diagnose(error_log=LOG_CASES["sglang-kv-pool-empty"][1],
                                                 launch_command=COMMAND_CASES["sglang-flashinfer-on-gb10"])
    assert report.findings == [] and report.baseline is None


# ---- regressions: cases found while writing these tests, fixed in the KB and the engine ----------


def test_default_flashinfer_current_wording(diagnoser: Diagnoser):
    log = START + ("[2026-02-13 10:07:35] INFO server_args.py:1813: Attention backend not specified. "
                   "Use flashinfer backend by default.\n")
    assert "sglang-default-flashinfer-backend" in [f.rule_id for f in diagnoser.diagnose(error_log=log).findings]


def test_default_flashinfer_log_is_fine_on_h100(diagnoser: Diagnoser):
    log = START + "[2026-03-10 09:14:06 TP0] Attention backend not set. Use flashinfer backend by default.\n"
    report = diagnoser.diagnose(error_log=log, hardware="NVIDIA H100 80GB HBM3")
    assert report.findings == []


def test_docker_rm_restart_current_docker_wording(diagnoser: Diagnoser):
    log = "docker: conflicting options: cannot specify both --restart and --rm.\nSee 'docker run --help'.\n"
    assert [f.rule_id for f in diagnoser.diagnose(error_log=log).findings] == ["sglang-docker-rm-with-restart"]


def test_orphan_workers_after_blank_line_quotes_the_process_line(diagnoser: Diagnoser):
    log = "$ pgrep -af 'sglang::'\n\n48213 sglang::scheduler_TP0\n48214 sglang::detokenizer\n"
    finding = diagnoser.diagnose(error_log=log).findings[0]
    assert (finding.line, finding.evidence) == (3, "line 3: 48213 sglang::scheduler_TP0")


def test_tensor_parallel_canonical_flag(diagnoser: Diagnoser):
    report = diagnoser.diagnose(launch_command="python -m sglang.launch_server --model-path m "
                                               "--attention-backend triton --tensor-parallel-size 2")
    assert [f.rule_id for f in report.findings] == ["sglang-tensor-parallel-single-gpu"]
