"""The knowledge base: entry parsing, override order, error reporting, prompt building, ``kb check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovereign_mcp import cli
from sovereign_mcp.gate.rules.caps import Caps as CapsData
from sovereign_mcp.gate.rules.existence import Existence as ExistenceData
from sovereign_mcp.kb.loader import load_kb, parse_entry
from sovereign_mcp.kb.models import KBError
from sovereign_mcp.kb.prompts import build_prompt, render_rules
from sovereign_mcp.paths import default_kb_dir
from tests.helpers import isolate

SHIPPED_KB = default_kb_dir()


def entry(id_: str, type_: str = "existence", scope: str = "cross-project", severity: str = "high",
          title: str = "A title", extra: str = "", body: str = "Prose.", data: str | None = "phrases: [foo]") -> str:
    """The text of one entry file; ``data`` goes into a ```yaml block after ``body``."""
    block = f"\n\n```yaml\n{data}\n```\n" if data is not None else "\n"
    return (f"---\nid: {id_}\ntype: {type_}\nscope: {scope}\nseverity: {severity}\ntitle: {title}\n{extra}---\n"
            f"{body}{block}")


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user config file or SOVEREIGN_MCP_* variable leaks into CLI runs."""
    isolate(monkeypatch, tmp_path, chdir=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


# --- parsing ----------------------------------------------------------------------------------------------------


def test_yaml_block_data_is_loaded_and_removed_from_the_body(tmp_path: Path) -> None:
    path = write(tmp_path, "phrases.md", entry("phrases", body="Why these phrases are bad.",
                                                data="phrases: [delve, great question]\nignorecase: false"))
    kb = load_kb([tmp_path])
    assert kb.errors == []
    e = kb.entries["phrases"]
    assert isinstance(e.data, ExistenceData)
    assert e.data.phrases == ["delve", "great question"]
    assert e.data.ignorecase is False and e.data.word_boundaries is True
    assert e.body == "Why these phrases are bad."
    assert e.path == path and e.severity == "high" and e.level == "error" and e.is_rule


def test_front_matter_data_is_loaded(tmp_path: Path) -> None:
    write(tmp_path, "caps.md", entry("caps", type_="caps", scope="podcast", severity="medium",
                                     extra="allow: [GPU, LLM]\nmin_length: 3\n", data=None))
    kb = load_kb([tmp_path])
    assert kb.errors == []
    data = kb.entries["caps"].data
    assert isinstance(data, CapsData)
    assert data.allow == ["GPU", "LLM"] and data.min_length == 3
    assert kb.entries["caps"].level == "warning"


def test_yaml_block_wins_key_by_key(tmp_path: Path) -> None:
    text = entry("mixed", extra="phrases: [from-front-matter]\nignorecase: false\n",
                 data="phrases: [from-block]\nword_boundaries: false")
    data = parse_entry(tmp_path / "mixed.md", text).data
    assert data.phrases == ["from-block"]  # the block overrides this key
    assert data.ignorecase is False  # only in front matter: kept
    assert data.word_boundaries is False  # only in the block: taken


def test_guidance_entry_is_not_a_rule(tmp_path: Path) -> None:
    e = parse_entry(tmp_path / "g.md", entry("g", type_="guidance", severity="low", data="examples: [one, two]"))
    assert e.is_rule is False and e.level == "suggestion" and e.data.examples == ["one", "two"]


def test_later_root_overrides_earlier_root_by_id(tmp_path: Path) -> None:
    first = write(tmp_path / "shared", "a/phrases.md", entry("phrases", title="Shared", data="phrases: [one]"))
    write(tmp_path / "shared", "other.md", entry("other", title="Only shared"))
    second = write(tmp_path / "project", "renamed.md", entry("phrases", title="Project", data="phrases: [two]"))
    kb = load_kb([tmp_path / "shared", tmp_path / "project"])
    assert kb.errors == []
    assert kb.entries["phrases"].title == "Project"
    assert kb.entries["phrases"].path == second != first
    assert kb.entries["phrases"].data.phrases == ["two"]
    assert kb.entries["other"].title == "Only shared"
    assert kb.roots == [str(tmp_path / "shared"), str(tmp_path / "project")]
    # the other order: the shared entry wins
    assert load_kb([tmp_path / "project", tmp_path / "shared"]).entries["phrases"].title == "Shared"


def test_duplicate_id_in_one_root_is_an_error_naming_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a-first.md", entry("same", title="First"))
    second = write(tmp_path, "b-second.md", entry("same", title="Second"))
    kb = load_kb([tmp_path])
    assert len(kb.errors) == 1
    error = kb.errors[0]
    assert error.path == str(second) and error.field == "id"
    assert str(first) in error.message and "'same'" in error.message
    assert kb.entries["same"].title == "First"


def test_readme_is_not_an_entry(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "# About this KB\n\nNo front matter here.\n")
    write(tmp_path, "ok.md", entry("ok"))
    kb = load_kb([tmp_path])
    assert kb.errors == [] and list(kb.entries) == ["ok"]


BROKEN = {
    # file name: (text or bytes, expected field, text the message must contain)
    "bad-id.md": (entry("Bad_Id"), "id", "pattern"),
    "unknown-type.md": (entry("unknown-type", type_="spelling"), "type", "'existence'"),
    "bad-severity.md": (entry("bad-severity", severity="critical"), "severity", "'low', 'medium' or 'high'"),
    "missing-title.md": ("---\nid: no-title\ntype: existence\nscope: article\n---\n```yaml\nphrases: [x]\n```\n",
                         "title", "Field required"),
    "unknown-data-key.md": (entry("typo", data="phrases: [x]\nignore_case: true"), "data.ignore_case",
                            "Extra inputs are not permitted"),
    "bad-regex.md": (entry("bad-regex", type_="markup", data="patterns:\n  - name: star\n    pattern: '(unclosed'"),
                     "data.patterns.0.pattern", "invalid regular expression"),
    "bad-yaml-block.md": (entry("bad-yaml", data="phrases: [x\n  - y: z"), "(yaml block)", "malformed YAML block"),
    "not-utf8.md": (entry("latin", title="Café").encode("latin-1"), "(file)", "not UTF-8"),
    "diagnosis-no-matcher.md": (entry("diag", type_="diagnosis", scope="sglang", data="explanation: x\nfix: y"),
                                "data.(entry)", "needs at least one matcher"),
}


@pytest.fixture
def broken_kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    write(root, "good.md", entry("good", data="phrases: [fine]"))
    write(root, "nested/also-good.md", entry("also-good", type_="repetition", severity="medium", data="ignore: [had]"))
    for name, (content, _, _) in BROKEN.items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            write(root, name, content)
    return root


def test_broken_entries_are_reported_and_good_ones_still_load(broken_kb: Path) -> None:
    kb = load_kb([broken_kb])
    assert sorted(kb.entries) == ["also-good", "good"]
    by_file: dict[str, list[KBError]] = {}
    for error in kb.errors:
        by_file.setdefault(Path(error.path).name, []).append(error)
    assert sorted(by_file) == sorted(BROKEN)
    for name, (_, field, fragment) in BROKEN.items():
        errors = by_file[name]
        assert len(errors) == 1, (name, errors)
        assert errors[0].path == str(broken_kb / name)
        assert errors[0].field == field, name
        assert fragment in errors[0].message, (name, errors[0].message)
        assert str(errors[0]) == f"{broken_kb / name}: {field}: {errors[0].message}"


def test_yaml_block_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "list.md", entry("listy", data="- just\n- a list"))
    kb = load_kb([tmp_path])
    assert kb.entries == {}
    assert [(e.field, e.message) for e in kb.errors] == [
        ("(yaml block)", "the YAML block must be a key/value mapping"),
    ]


def test_missing_root_is_one_error_and_other_roots_load(tmp_path: Path) -> None:
    write(tmp_path / "real", "ok.md", entry("ok"))
    missing = tmp_path / "nope"
    kb = load_kb([missing, tmp_path / "real"])
    assert kb.errors == [KBError(path=str(missing), field="(root)", message="KB folder not found")]
    assert list(kb.entries) == ["ok"]


@pytest.fixture
def scoped_kb(tmp_path: Path):
    write(tmp_path, "z.md", entry("zeta-phrases", scope="cross-project", severity="low", data="phrases: [zz]"))
    write(tmp_path, "a.md", entry("alpha-guide", type_="guidance", scope="cross-project", severity="low",
                                  body="Write like an operator.", data="examples: [Sixty seconds has held.]"))
    write(tmp_path, "m.md", entry("mid-caps", type_="caps", scope="podcast", severity="medium",
                                  data="allow: [GPU, NVFP4]"))
    write(tmp_path, "b.md", entry("beta-markup", type_="markup", scope="podcast", severity="high",
                                  data="patterns:\n  - name: asterisks\n    pattern: '\\*+'"))
    write(tmp_path, "c.md", entry("core-phrases", scope="cross-project", severity="high",
                                  data="phrases: [here's the thing, great question]"))
    write(tmp_path, "s.md", entry("swap-words", type_="substitution", scope="article", severity="medium",
                                  data="swap:\n  utilize: use\n  terminate: [stop, end]"))
    write(tmp_path, "d.md", entry("diag-x", type_="diagnosis", scope="sglang", severity="high",
                                  data="log: ['out of memory']\nexplanation: x\nfix: wait sixty seconds"))
    kb = load_kb([tmp_path])
    assert kb.errors == []
    return kb


def test_in_scopes_sorts_by_id_and_filters(scoped_kb) -> None:
    ids = [e.id for e in scoped_kb.in_scopes(["cross-project", "podcast"])]
    assert ids == ["alpha-guide", "beta-markup", "core-phrases", "mid-caps", "zeta-phrases"]
    ids = [e.id for e in scoped_kb.in_scopes(("podcast", "cross-project"), rules_only=True)]
    assert ids == ["beta-markup", "core-phrases", "mid-caps", "zeta-phrases"]
    assert [e.id for e in scoped_kb.in_scopes(["article"])] == ["swap-words"]
    assert [e.id for e in scoped_kb.in_scopes(["sglang"], rules_only=True)] == ["diag-x"]
    assert scoped_kb.in_scopes(["nothing"]) == []


def test_build_prompt_article(scoped_kb) -> None:
    prompt = build_prompt(scoped_kb, "article", "the sixty-second wait", sources="SOURCE TEXT")
    assert prompt.startswith("Write a blog article about: the sixty-second wait")
    headings = [line for line in prompt.splitlines() if line.startswith("### ")]
    assert headings == [
        "### A title (error, core-phrases)",
        "### A title (warning, swap-words)",
        "### A title (suggestion, alpha-guide)",
        "### A title (suggestion, zeta-phrases)",
    ]
    assert "Never write: \"here's the thing\", 'great question'." in prompt
    assert "Replace: 'utilize' -> 'use'; 'terminate' -> 'stop / end'." in prompt
    assert "Write like an operator." in prompt and "Examples: Sixty seconds has held." in prompt
    assert "all-caps" not in prompt and "NVFP4" not in prompt  # the caps allowlist is podcast-only
    assert "diag-x" not in prompt and "beta-markup" not in prompt
    assert prompt.endswith("## Sources\n\nSOURCE TEXT")


def test_build_prompt_podcast(scoped_kb) -> None:
    prompt = build_prompt(scoped_kb, "podcast", "one GPU service at a time")
    assert prompt.startswith("Write a two-host podcast script about: one GPU service at a time")
    assert "HEXABELLA" in prompt and "CIPHERFOX" in prompt
    headings = [line for line in prompt.splitlines() if line.startswith("### ")]
    assert headings == [
        "### A title (error, beta-markup)",
        "### A title (error, core-phrases)",
        "### A title (warning, mid-caps)",
        "### A title (suggestion, alpha-guide)",
        "### A title (suggestion, zeta-phrases)",
    ]
    assert "Only these all-caps words may appear: GPU, NVFP4." in prompt
    assert "Never write: \"here's the thing\", 'great question'." in prompt
    assert "No asterisks." in prompt
    assert "swap-words" not in prompt and "## Sources" not in prompt
    with pytest.raises(KeyError):
        build_prompt(scoped_kb, "newsletter", "x")


def test_render_rules_of_nothing_is_empty() -> None:
    assert render_rules([]) == ""


# --- kb check ---------------------------------------------------------------------------------------------------


def test_kb_check_good_kb_exits_0(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = isolated / "kb"
    write(root, "cross/one.md", entry("one"))
    write(root, "podcast/two.md", entry("two", type_="dominance", scope="podcast", data="max_turns: 2"))
    assert cli.main(["kb", "check", "--kb", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"2 entries (cross-project 1, podcast 1) from {root}"]


def test_kb_check_broken_kb_exits_1_naming_the_file(broken_kb: Path, isolated: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["kb", "check", "--kb", str(broken_kb)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("2 entries (cross-project 2) from ")
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(BROKEN)
    for name, (_, field, _) in BROKEN.items():
        assert any(line.startswith(f"error: {broken_kb / name}: {field}: ") for line in errors), name


def test_kb_check_missing_root_exits_1(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = isolated / "missing-kb"
    assert cli.main(["kb", "check", "--kb", str(missing)]) == 1
    assert f"error: {missing}: (root): KB folder not found" in capsys.readouterr().out


# --- the shipped KB ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_kb([SHIPPED_KB])


def test_shipped_kb_passes_kb_check(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["kb", "check"]) == 0
    out = capsys.readouterr().out
    assert "error:" not in out
    assert out.startswith(f"{len(load_kb([SHIPPED_KB]).entries)} entries (")


def test_shipped_kb_loads_without_errors(shipped) -> None:
    assert shipped.errors == []
    assert {"cross-project", "podcast", "sglang"} <= {e.scope for e in shipped.entries.values()}


def test_shipped_overused_phrases(shipped) -> None:
    existence = [e for e in shipped.entries.values() if e.type == "existence" and e.scope == "cross-project"]
    high = [e for e in existence if e.severity == "high"]
    phrases = {p.lower() for e in high for p in e.data.phrases}
    assert len(phrases) >= 13
    assert {"here's the thing", "absolutely", "great question"} <= phrases


def test_shipped_caps_allowlist(shipped) -> None:
    caps = [e for e in shipped.entries.values() if e.type == "caps"]
    assert caps and all(e.scope == "podcast" for e in caps)
    allow = {w for e in caps for w in e.data.allow}
    assert len(allow) >= 60
    assert {"LLM", "API", "GPU", "NVFP4", "HEXABELLA", "CIPHERFOX"} <= allow


def test_shipped_sglang_diagnoses(shipped) -> None:
    diagnoses = [e for e in shipped.entries.values() if e.type == "diagnosis"]
    assert len([e for e in diagnoses if e.scope == "sglang"]) >= 20
    assert all(e.data.fix.strip() and e.data.explanation.strip() for e in diagnoses)


def test_shipped_podcast_prompt_has_the_rules(shipped) -> None:
    prompt = build_prompt(shipped, "podcast", "the DGX Spark")
    assert "here's the thing" in prompt.lower() and "Only these all-caps words may appear:" in prompt
    assert "NVFP4" in prompt
    article = build_prompt(shipped, "article", "the DGX Spark")
    assert "here's the thing" in article.lower() and "Only these all-caps words may appear:" not in article
