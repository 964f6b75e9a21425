"""``parse_launch``: SGLang launch commands as operators write them (shell, docker run, systemd units),
and the unknown-flag report, which needs a ``flag_catalog`` KB entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovereign_mcp.diagnostics.engine import Diagnoser
from sovereign_mcp.diagnostics.launch import LaunchSpec, parse_env_lines, parse_launch
from sovereign_mcp.kb.loader import load_kb

REPO = Path(__file__).resolve().parents[2]


def test_python_module_with_values_and_switches():
    spec = parse_launch("python -m sglang.launch_server --model-path /models/Mistral-Small-4 --trust-remote-code "
                        "--attention-backend triton --mem-fraction-static 0.75 --enable-metrics")
    assert spec.kind == "python"
    assert spec.flags == {"--model-path": "/models/Mistral-Small-4", "--trust-remote-code": None,
                          "--attention-backend": "triton", "--mem-fraction-static": "0.75",
                          "--enable-metrics": None}
    assert spec.env == {} and spec.docker_flags == {} and spec.image is None and spec.problems == []


def test_python3_with_equals_values():
    spec = parse_launch("python3 -m sglang.launch_server --model-path=/models/m --attention-backend=triton "
                        "--mem-fraction-static=0.75 --chunked-prefill-size=8192 --json-model-override-args="
                        "'{\"rope_scaling\": {\"factor\": 2}}' --disable-piecewise-cuda-graph")
    assert spec.kind == "python"
    assert spec.flags["--attention-backend"] == "triton"
    assert spec.flags["--mem-fraction-static"] == "0.75"
    assert spec.flags["--chunked-prefill-size"] == "8192"
    assert spec.flags["--json-model-override-args"] == '{"rope_scaling": {"factor": 2}}'
    assert spec.flags["--disable-piecewise-cuda-graph"] is None


@pytest.mark.parametrize("launcher", ["/opt/sglang/venv/bin/python -m sglang.launch_server",
                                      "python sglang/launch_server.py", "python3 launch_server.py",
                                      "uv run python -m sglang.launch_server"])
def test_launcher_spellings(launcher: str):
    spec = parse_launch(f"{launcher} --port 30000 --tp-size 1")
    assert spec.kind == "python"
    assert spec.flags == {"--port": "30000", "--tp-size": "1"}


def test_bare_flags_are_read_as_sglang_flags():
    spec = parse_launch("--attention-backend triton --mem-fraction-static 0.75 --disable-cuda-graph")
    assert spec.kind == "sglang"
    assert spec.flags == {"--attention-backend": "triton", "--mem-fraction-static": "0.75",
                          "--disable-cuda-graph": None}


def test_env_assignment_prefixes():
    spec = parse_launch("CUDA_VISIBLE_DEVICES=0 SGLANG_ENABLE_SPEC_V2=True TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas "
                        "python3 -m sglang.launch_server --speculative-algorithm EAGLE")
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "0", "SGLANG_ENABLE_SPEC_V2": "True",
                        "TRITON_PTXAS_PATH": "/usr/local/cuda/bin/ptxas"}
    assert spec.flags == {"--speculative-algorithm": "EAGLE"}


@pytest.mark.parametrize("prefix", ["env SGLANG_ENABLE_SPEC_V2=True", "sudo env SGLANG_ENABLE_SPEC_V2=True",
                                    "SGLANG_ENABLE_SPEC_V2=True exec", "nohup env SGLANG_ENABLE_SPEC_V2=True",
                                    "sudo -E SGLANG_ENABLE_SPEC_V2=True"])
def test_env_and_sudo_prefixes(prefix: str):
    spec = parse_launch(f"{prefix} python -m sglang.launch_server --model-path /m --attention-backend triton")
    assert spec.kind == "python"
    assert spec.flags == {"--model-path": "/m", "--attention-backend": "triton"}
    if "-E" not in prefix:  # 'sudo -E' stops the prefix scan; the flags are still found
        assert spec.env == {"SGLANG_ENABLE_SPEC_V2": "True"}


DOCKER = (
    "docker run --rm -it --name sglang --gpus all --ipc=host --shm-size 32g -p 30000:30000 "
    "-v /srv/models:/models -v /srv/hf:/root/.cache/huggingface -e SGLANG_ENABLE_SPEC_V2=True "
    "--env TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas --env=HF_HUB_OFFLINE=1 --restart=unless-stopped "
    "lmsysorg/sglang:spark python3 -m sglang.launch_server --model-path /models/Mistral-Small-4 "
    "--attention-backend triton --mem-fraction-static 0.75 --host 0.0.0.0 --port 30000"
)


def test_docker_run_with_container_command():
    spec = parse_launch(DOCKER)
    assert spec.kind == "docker"
    assert spec.image == "lmsysorg/sglang:spark"
    assert spec.docker_flags == {"--rm": None, "-it": None, "--name": "sglang", "--gpus": "all", "--ipc": "host",
                                 "--shm-size": "32g", "-p": "30000:30000", "-v": "/srv/hf:/root/.cache/huggingface",
                                 "--restart": "unless-stopped"}
    assert spec.env == {"SGLANG_ENABLE_SPEC_V2": "True", "TRITON_PTXAS_PATH": "/usr/local/cuda/bin/ptxas",
                        "HF_HUB_OFFLINE": "1"}
    assert spec.flags == {"--model-path": "/models/Mistral-Small-4", "--attention-backend": "triton",
                          "--mem-fraction-static": "0.75", "--host": "0.0.0.0", "--port": "30000"}
    assert spec.all_flags["--rm"] is None and spec.all_flags["--port"] == "30000"
    assert spec.problems == []


@pytest.mark.parametrize("head", ["sudo docker run", "/usr/bin/docker run", "docker container run"])
def test_docker_spellings(head: str):
    spec = parse_launch(f"{head} -d --gpus=all lmsysorg/sglang:latest-cu130 python3 -m sglang.launch_server --port 1")
    assert spec.kind == "docker"
    assert spec.image == "lmsysorg/sglang:latest-cu130"
    assert spec.docker_flags == {"-d": None, "--gpus": "all"}
    assert spec.flags == {"--port": "1"}


def test_docker_run_image_only_and_without_image():
    only = parse_launch("docker run --rm --restart always lmsysorg/sglang:spark")
    assert (only.kind, only.image, only.flags) == ("docker", "lmsysorg/sglang:spark", {})
    assert only.docker_flags == {"--rm": None, "--restart": "always"}
    missing = parse_launch("docker run --rm --gpus all")
    assert missing.kind == "docker" and missing.image is None
    assert any("without an image" in p for p in missing.problems)


def test_systemd_exec_start_with_continuations_and_environment():
    unit = """\
