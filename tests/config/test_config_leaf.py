"""Importing the settings loads no engine and no heavy library (issue: the gate CLI paid for the MCP stack).

Checked in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import isolated_env

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("httpx", "numpy", "sklearn", "fastmcp", "mcp", "starlette", "uvicorn", "psycopg", "yaml", "frontmatter")
# The settings, the models and errors they use, and the packages on the way (``import a.b`` runs ``a/__init__``).
ALLOWED = {
    "sovereign_mcp", "sovereign_mcp.config", "sovereign_mcp.paths",
    "sovereign_mcp.gpu", "sovereign_mcp.gpu.config",
    "sovereign_mcp.inference", "sovereign_mcp.inference.config", "sovereign_mcp.inference.errors",
    "sovereign_mcp.pipeline", "sovereign_mcp.pipeline.config", "sovereign_mcp.pipeline.models",
    "sovereign_mcp.affiliate", "sovereign_mcp.affiliate.config",
    "sovereign_mcp.alttext", "sovereign_mcp.alttext.config",
}


def _loaded(code: str, home: Path) -> list[str]:
    """The sorted ``sys.modules`` of a fresh interpreter that ran ``code`` (in ``home``: no config file there,
    no ``SOVEREIGN_MCP_*`` variables; this checkout first on the path)."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
                         cwd=home, env=isolated_env(home, PYTHONPATH=path))
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import sovereign_mcp.config",
    "from sovereign_mcp.config import load_settings; load_settings(None)",
])
def test_settings_load_no_engine(code: str, tmp_path: Path) -> None:
    loaded = _loaded(code, tmp_path)
    ours = {m for m in loaded if m == "sovereign_mcp" or m.startswith("sovereign_mcp.")}
    assert ours <= ALLOWED, sorted(ours - ALLOWED)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    assert heavy == [], heavy


def test_the_probe_sees_engines(tmp_path: Path) -> None:
    """The check above can fail: importing an engine shows up in the list."""
    loaded = _loaded("import sovereign_mcp.inference.client", tmp_path)
    assert "httpx" in loaded and "sovereign_mcp.inference.client" in loaded


def test_help_loads_neither_settings_nor_pydantic(tmp_path: Path) -> None:
    """``sovereign-mcp --help`` builds the whole parser: every command module it touches imports its settings
    and engines inside the command, so the help stays a blink (benchmarks/cli_start.py times it)."""
    loaded = _loaded("from sovereign_mcp.cli.parser import build_parser; build_parser().format_help()", tmp_path)
    assert "sovereign_mcp.config" not in loaded and "pydantic" not in loaded and "pydantic_settings" not in loaded


def test_gate_command_loads_no_search_engine(tmp_path: Path) -> None:
    """``sovereign-mcp gate`` takes the published articles' facts from their own cache: neither the search
    index nor NumPy, httpx or the MCP stack is imported on the first run (settings, KB and facts loaded); the
    second run loads the compiled gate from the user cache and imports neither the settings nor pydantic."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "post.md").write_text("---\ntitle: A Post\ndate: 2025-01-01\n---\n\nSome prose here.\n")
    note = tmp_path / "note.md"
    note.write_text("A short note.\n")
    run = (f"from sovereign_mcp.cli import main\nrc = main(['gate', {str(note)!r}, '--corpus', {str(corpus)!r}, "
           f"'--data-dir', {str(tmp_path / 'data')!r}])\nassert rc == 0, rc")
    first = _loaded(run, tmp_path)
    assert "sovereign_mcp.gate.engine" in first  # the full path ran: settings, KB, facts
    search = [m for m in first if m.startswith("sovereign_mcp.search.")]
    assert search == ["sovereign_mcp.search.cache_key"], search
    assert not [m for m in first if m.split(".")[0] in ("numpy", "httpx", "fastmcp", "mcp", "sklearn")]
    assert len(list((tmp_path / "data" / "facts").glob("*.pkl"))) == 1
    second = _loaded(run, tmp_path)
    assert "sovereign_mcp.gate.plan" in second  # the probe ran the command, from the cached plan
    heavy = [m for m in second if m.split(".")[0] in ("pydantic", "pydantic_core", "pydantic_settings", "yaml",
                                                      "numpy", "httpx", "fastmcp", "mcp")]
    assert heavy == [] and "sovereign_mcp.config" not in second and "sovereign_mcp.gate.engine" not in second
