"""Rule types as one file each: the registry drives the KB loader and the engine, each type compiles once
at load (bad patterns are KB errors naming the file and field), and ``combine`` is the only way rules of
one type act together (the CAPS allowlists)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sovereign_mcp.gate.document import _INLINE_CODE, prepare
from sovereign_mcp.gate.engine import QualityGate
from sovereign_mcp.gate.facts import TITLE, _title_matches, digit_dots
from sovereign_mcp.gate.rules.base import Rule
from sovereign_mcp.gate.rules.caps import Caps
from sovereign_mcp.gate.rules.markup import Markup
from sovereign_mcp.gate.rules.registry import RULES
from sovereign_mcp.kb.loader import load_kb
from sovereign_mcp.kb.models import DATA_MODELS, RULE_TYPES


def write(root: Path, id_: str, type_: str, scope: str, data: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{id_}.md"
    path.write_text(f"---\nid: {id_}\ntype: {type_}\nscope: {scope}\nseverity: medium\ntitle: Rule {id_}\n---\n"
                    f"Prose.\n\n```yaml\n{data}\n```\n", encoding="utf-8")
    return path


MINIMAL = {"existence": "phrases: [delve]", "substitution": "swap: {utilize: use}", "caps": "allow: [GPU]",
           "markup": "patterns: [{name: asterisks, pattern: '\\*+'}]", "dominance": "max_turns: 2",
           "repetition": "ignore: [had]", "fabrication": "kinds: [path]", "version_required": "names: [SGLang]"}


def test_every_registered_type_loads_as_its_rule_and_the_gate_runs_it(tmp_path: Path) -> None:
    assert set(MINIMAL) == set(RULES)  # a new type gets a line here too
    assert set(RULES) <= set(DATA_MODELS) and set(RULES) <= set(RULE_TYPES)
    for type_, data in MINIMAL.items():
        write(tmp_path, type_.replace("_", "-"), type_, "podcast", data)
    kb = load_kb([tmp_path])
    assert kb.errors == []
    for type_, rule in RULES.items():
        entry = kb.entries[type_.replace("_", "-")]
        assert isinstance(entry.data, rule) and issubclass(rule, Rule) and entry.is_gate_rule
    text = ("HEXABELLA: We delve in.\nCIPHERFOX: Utilize the GPU and the CPU *now*.\nCIPHERFOX: It had had "
            "a /etc/foo/bar.conf file.\nCIPHERFOX: SGLang runs.\n")
    report = QualityGate(kb).check(text, "podcast")
    assert sorted(report.rules_checked) == sorted(t.replace("_", "-") for t in RULES)
    assert {f.rule_id for f in report.findings} == {"existence", "substitution", "caps", "markup", "dominance",
                                                    "fabrication", "version-required"}  # "had had": ignored
    assert [f.match for f in report.findings if f.rule_id == "caps"] == ["CPU"]


@pytest.mark.parametrize(("type_", "data", "field", "fragment"), [
    ("markup", "patterns: [{name: x, pattern: '[unclosed'}]", "data.patterns.0.pattern", "invalid regular expression"),
    ("dominance", "speaker_pattern: '(oops'", "data.speaker_pattern", "invalid regular expression"),
    ("dominance", "speaker_pattern: '\\n[A-Z]+:'", "data.speaker_pattern", "group 1 is the speaker's name"),
])
def test_a_pattern_that_cannot_compile_is_a_kb_error_with_file_and_field(tmp_path: Path, type_: str, data: str,
                                                                        field: str, fragment: str) -> None:
    path = write(tmp_path, "bad", type_, "podcast", data)
    kb = load_kb([tmp_path])
    assert kb.entries == {}
    [error] = kb.errors
    assert (error.path, error.field) == (str(path), field) and fragment in error.message


def test_markup_is_compiled_once_at_load(tmp_path: Path) -> None:
    write(tmp_path, "tags", "markup", "podcast", "patterns: [{name: tags, pattern: '^\\[\\w+\\]'}]")
    kb = load_kb([tmp_path])
    rule: Markup = kb.entries["tags"].data
    compiled = rule.patterns[0]._regex
    assert compiled.pattern == r"^\[\w+\]" and compiled.flags & re.MULTILINE
    gate = QualityGate(kb)
    assert [f.match for f in gate.check("[pause] then\n[laughs] again\n", "podcast").findings] == ["[pause]",
                                                                                                  "[laughs]"]
    assert gate.check("no tag [here]\n", "podcast").findings == []
    assert rule.patterns[0]._regex is compiled


def test_caps_combine_merges_allowlists_into_the_first_rule() -> None:
    first, second = Caps(allow=["GPU"], min_length=3), Caps(allow=["NVFP4"])
    merged, skipped = Caps.combine([first, second])
    assert skipped is None and merged.allow == ["GPU", "NVFP4"] and merged.min_length == 3
    assert Caps.combine([first]) == [first]


def test_two_caps_entries_act_as_one_allowlist_reported_under_the_first_id(tmp_path: Path) -> None:
    write(tmp_path, "caps-a", "caps", "podcast", "allow: [GPU]")
    write(tmp_path, "caps-b", "caps", "cross-project", "allow: [LLM]")
    gate = QualityGate(load_kb([tmp_path]))
    report = gate.check("The GPU runs the LLM on a DGX.\n", "podcast")
    assert report.rules_checked == ["caps-a", "caps-b"]
    assert [(f.rule_id, f.match) for f in report.findings] == [("caps-a", "DGX")]
    only_b = gate.check("The GPU runs the LLM on a DGX.\n", "podcast", only=["caps-b"])
    assert [(f.rule_id, f.match) for f in only_b.findings] == [("caps-b", "GPU"), ("caps-b", "DGX")]


@given(st.text(alphabet="0123456789.v a\n١٢", max_size=60))
def test_digit_dots_are_the_spans_of_the_regex_they_replace(text: str) -> None:
    assert list(digit_dots(text)) == [m.span() for m in re.finditer(r"\d\.\d", text)]


@given(st.text(alphabet="`a \n\t", max_size=40))
def test_inline_code_pattern_opening_on_a_literal_matches_as_before(text: str) -> None:
    before = re.compile(r"(`++)(?:[^`\n]++|\n(?![ \t]*\n)|(?!\1)`++)+?\1(?!`)")  # the pattern it replaced
    assert [m.span() for m in _INLINE_CODE.finditer(text)] == [m.span() for m in before.finditer(text)]
    assert prepare(text).line_starts == [0, *(i + 1 for i, ch in enumerate(text) if ch == "\n")]


@given(st.text(alphabet='"“”[]()/ Ab.\n', max_size=60))
def test_titles_tried_at_their_openings_are_the_regex_matches(text: str) -> None:
    assert [m.span() for m in _title_matches(text)] == [m.span() for m in TITLE.finditer(text)]