[Service]
Environment="SGLANG_ENABLE_SPEC_V2=True" "HF_HOME=/srv/hf cache"
Environment=TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas
# the model server
ExecStart=/opt/sglang/venv/bin/python -m sglang.launch_server \\
    --model-path /models/Mistral-Small-4-119B-2603 \\
    --attention-backend triton \\
    --mem-fraction-static 0.75 \\
    --max-running-requests 16  # stable for weeks
"""
    spec = parse_launch(unit)
    assert spec.kind == "python"
    assert spec.env == {"SGLANG_ENABLE_SPEC_V2": "True", "HF_HOME": "/srv/hf cache",
                        "TRITON_PTXAS_PATH": "/usr/local/cuda/bin/ptxas"}
    assert spec.flags == {"--model-path": "/models/Mistral-Small-4-119B-2603", "--attention-backend": "triton",
                          "--mem-fraction-static": "0.75", "--max-running-requests": "16"}
    assert spec.problems == []


def test_systemd_exec_start_prefix_characters_and_crlf():
    spec = parse_launch("ExecStart=-/usr/bin/docker run --rm lmsysorg/sglang:spark \\\r\n"
                        "  python3 -m sglang.launch_server --attention-backend triton\r\n")
    assert spec.kind == "docker" and spec.image == "lmsysorg/sglang:spark"
    assert spec.flags == {"--attention-backend": "triton"}


def test_export_lines_then_command():
    spec = parse_launch("export SGLANG_ENABLE_SPEC_V2=True\nexport A=1 B='two words'\n"
                        "python3 -m sglang.launch_server --speculative-algorithm EAGLE")
    assert spec.env == {"SGLANG_ENABLE_SPEC_V2": "True", "A": "1", "B": "two words"}
    assert spec.flags == {"--speculative-algorithm": "EAGLE"}


def test_lone_assignment_line_is_environment():
    spec = parse_launch("SGLANG_ENABLE_SPEC_V2=True\npython -m sglang.launch_server --port 30000")
    assert spec.env == {"SGLANG_ENABLE_SPEC_V2": "True"}
    assert spec.flags == {"--port": "30000"}


@pytest.mark.parametrize("text", ['python -m sglang.launch_server --model-path "/models/unterminated --port 1',
                                  "docker run -e 'A=1 lmsysorg/sglang:spark", "ExecStart=python -m x '"])
def test_unbalanced_quotes_are_a_problem_not_an_exception(text: str):
    spec = parse_launch(text)
    assert any("could not tokenise" in p for p in spec.problems)


def test_unbalanced_quotes_still_read_word_by_word():
    spec = parse_launch('python -m sglang.launch_server --attention-backend "flashinfer --mem-fraction-static 0.9')
    assert spec.flags["--attention-backend"] == '"flashinfer'
    assert spec.flags["--mem-fraction-static"] == "0.9"


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "# only a comment", "[Service]"])
def test_empty_input(text: str):
    assert parse_launch(text) == LaunchSpec()


@pytest.mark.parametrize("text", ["echo hello", "systemctl restart sglang-mistral4.service", "ls -la /models"])
def test_line_without_flags(text: str):
    spec = parse_launch(text)
    assert spec.kind == "unknown" and spec.flags == {}
    assert spec.problems == ["no sglang.launch_server command and no --flags found"]


def test_garbage_never_raises():
    for text in ["\x00\x01\x02", "\\", "\\\n", "=", "==", "--", "-- --", "docker", "docker run", "docker run run",
                 "Environment=", "ExecStart=", "export", "export =", '"', "'" * 3, "a=b=c=d", "\ufffd" * 50]:
        spec = parse_launch(text)
        assert isinstance(spec, LaunchSpec)


def test_parse_env_lines():
    text = ('export SGLANG_ENABLE_SPEC_V2=True\nEnvironment="HF_HOME=/srv/hf" "X=1"\nPLAIN=value\n'
            "not an assignment\n# COMMENTED=1\nQUOTED='a b'")
    assert parse_env_lines(text) == {"SGLANG_ENABLE_SPEC_V2": "True", "HF_HOME": "/srv/hf", "X": "1",
                                     "PLAIN": "value", "QUOTED": "a b"}
    assert parse_env_lines("") == {}
    assert parse_env_lines("unbalanced='x") == {"unbalanced": "'x"}  # word-by-word fallback


def test_report_exposes_the_parsed_launch():
    diagnoser = Diagnoser(load_kb([REPO / "kb"]))
    report = diagnoser.diagnose(launch_command=DOCKER)
    assert report.launch == {"kind": "docker", "flags": parse_launch(DOCKER).flags,
                             "docker": parse_launch(DOCKER).docker_flags, "env": parse_launch(DOCKER).env,
                             "image": "lmsysorg/sglang:spark"}
    # --rm with --restart is the one problem in DOCKER
    assert [f.rule_id for f in report.findings] == ["sglang-docker-rm-with-restart"]
    assert diagnoser.diagnose(error_log="x").launch == {}


# ---- unknown flags (flag_catalog) -------------------------------------------------------------

CATALOG = """\
---
id: sglang-flag-catalog
type: flag_catalog
scope: sglang
title: Known SGLang launch flags
---
A short catalogue for the test.

