"""The deterministic quality gate, rule type by rule type, on small KBs written to tmp_path.

Positions are asserted exactly: 1-based line/column, exclusive end column, ``[start, end)`` span in
characters, and the matched text. The two fixtures at the end run against the shipped KB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sovereign_mcp.gate.engine import MAX_INPUT_BYTES, GateInputError, QualityGate, decode_input, validate_input
from sovereign_mcp.gate.facts import KnownFacts
from sovereign_mcp.gate.report import Finding, GateReport
from sovereign_mcp.gate.service import build_facts
from sovereign_mcp.kb.loader import KnowledgeBase, load_kb
from sovereign_mcp.paths import default_kb_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gate"


def make_kb(root: Path, *entries: tuple[str, str, str, str, str]) -> KnowledgeBase:
    """Write ``(id, type, scope, severity, yaml data)`` entries under ``root`` and load them."""
    root.mkdir(parents=True, exist_ok=True)
    for id_, type_, scope, severity, data in entries:
        (root / f"{id_}.md").write_text(
            f"---\nid: {id_}\ntype: {type_}\nscope: {scope}\nseverity: {severity}\ntitle: Rule {id_}\n---\n"
            f"Prose.\n\n```yaml\n{data}\n```\n", encoding="utf-8")
    kb = load_kb([root])
    assert kb.errors == []
    return kb


def run(tmp_path: Path, text: str, *entries: tuple[str, str, str, str, str], kind: str = "article",
        facts: KnownFacts | None = None, only: list[str] | None = None) -> GateReport:
    return QualityGate(make_kb(tmp_path / "kb", *entries), facts).check(text, kind, only)  # type: ignore[arg-type]


def loc(f: Finding) -> tuple[int, int, int, int, tuple[int, int], str]:
    return f.line, f.column, f.end_line, f.end_column, f.span, f.match


PHRASES = ("phrases", "existence", "cross-project", "high", "phrases: [delve, here's the thing, absolutely]")


# --- existence --------------------------------------------------------------------------------------------------


def test_existence_word_boundaries_and_ignorecase(tmp_path: Path) -> None:
    text = "Delve in. We delved.\nThen I delve.\n"
    report = run(tmp_path, text, ("e", "existence", "cross-project", "high", "phrases: [delve]"))
    assert [loc(f) for f in report.findings] == [
        (1, 1, 1, 6, (0, 5), "Delve"),
        (2, 8, 2, 13, (28, 33), "delve"),
    ]
    assert report.verdict == "fail"
    assert report.findings[0].rule_id == "e" and report.findings[0].severity == "high"
    assert report.findings[0].level == "error"
    assert report.findings[0].message == "Rule e: 'Delve'"


def test_existence_without_word_boundaries_matches_inside_words(tmp_path: Path) -> None:
    text = "Delve in. We delved.\n"
    report = run(tmp_path, text, ("e", "existence", "cross-project", "high",
                                  "phrases: [delve]\nword_boundaries: false"))
    assert [loc(f) for f in report.findings] == [(1, 1, 1, 6, (0, 5), "Delve"), (1, 14, 1, 19, (13, 18), "delve")]


def test_existence_case_sensitive(tmp_path: Path) -> None:
    text = "Delve in. We delve.\n"
    report = run(tmp_path, text, ("e", "existence", "cross-project", "high", "phrases: [delve]\nignorecase: false"))
    assert [loc(f) for f in report.findings] == [(1, 14, 1, 19, (13, 18), "delve")]


def test_existence_negative(tmp_path: Path) -> None:
    report = run(tmp_path, "Seamlessness is a word; delved and undelve are not the phrase.\n",
                 ("e", "existence", "cross-project", "high", "phrases: [delve, seamless]"))
    assert report.findings == [] and report.verdict == "pass"


def test_existence_phrase_with_punctuation(tmp_path: Path) -> None:
    text = "HEXABELLA: So here's the thing: it waits.\n"
    report = run(tmp_path, text, PHRASES, kind="podcast")
    assert [loc(f) for f in report.findings] == [(1, 15, 1, 31, (14, 30), "here's the thing")]


def test_message_and_suggestion_templates(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "t.md").write_text(
        "---\nid: t\ntype: existence\nscope: article\nseverity: medium\ntitle: T\n"
        "message: \"Overused '{match}'\"\nsuggestion: \"Cut '{match}'.\"\nphrases: [absolutely]\n---\n",
        encoding="utf-8")
    report = QualityGate(load_kb([root])).check("ABSOLUTELY fine\n", "article")
    (f,) = report.findings
    assert (f.message, f.suggestion, f.level) == ("Overused 'ABSOLUTELY'", "Cut 'ABSOLUTELY'.", "warning")


# --- substitution -----------------------------------------------------------------------------------------------


SWAP = ("swap", "substitution", "cross-project", "medium", "swap:\n  utilize: use\n  terminate: [stop, end]")


def test_substitution_string_and_list_replacements(tmp_path: Path) -> None:
    text = "We utilize it.\nThen Terminate the job.\n"
    report = run(tmp_path, text, SWAP)
    assert [loc(f) for f in report.findings] == [
        (1, 4, 1, 11, (3, 10), "utilize"),
        (2, 6, 2, 15, (20, 29), "Terminate"),
    ]
    assert [f.suggestion for f in report.findings] == ["use 'use'", "use 'stop' or 'end'"]
    assert report.verdict == "pass_with_warnings"
    assert report.counts == {"error": 0, "warning": 2, "suggestion": 0}


def test_substitution_negative(tmp_path: Path) -> None:
    assert run(tmp_path, "It utilized the terminated job.\n", SWAP).findings == []


# --- caps -------------------------------------------------------------------------------------------------------


CAPS = ("caps", "caps", "podcast", "medium", "allow: [GPU, LLM]")


def test_caps_flags_unknown_words_only(tmp_path: Path) -> None:
    text = "BOB: The GPU is REALLY fast in 2024, A1 too.\n  ALICE: an LLM, FOO-bar and X. I met BOB.\n"
    report = run(tmp_path, text, CAPS, kind="podcast")
    assert [loc(f) for f in report.findings] == [
        (1, 17, 1, 23, (16, 22), "REALLY"),
        (2, 39, 2, 42, (83, 86), "BOB"),
    ]
    assert report.findings[0].suggestion == "add REALLY to the CAPS allowlist or write it as a word"


def test_caps_negative_speakers_digits_and_allowlist(tmp_path: Path) -> None:
    text = "HEXABELLA: The GPU and the LLM, 2024 and 128 and A1.\nCIPHERFOX: Sure.\n"
    assert run(tmp_path, text, CAPS, kind="podcast").findings == []


def test_caps_rule_only_applies_to_its_scope(tmp_path: Path) -> None:
    report = run(tmp_path, "This is REALLY slow.\n", CAPS, kind="article")
    assert report.findings == [] and report.rules_checked == []


def test_caps_allowlists_in_scope_act_as_one(tmp_path: Path) -> None:
    report = run(tmp_path, "GPU LLM TPU\n", ("a-caps", "caps", "cross-project", "medium", "allow: [GPU]"),
                 ("b-caps", "caps", "podcast", "low", "allow: [LLM]"), kind="podcast")
    assert [(f.rule_id, loc(f)) for f in report.findings] == [("a-caps", (1, 9, 1, 12, (8, 11), "TPU"))]
    assert report.rules_checked == ["a-caps", "b-caps"]


# --- markup -----------------------------------------------------------------------------------------------------


MARKUP = ("markup", "markup", "podcast", "high",
          "patterns:\n"
          "  - name: asterisks\n    pattern: '\\*+[^*\\n]+\\*+|\\*+'\n    suggestion: Say it as words.\n"
          "  - name: bracket tag\n    pattern: '\\[[^\\]\\n]{1,40}\\]'\n")


def test_markup_patterns(tmp_path: Path) -> None:
    text = "HEXABELLA: *laughs* Right.\nCIPHERFOX: [music] Next.\n"
    report = run(tmp_path, text, MARKUP, kind="podcast")
    assert [loc(f) for f in report.findings] == [
        (1, 12, 1, 20, (11, 19), "*laughs*"),
        (2, 12, 2, 19, (38, 45), "[music]"),
    ]
    assert report.findings[0].message == "TTS would read asterisks literally: '*laughs*'"
    assert report.findings[0].suggestion == "Say it as words."
    assert report.findings[1].message == "TTS would read bracket tag literally: '[music]'"
    assert report.findings[1].suggestion is None
    assert report.verdict == "fail"


def test_markup_negative(tmp_path: Path) -> None:
    text = "HEXABELLA: Ha, fair. See [the post](https://example.com/x) and `[not a tag]`.\n"
    assert run(tmp_path, text, MARKUP, kind="podcast").findings == []


# --- dominance --------------------------------------------------------------------------------------------------


DOMINANCE = ("dominance", "dominance", "podcast", "medium", "max_turns: 2")


def test_dominance_three_turns_flagged_at_the_third(tmp_path: Path) -> None:
    text = ("HEXABELLA: Why wait?\n"
            "CIPHERFOX: The pool.\n"
            "CIPHERFOX: It is shared.\n"
            "  CIPHERFOX: And slow to free.\n"
            "HEXABELLA: Right.\n")
    report = run(tmp_path, text, DOMINANCE, kind="podcast")
    assert [loc(f) for f in report.findings] == [(4, 3, 4, 12, (69, 78), "CIPHERFOX")]
    assert report.findings[0].message == "CIPHERFOX holds 3 consecutive turns from line 2; at most 2 in a row"


def test_dominance_two_turns_not_flagged(tmp_path: Path) -> None:
    text = "HEXABELLA: Why?\nCIPHERFOX: One.\nCIPHERFOX: Two.\nHEXABELLA: Ok.\nHEXABELLA: Then?\n"
    assert run(tmp_path, text, DOMINANCE, kind="podcast").findings == []


def test_dominance_run_interrupted_by_other_speaker_resets(tmp_path: Path) -> None:
    text = "CIPHERFOX: One.\nCIPHERFOX: Two.\nHEXABELLA: Hm.\nCIPHERFOX: Three.\nCIPHERFOX: Four.\n"
    assert run(tmp_path, text, DOMINANCE, kind="podcast").findings == []


def test_dominance_long_run_is_one_finding(tmp_path: Path) -> None:
    text = "HEXABELLA: Go.\n" + "".join(f"CIPHERFOX: Part {i}.\n" for i in range(5))
    report = run(tmp_path, text, DOMINANCE, kind="podcast")
    assert [loc(f) for f in report.findings] == [(4, 1, 4, 10, (53, 62), "CIPHERFOX")]
    assert "holds 5 consecutive turns from line 2" in report.findings[0].message


# --- repetition -------------------------------------------------------------------------------------------------


REPEAT = ("repeat", "repetition", "cross-project", "medium", "ignore: [that, had]")


def test_repetition_case_insensitive_and_across_lines(tmp_path: Path) -> None:
    text = "The the pool.\nIt is\nis free.\n"
    report = run(tmp_path, text, REPEAT)
    assert [loc(f) for f in report.findings] == [
        (1, 1, 1, 8, (0, 7), "The the"),
        (2, 4, 3, 3, (17, 22), "is\nis"),
    ]
    assert report.findings[0].message == "'The' repeated"
    assert report.findings[0].suggestion == "keep one 'The'"


def test_repetition_negative_ignore_list_digits_and_partial_words(tmp_path: Path) -> None:
    text = "He said that that flag was gone. It had had no effect. Wait 10 10 times. The theory.\n"
    assert run(tmp_path, text, REPEAT).findings == []


# --- fabrication ------------------------------------------------------------------------------------------------


FABRICATION = ("fab", "fabrication", "cross-project", "medium", "allow: [/proc/meminfo, https://allowed.example/]")
FACTS_TEXT = "Config in /etc/app/conf.yaml, version 1.2.3, docs at https://example.com/docs/ and more."
KNOWN_TITLE = "One GPU Service At A Time"


def facts() -> KnownFacts:
    return KnownFacts.from_sources([FACTS_TEXT], [KNOWN_TITLE])


def test_fabrication_flags_unknown_claims(tmp_path: Path) -> None:
    text = ("Edit /etc/app/other.yaml now.\n"
            "We ran 9.9.9 there.\n"
            "See https://evil.example.org/x for it.\n"
            'Read "Made Up Article Title" too.\n'
            "Or run `/opt/fake/tool.sh` inline.\n")
    report = run(tmp_path, text, FABRICATION, facts=facts())
    assert [loc(f) for f in report.findings] == [
        (1, 6, 1, 25, (5, 24), "/etc/app/other.yaml"),
        (2, 8, 2, 13, (37, 42), "9.9.9"),
        (3, 5, 3, 31, (54, 80), "https://evil.example.org/x"),
        (4, 7, 4, 28, (95, 116), "Made Up Article Title"),
        (5, 9, 5, 26, (131, 148), "/opt/fake/tool.sh"),
    ]
    assert report.findings[1].message == ("possible fabrication: version '9.9.9' appears in neither the KB nor the "
                                          "published articles")


def test_fabrication_known_allowed_and_normalised_claims_pass(tmp_path: Path) -> None:
    text = ("Edit /etc/app/conf.yaml and read /proc/meminfo/.\n"
            "We ran 1.2.3 there.\n"
            "See https://example.com/docs, https://example.com/docs/#setup and https://EXAMPLE.com/docs#x.\n"
            "Also https://allowed.example and https://allowed.example/#top.\n"
            f'Read "{KNOWN_TITLE}" and [{KNOWN_TITLE}](https://example.com/docs/).\n'
            "```\ncat /opt/in/code/block.sh 7.7.7\n```\n")
    report = run(tmp_path, text, FABRICATION, facts=facts())
    assert report.findings == []


def test_fabrication_without_facts_flags_everything(tmp_path: Path) -> None:
    report = run(tmp_path, "Edit /etc/app/conf.yaml on 1.2.3.\n", FABRICATION)
    assert [f.match for f in report.findings] == ["/etc/app/conf.yaml", "1.2.3"]


def test_fabrication_kinds_restrict_what_is_checked(tmp_path: Path) -> None:
    report = run(tmp_path, "Edit /etc/app/x.yaml on 9.9.9 per https://evil.example.org/x.\n",
                 ("fab", "fabrication", "cross-project", "medium", "kinds: [url]"))
    assert [loc(f) for f in report.findings] == [(1, 35, 1, 61, (34, 60), "https://evil.example.org/x")]


# --- version_required -------------------------------------------------------------------------------------------


VERSIONS = ("ver", "version_required", "cross-project", "low", "names: [SGLang, Mistral Small]")


def test_version_required_flags_a_name_without_version(tmp_path: Path) -> None:
    text = "We restarted SGLang twice. Version 0.5.2 was the fix.\n"
    report = run(tmp_path, text, VERSIONS)
    assert [loc(f) for f in report.findings] == [(1, 14, 1, 20, (13, 19), "SGLang")]
    assert report.findings[0].message.startswith("'SGLang' is named without a version")
    assert report.findings[0].suggestion.startswith("say which SGLang version")
    assert report.findings[0].level == "suggestion"
    assert report.verdict == "pass_with_warnings"


def test_version_required_version_in_same_sentence_passes(tmp_path: Path) -> None:
    text = "We ran SGLang 0.5.2 on the box. Then Mistral Small v4.1 answered.\n"
    assert run(tmp_path, text, VERSIONS).findings == []


def test_version_required_reports_the_first_mention_case_insensitively(tmp_path: Path) -> None:
    text = "It ran sglang fine! Then mistral small, and SGLang again, crashed.\nSGLang is back.\n"
    report = run(tmp_path, text, VERSIONS)
    assert [loc(f) for f in report.findings] == [
        (1, 8, 1, 14, (7, 13), "sglang"),
        (1, 26, 1, 39, (25, 38), "mistral small"),
    ]
    assert report.findings[0].message.startswith("'sglang' is named without a version")


def test_version_required_one_versioned_mention_covers_the_name(tmp_path: Path) -> None:
    text = "We ran SGLang 0.5.2 here.\n\nLater SGLang crashed. Then Mistral Small answered.\n"
    report = run(tmp_path, text, VERSIONS)
    assert [loc(f) for f in report.findings] == [(3, 28, 3, 41, (54, 67), "Mistral Small")]


def test_version_required_one_finding_per_name_and_sentence(tmp_path: Path) -> None:
    report = run(tmp_path, "SGLang and SGLang.\n", VERSIONS)
    assert [f.span for f in report.findings] == [(0, 6)]


# --- Markdown skipping ------------------------------------------------------------------------------------------


def test_markdown_structures_are_skipped_by_style_rules(tmp_path: Path) -> None:
    text = ("---\ntitle: absolutely\ntags: [delve]\n---\n"  # 1-4 YAML front matter
            "Intro is fine.\n"  # 5
            "\n"  # 6
            "```python\nprint('absolutely')\n```\n"  # 7-9
            "~~~\ndelve\n~~~\n"  # 10-12
            "\n"  # 13
            "    indented absolutely code\n"  # 14
            "\n"  # 15
            "Use `absolutely` inline, https://example.com/absolutely and [read](https://example.com/delve).\n"  # 16
            "A link [absolutely here](https://example.com/x) and delve.\n")  # 17
    report = run(tmp_path, text, PHRASES)
    assert [loc(f) for f in report.findings] == [
        (17, 9, 17, 19, (238, 248), "absolutely"),
        (17, 53, 17, 58, (282, 287), "delve"),
    ]


def test_toml_front_matter_is_skipped(tmp_path: Path) -> None:
    text = "+++\ntitle = 'absolutely'\n+++\nBody with delve.\n"
    report = run(tmp_path, text, PHRASES)
    assert [loc(f) for f in report.findings] == [(4, 11, 4, 16, (39, 44), "delve")]


def test_dashes_later_in_the_text_are_not_front_matter(tmp_path: Path) -> None:
    text = "Intro.\n---\nabsolutely\n---\n"
    assert [loc(f) for f in run(tmp_path, text, PHRASES).findings] == [(3, 1, 3, 11, (11, 21), "absolutely")]


def test_indented_code_at_the_start_and_with_tabs_is_skipped(tmp_path: Path) -> None:
    text = "    absolutely at the start\n\nProse.\n\n\tdelve with a tab\n\nProse delve.\n"
    assert [loc(f) for f in run(tmp_path, text, PHRASES).findings] == [(7, 7, 7, 12, (62, 67), "delve")]


def test_indented_nested_list_items_are_prose(tmp_path: Path) -> None:
    text = "- first\n\n    - nested delve\n"
    assert [loc(f) for f in run(tmp_path, text, PHRASES).findings] == [(3, 14, 3, 19, (22, 27), "delve")]


def test_indented_code_block_with_a_blank_line_is_skipped_entirely(tmp_path: Path) -> None:
    text = "Text.\n\n    def a():\n        pass\n\n    absolutely = 1\n\nAfter.\n"
    assert run(tmp_path, text, PHRASES).findings == []


def test_unclosed_fence_runs_to_the_end(tmp_path: Path) -> None:
    text = "delve\n```\nabsolutely\n"
    assert [f.match for f in run(tmp_path, text, PHRASES).findings] == ["delve"]


def test_stray_backtick_does_not_hide_the_next_paragraph(tmp_path: Path) -> None:
    text = "A stray ` here.\n\nSo here's the thing `code` end.\n"
    assert [f.match for f in run(tmp_path, text, PHRASES).findings] == ["here's the thing"]


def test_list_continuation_paragraph_is_prose(tmp_path: Path) -> None:
    text = "1. First step.\n\n    Then delve into the logs.\n"
    assert [f.match for f in run(tmp_path, text, PHRASES).findings] == ["delve"]


def test_crlf_documents_are_masked_like_lf(tmp_path: Path) -> None:
    text = "---\r\ntitle: absolutely\r\n---\r\nIntro.\r\n\r\n```\r\ndelve\r\n```\r\n\r\nabsolutely after.\r\n"
    report = run(tmp_path, text, PHRASES)
    assert [(f.line, f.match) for f in report.findings] == [(10, "absolutely")]


# --- inline directives ------------------------------------------------------------------------------------------


def test_gate_off_and_on_silence_every_rule(tmp_path: Path) -> None:
    text = ("delve one\n"
            "<!-- gate off -->\n"
            "delve and utilize two\n"
            "<!-- gate on -->\n"
            "delve three\n")
    report = run(tmp_path, text, PHRASES, SWAP)
    assert [(f.line, f.match) for f in report.findings] == [(1, "delve"), (5, "delve")]


def test_unclosed_gate_off_runs_to_the_end(tmp_path: Path) -> None:
    text = "delve\n<!-- gate off -->\ndelve\n\ndelve\n"
    assert [f.line for f in run(tmp_path, text, PHRASES).findings] == [1]


def test_gate_off_for_one_rule(tmp_path: Path) -> None:
    text = ("delve and utilize\n"
            "<!-- gate off: phrases -->\n"
            "delve and utilize\n"
            "<!-- gate on: phrases -->\n"
            "delve and utilize\n")
    report = run(tmp_path, text, PHRASES, SWAP)
    assert [(f.line, f.rule_id) for f in report.findings] == [
        (1, "phrases"), (1, "swap"), (3, "swap"), (5, "phrases"), (5, "swap"),
    ]


def test_gate_off_for_several_rules(tmp_path: Path) -> None:
    text = "<!-- gate off: phrases, swap -->\ndelve and utilize\n<!-- gate on: swap -->\ndelve and utilize\n"
    report = run(tmp_path, text, PHRASES, SWAP)
    assert [(f.line, f.rule_id) for f in report.findings] == [(4, "swap")]


def test_gate_ignore_covers_its_line_and_the_next_non_blank_line(tmp_path: Path) -> None:
    text = ("delve <!-- gate ignore phrases -->\n"  # 1: ignored
            "\n"
            "delve and utilize\n"  # 3: next non-blank line, phrases ignored, swap still reported
            "delve\n")  # 4: reported
    report = run(tmp_path, text, PHRASES, SWAP)
    assert [(f.line, f.rule_id) for f in report.findings] == [(3, "swap"), (4, "phrases")]


def test_gate_ignore_without_ids_ignores_every_rule(tmp_path: Path) -> None:
    text = "<!-- gate ignore -->\ndelve and utilize\ndelve\n"
    report = run(tmp_path, text, PHRASES, SWAP)
    assert [(f.line, f.rule_id) for f in report.findings] == [(3, "phrases")]


def test_html_comments_are_not_linted(tmp_path: Path) -> None:
    assert run(tmp_path, "<!-- delve here -->\nfine\n", PHRASES).findings == []


def test_directives_inside_code_blocks_do_nothing(tmp_path: Path) -> None:
    text = "```\n<!-- gate off -->\n```\ndelve\n"
    assert [f.line for f in run(tmp_path, text, PHRASES).findings] == [4]


# --- verdicts, ordering, selection ------------------------------------------------------------------------------


LOW = ("low-rule", "existence", "cross-project", "low", "phrases: [basically]")


def test_verdicts_and_counts(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb", PHRASES, SWAP, LOW)
    gate = QualityGate(kb)
    clean = gate.check("Sixty seconds has held.\n")
    assert (clean.verdict, clean.counts, clean.findings) == ("pass", {"error": 0, "warning": 0, "suggestion": 0}, [])
    warned = gate.check("We utilize it, basically.\n")
    assert warned.verdict == "pass_with_warnings"
    assert warned.counts == {"error": 0, "warning": 1, "suggestion": 1}
    failed = gate.check("We utilize it. Absolutely.\n")
    assert failed.verdict == "fail" and failed.counts == {"error": 1, "warning": 1, "suggestion": 0}
    assert failed.kind == "article" and failed.chars == len("We utilize it. Absolutely.\n")
    assert failed.rules_checked == ["low-rule", "phrases", "swap"]


def test_findings_are_sorted_by_span_then_rule_id_and_stable(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb",
                 ("z-words", "existence", "cross-project", "high", "phrases: [ABSOLUTELY, delve]"),
                 ("a-caps", "caps", "cross-project", "medium", "allow: []"),
                 ("m-long", "existence", "cross-project", "low", "phrases: [absolutely not]"),
                 REPEAT)
    gate = QualityGate(kb)
    text = "We delve delve. ABSOLUTELY not.\n"
    first, second = gate.check(text), gate.check(text)
    assert first == second
    assert first.model_dump_json() == second.model_dump_json()
    assert [(f.span, f.rule_id) for f in first.findings] == [
        ((3, 8), "z-words"),
        ((3, 14), "repeat"),
        ((9, 14), "z-words"),
        ((16, 26), "a-caps"),
        ((16, 26), "z-words"),
        ((16, 30), "m-long"),
    ]


def test_only_restricts_the_rules(tmp_path: Path) -> None:
    report = run(tmp_path, "We utilize it. Absolutely.\n", PHRASES, SWAP, only=["swap"])
    assert report.rules_checked == ["swap"]
    assert [f.rule_id for f in report.findings] == ["swap"] and report.verdict == "pass_with_warnings"


def test_unknown_rule_id_lists_the_available_ones(tmp_path: Path) -> None:
    gate = QualityGate(make_kb(tmp_path / "kb", PHRASES, SWAP, CAPS))
    with pytest.raises(GateInputError) as err:
        gate.check("text\n", "article", ["swap", "nope", "caps"])
    message = str(err.value)
    assert "nope" in message and "caps" in message.split(";")[0]  # caps is podcast-only
    assert message.endswith("available: phrases, swap")


# --- input limits -----------------------------------------------------------------------------------------------


def test_text_over_2_mb_is_rejected(tmp_path: Path) -> None:
    gate = QualityGate(make_kb(tmp_path / "kb", PHRASES))
    with pytest.raises(GateInputError, match="larger than 2 MB"):
        gate.check("a" * (MAX_INPUT_BYTES + 1))
    with pytest.raises(GateInputError, match="larger than 2 MB"):  # under 2 M characters, over 2 MB of UTF-8
        gate.check("é" * (MAX_INPUT_BYTES // 2 + 1))
    assert gate.check("a" * (MAX_INPUT_BYTES - 6) + " delve").findings[0].span == (MAX_INPUT_BYTES - 5,
                                                                                   MAX_INPUT_BYTES)


def test_nul_byte_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(GateInputError, match="NUL"):
        QualityGate(make_kb(tmp_path / "kb", PHRASES)).check("text\x00more")
    with pytest.raises(GateInputError, match="NUL"):
        validate_input("\x00")


def test_decode_input() -> None:
    assert decode_input("caf\u00e9 delve\n".encode()) == "café delve\n"
    assert decode_input(b"\xef\xbb\xbfBOM first") == "BOM first"
    with pytest.raises(GateInputError, match="not UTF-8 text \\(invalid byte at offset 3\\)"):
        decode_input(b"caf\xe9")
    with pytest.raises(GateInputError, match="NUL"):
        decode_input(b"a\x00b")
    with pytest.raises(GateInputError, match=f"the limit is {MAX_INPUT_BYTES} bytes"):
        decode_input(b"a" * (MAX_INPUT_BYTES + 1))


# --- Unicode ----------------------------------------------------------------------------------------------------


def test_columns_stay_correct_when_lower_changes_length(tmp_path: Path) -> None:
    assert len("İ".lower()) == 2  # the premise: lower-casing would shift every later offset
    text = "İİİ ok.\nİstanbul: here's the thing, Delve.\n"
    report = run(tmp_path, text, PHRASES, VERSIONS)
    assert [loc(f) for f in report.findings] == [
        (2, 11, 2, 27, (18, 34), "here's the thing"),
        (2, 29, 2, 34, (36, 41), "Delve"),
    ]
    report = run(tmp_path, "İİ then SGLang ran.\n", VERSIONS)
    assert [loc(f) for f in report.findings] == [(1, 9, 1, 15, (8, 14), "SGLang")]


def test_columns_count_characters_not_bytes(tmp_path: Path) -> None:
    text = "🚀 café — delve\n"
    assert [loc(f) for f in run(tmp_path, text, PHRASES).findings] == [(1, 10, 1, 15, (9, 14), "delve")]


# --- fixtures against the shipped KB ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_gate() -> QualityGate:
    kb = load_kb([default_kb_dir()])
    assert kb.errors == []
    return QualityGate(kb, build_facts(kb, []))


def test_podcast_fixture_fails_at_the_known_lines(shipped_gate: QualityGate) -> None:
    text = (FIXTURES / "podcast_episode.txt").read_text(encoding="utf-8")
    report = shipped_gate.check(text, "podcast")
    types = {e.id: e.type for e in shipped_gate.kb.entries.values()}
    assert report.verdict == "fail"
    got = [(f.line, f.column, types[f.rule_id], f.match) for f in report.findings]
    assert got == [
        (8, 48, "existence", "Here's the thing"),
        (10, 100, "caps", "REALLY"),
        (11, 12, "markup", "*laughs*"),
        (14, 1, "dominance", "CIPHERFOX"),
        (15, 12, "markup", "[music]"),
    ]
    lines = text.splitlines()
    for f in report.findings:
        assert lines[f.line - 1][f.column - 1 : f.end_column - 1] == f.match
        assert text[f.span[0] : f.span[1]] == f.match
    assert {f.severity for f in report.findings if types[f.rule_id] in ("existence", "markup")} == {"high"}


def test_clean_article_fixture_passes(shipped_gate: QualityGate) -> None:
    text = (FIXTURES / "clean_article.md").read_text(encoding="utf-8")
    report = shipped_gate.check(text, "article")
    assert report.findings == []
    assert report.verdict == "pass"
    assert report.rules_checked  # the shipped rules did run
    # the code block is what keeps "absolutely" out: without the fences it is found
    unfenced = shipped_gate.check(text.replace("```ini\n", "").replace("```\n", ""), "article")
    assert "absolutely" in [f.match for f in unfenced.findings]
