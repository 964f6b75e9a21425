"""``sovereign-mcp gate``: exit codes, text / JSON / SARIF output, stdin, with the shipped KB."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from sovereign_mcp import cli
from sovereign_mcp.gate.engine import MAX_INPUT_BYTES
from sovereign_mcp.kb.loader import load_kb
from sovereign_mcp.paths import default_kb_dir
from tests.helpers import isolate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gate"
PODCAST = FIXTURES / "podcast_episode.txt"
ARTICLE = FIXTURES / "clean_article.md"
# (line, rule type) of every finding in the podcast fixture
PODCAST_EXPECTED = [(8, "existence"), (10, "caps"), (11, "markup"), (14, "dominance"), (15, "markup")]
FINDING_KEYS = {"rule_id", "severity", "level", "line", "column", "end_line", "end_column", "span", "match",
                "message", "suggestion"}

CORPUS_ARTICLE = """---
title: One GPU Service At A Time
date: 2025-02-01
tags: [dgx-spark]
---

## The sequence

Stop the language model server, wait sixty seconds, then start the speech engine.
"""


@pytest.fixture(scope="module")
def types() -> dict[str, str]:
    """Rule id -> rule type in the shipped KB (ids are looked up, not hard-coded)."""
    return {e.id: e.type for e in load_kb([default_kb_dir()]).entries.values()}


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``sovereign-mcp gate ARGS`` on a tiny tmp corpus and data dir, isolated from user config."""
    isolate(monkeypatch, tmp_path, chdir=False)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "one-gpu.md").write_text(CORPUS_ARTICLE, encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    def run(*args: str) -> int:
        return cli.main(["gate", *args, "--corpus", str(corpus), "--data-dir", str(tmp_path / "data")])

    return run


def test_podcast_fixture_exits_1(gate, types, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(str(PODCAST), "--kind", "podcast") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(PODCAST_EXPECTED) + 1
    for line, (number, rule_type) in zip(lines, PODCAST_EXPECTED, strict=False):
        prefix, rule = line.split(" [", 1)[0], line.split(" [", 1)[1].split("]", 1)[0]
        assert prefix.startswith(f"{PODCAST}:{number}:")
        assert types[rule] == rule_type
    assert lines[0].startswith(f"{PODCAST}:8:48: error [")
    assert lines[-1] == f"{PODCAST}: fail (3 errors, 2 warnings, 0 suggestions)"


def test_clean_article_exits_0(gate, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(str(ARTICLE)) == 0
    assert capsys.readouterr().out == f"{ARTICLE}: pass (0 errors, 0 warnings, 0 suggestions)\n"


def test_warnings_only_exit_0(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "warn.txt"
    script.write_text("HEXABELLA: This is REALLY slow.\nCIPHERFOX: It is.\n", encoding="utf-8")
    assert gate(str(script), "--kind", "podcast", "--format", "json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdict"] == "pass_with_warnings"
    assert [(f["line"], f["column"], f["match"], f["level"]) for f in payload["reports"][0]["findings"]] == [
        (1, 20, "REALLY", "warning"),
    ]


def test_missing_file_exits_2(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.md"
    assert gate(str(missing)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"sovereign-mcp gate: {missing}: ")
    assert "No such file" in captured.err


def test_non_utf8_file_exits_2(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.md"
    bad.write_bytes("Caf\xe9 au lait\n".encode("latin-1"))
    assert gate(str(bad)) == 2
    assert capsys.readouterr().err == (f"sovereign-mcp gate: {bad}: input is not UTF-8 text "
                                       "(invalid byte at offset 3)\n")


def test_file_over_2_mb_exits_2(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.md"
    big.write_bytes(b"word " * (MAX_INPUT_BYTES // 5 + 1))
    assert gate(str(big)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sovereign-mcp gate: {big}: input is ") and "2 MB" in err


def test_binary_file_exits_2(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "image.png"
    binary.write_bytes(b"PNG\x00\x01\x02")
    assert gate(str(binary)) == 2
    assert "NUL" in capsys.readouterr().err


def test_unknown_rule_id_exits_2(gate, types, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(str(PODCAST), "--kind", "podcast", "--rules", "no-such-rule") == 2
    err = capsys.readouterr().err
    assert "no-such-rule" in err and "available:" in err
    dominance = next(i for i, t in types.items() if t == "dominance")
    assert dominance in err.split("available:", 1)[1]


def test_rules_option_restricts_the_check(gate, types, capsys: pytest.CaptureFixture[str]) -> None:
    markup = next(i for i, t in types.items() if t == "markup")
    dominance = next(i for i, t in types.items() if t == "dominance")
    assert gate(str(PODCAST), "--kind", "podcast", "--rules", f"{dominance}, {markup}", "--format", "json") == 1
    report = json.loads(capsys.readouterr().out)["reports"][0]
    assert report["rules_checked"] == sorted([dominance, markup])
    assert [(f["line"], f["rule_id"]) for f in report["findings"]] == [(11, markup), (14, dominance), (15, markup)]


def test_json_output(gate, types, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.txt"
    clean.write_text("HEXABELLA: Why sixty seconds?\nCIPHERFOX: Because the pool frees slowly.\n", encoding="utf-8")
    assert gate(str(PODCAST), str(clean), "--kind", "podcast", "--format", "json") == 1
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"verdict", "reports"}
    assert payload["verdict"] == "fail"
    podcast, other = payload["reports"]
    assert (podcast["file"], podcast["verdict"], podcast["kind"]) == (str(PODCAST), "fail", "podcast")
    assert (other["file"], other["verdict"], other["findings"]) == (str(clean), "pass", [])
    assert podcast["counts"] == {"error": 3, "warning": 2, "suggestion": 0}
    assert podcast["chars"] == len(PODCAST.read_text(encoding="utf-8"))
    findings = podcast["findings"]
    for f in findings:
        assert set(f) == FINDING_KEYS
    assert [(f["line"], types[f["rule_id"]]) for f in findings] == PODCAST_EXPECTED
    first = findings[0]
    assert (first["line"], first["column"], first["end_line"], first["end_column"]) == (8, 48, 8, 64)
    assert first["match"] == "Here's the thing" and first["severity"] == "high" and first["level"] == "error"
    text = PODCAST.read_text(encoding="utf-8")
    assert all(text[f["span"][0]:f["span"][1]] == f["match"] for f in findings)
    assert all(isinstance(f["message"], str) and f["message"] for f in findings)


def test_sarif_output(gate, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(str(PODCAST), "--kind", "podcast", "--format", "json") == 1
    findings = json.loads(capsys.readouterr().out)["reports"][0]["findings"]
    assert gate(str(PODCAST), "--kind", "podcast", "--format", "sarif") == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0"
    assert "sarif" in sarif["$schema"] and "2.1.0" in sarif["$schema"]
    assert len(sarif["runs"]) == 1
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "sovereign-mcp gate" and driver["version"]
    assert sorted(r["id"] for r in driver["rules"]) == sorted({f["rule_id"] for f in findings})
    assert all(r["shortDescription"]["text"] for r in driver["rules"])
    results = run["results"]
    assert len(results) == len(findings)
    sarif_level = {"error": "error", "warning": "warning", "suggestion": "note"}
    for result, finding in zip(results, findings, strict=True):
        assert result["ruleId"] == finding["rule_id"]
        assert result["level"] == sarif_level[finding["level"]]
        assert result["message"]["text"].startswith(finding["message"])
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == str(PODCAST)
        region = location["region"]
        assert (region["startLine"], region["startColumn"], region["endLine"], region["endColumn"]) == (
            finding["line"], finding["column"], finding["end_line"], finding["end_column"])
    assert [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results] == [8, 10, 11, 14, 15]


def test_sarif_for_a_clean_file_has_no_results(gate, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(str(ARTICLE), "--format", "sarif") == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def test_dash_reads_stdin(gate, types, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(b"\xef\xbb\xbf" + PODCAST.read_bytes()))  # a BOM is accepted
    assert gate("-", "--kind", "podcast", "--format", "json") == 1
    report = json.loads(capsys.readouterr().out)["reports"][0]
    assert report["file"] == "-"
    assert [(f["line"], types[f["rule_id"]]) for f in report["findings"]] == PODCAST_EXPECTED
    assert report["findings"][0]["column"] == 48  # the BOM is not counted


def test_dash_with_non_utf8_stdin_exits_2(gate, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(b"\xff\xfe\x00"))
    assert gate("-") == 2
    assert capsys.readouterr().err.startswith("sovereign-mcp gate: -: input is not UTF-8 text")


def test_citing_a_published_article_by_title_passes(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draft = tmp_path / "draft.md"
    draft.write_text('As "One GPU Service At A Time" explains, the wait matters.\n', encoding="utf-8")
    assert gate(str(draft), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["reports"][0]["findings"] == []


def test_linking_a_published_article_passes(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draft = tmp_path / "draft.md"
    draft.write_text("As [One GPU Service At A Time](/one-gpu/) explains, the wait matters.\n", encoding="utf-8")
    assert gate(str(draft), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["reports"][0]["findings"] == []