```yaml
flags:
  - --model-path
  - --attention-backend
  - --mem-fraction-static
  - --max-running-requests
  - --cuda-graph-max-bs
  - --port
  - --host
  - --trust-remote-code
```
"""


@pytest.fixture()
def catalog_kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    (root / "sglang").mkdir(parents=True)
    (root / "sglang" / "sglang-flag-catalog.md").write_text(CATALOG, encoding="utf-8")
    rule = REPO / "kb" / "sglang" / "sglang-flashinfer-on-gb10.md"
    (root / "sglang" / rule.name).write_text(rule.read_text(encoding="utf-8"), encoding="utf-8")
    return root


def test_unknown_flags_reported_with_a_catalogue(catalog_kb: Path):
    kb = load_kb([catalog_kb])
    assert kb.errors == []
    diagnoser = Diagnoser(kb)
    assert "--mem-fraction-static" in diagnoser.known_flags and len(diagnoser.known_flags) == 8
    report = diagnoser.diagnose(launch_command=(
        "docker run --rm --gpus all -p 30000:30000 lmsysorg/sglang:spark python3 -m sglang.launch_server "
        "--model-path /m --attention-backend flashinfer --mem-fraction-statc 0.75 --max-runing-requests 16 "
        "--port 30000"))
    assert report.unknown_flags == ["--max-runing-requests", "--mem-fraction-statc"]  # sorted, no docker options
    assert any("--max-runing-requests, --mem-fraction-statc" in note for note in report.notes)
    assert [f.rule_id for f in report.findings] == ["sglang-flashinfer-on-gb10"]
    clean = diagnoser.diagnose(launch_command="python -m sglang.launch_server --model-path /m --port 30000")
    assert clean.unknown_flags == [] and clean.notes == []


def test_unknown_flags_need_a_catalogue(tmp_path: Path):
    root = tmp_path / "kb" / "sglang"
    root.mkdir(parents=True)
    rule = REPO / "kb" / "sglang" / "sglang-flashinfer-on-gb10.md"
    (root / rule.name).write_text(rule.read_text(encoding="utf-8"), encoding="utf-8")
    diagnoser = Diagnoser(load_kb([tmp_path / "kb"]))
    assert diagnoser.known_flags == set()
    report = diagnoser.diagnose(launch_command="python -m sglang.launch_server --mem-fraction-statc 0.75")
    assert report.unknown_flags == [] and report.notes == []


def test_shipped_kb_catalogue_if_present():
    diagnoser = Diagnoser(load_kb([REPO / "kb"]))
    report = diagnoser.diagnose(launch_command="python -m sglang.launch_server --model-path /m "
                                               "--attention-backend triton --mem-fraction-statc 0.75")
    if not diagnoser.known_flags:
        assert report.unknown_flags == []
        return
    assert report.unknown_flags == ["--mem-fraction-statc"]
    for flag in ("--model-path", "--attention-backend", "--mem-fraction-static", "--max-running-requests",
                 "--cuda-graph-max-bs", "--disable-cuda-graph", "--disable-piecewise-cuda-graph",
                 "--speculative-algorithm", "--tp-size", "--chunked-prefill-size", "--kv-cache-dtype"):
        assert flag in diagnoser.known_flags, flag
    # every flag a shipped rule tests is in the catalogue (except docker's own options)
    for rule in diagnoser.rules:
        for cond in rule.data.flags:
            if cond.flag not in ("--rm", "--restart"):
                assert cond.flag in diagnoser.known_flags, (rule.id, cond.flag)


# ---- bugs found while writing these tests -----------------------------------------------------

FULL_UNIT = """\
[Unit]
Description=SGLang Mistral Small 4 (GB10)
After=network-online.target docker.service

[Service]
Environment="SGLANG_ENABLE_SPEC_V2=True"
ExecStartPre=-/usr/bin/docker rm -f sglang
ExecStart=/usr/bin/docker run --rm --restart always --name sglang --gpus all --ipc=host \\
    -p 30000:30000 -v /srv/models:/models \\
    lmsysorg/sglang:latest \\
    python3 -m sglang.launch_server --model-path /models/Mistral-Small-4 \\
        --attention-backend triton --mem-fraction-static 0.75 --enable-metrics
ExecStopPost=/bin/sleep 60
Restart=on-failure
RestartSec=65

[Install]
WantedBy=multi-user.target
"""


def test_full_systemd_unit_with_docker_exec_start():
    spec = parse_launch(FULL_UNIT)
    assert spec.kind == "docker"
    assert spec.image == "lmsysorg/sglang:latest"
    assert {"--rm", "--restart"} <= set(spec.docker_flags)


def test_systemd_directives_stay_out_of_the_command_and_env():
    spec = parse_launch(FULL_UNIT)
    assert spec.flags.get("--enable-metrics") is None
    assert set(spec.env) == {"SGLANG_ENABLE_SPEC_V2"}


def test_full_systemd_unit_is_diagnosed():
    report = Diagnoser(load_kb([REPO / "kb"])).diagnose(launch_command=FULL_UNIT)
    assert {"sglang-image-without-sm121a", "sglang-docker-rm-with-restart"} <= {f.rule_id for f in report.findings}
