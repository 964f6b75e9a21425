"""Tests for sovereign_mcp.corpus.passages: heading slugs, anchor de-duplication, passage splitting."""

from __future__ import annotations

import pytest

from sovereign_mcp.corpus.passages import AnchorRegistry, heading_slug, split_article

# --- heading_slug -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Why 60 s?", "why-60-s"),
        ("Hello, World!", "hello-world"),
        ("Step 1: Install", "step-1-install"),
        ("foo.bar (baz)", "foobar-baz"),
        ("C++ & Rust", "c--rust"),  # punctuation dropped, each space still becomes a hyphen
        ("snake_case and kebab-case", "snake_case-and-kebab-case"),
        ("Café au lait", "café-au-lait"),
        ("Ünïcödé Straße", "ünïcödé-straße"),
        ("日本語 テスト", "日本語-テスト"),
        ("  Padded Heading  ", "padded-heading"),
        ("UPPER lower", "upper-lower"),
    ],
)
def test_heading_slug_github_hugo_rules(text: str, expected: str) -> None:
    assert heading_slug(text) == expected


def test_heading_slug_of_pure_punctuation_is_empty() -> None:
    assert heading_slug("?!.,") == ""


# --- AnchorRegistry ---------------------------------------------------------------------------


def test_anchor_registry_suffixes_repeats() -> None:
    reg = AnchorRegistry()
    assert [reg.unique("Intro"), reg.unique("Intro"), reg.unique("Intro")] == ["intro", "intro-1", "intro-2"]


def test_anchor_registry_literal_suffix_heading_does_not_collide() -> None:
    reg = AnchorRegistry()
    anchors = [reg.unique(t) for t in ("Foo", "Foo", "Foo 1", "Foo")]
    assert anchors[:2] == ["foo", "foo-1"]
    assert anchors[2] != "foo-1"
    assert anchors[2].startswith("foo-1")
    assert len(set(anchors)) == len(anchors)


def test_anchor_registry_literal_suffix_first_then_repeats() -> None:
    reg = AnchorRegistry()
    anchors = [reg.unique(t) for t in ("Foo 1", "Foo", "Foo")]
    assert anchors[0] == "foo-1"
    assert anchors[1] == "foo"
    assert anchors[2] not in ("foo", "foo-1")
    assert len(set(anchors)) == 3


def test_anchor_registry_empty_slug_falls_back_to_section() -> None:
    reg = AnchorRegistry()
    assert [reg.unique("???"), reg.unique("!!!")] == ["section", "section-1"]


def test_duplicate_headings_in_article_get_numbered_anchors() -> None:
    body = "## Setup\n\nfirst setup text\n\n## Setup\n\nsecond setup text\n\n## Setup\n\nthird setup text\n"
    _, sections, passages = split_article(body, min_chars=0)
    assert [s.anchor for s in sections] == ["setup", "setup-1", "setup-2"]
    assert [p.anchor for p in passages] == ["setup", "setup-1", "setup-2"]
    assert [p.text for p in passages] == ["first setup text", "second setup text", "third setup text"]


# --- split_article ----------------------------------------------------------------------------


def test_leading_h1_is_title_not_heading() -> None:
    body = "# The Title\n\nIntro paragraph.\n\n## Part One\n\nPart one text.\n"
    h1, sections, passages = split_article(body, min_chars=0)
    assert h1 == "The Title"
    assert [s.text for s in sections] == ["Part One"]
    assert all("The Title" not in p.heading_path for p in passages)
    assert passages[0].heading_path == ()
    assert passages[0].anchor == ""
    assert passages[1].heading_path == ("Part One",)


def test_h1_after_content_is_a_section_not_the_title() -> None:
    body = "Some intro first.\n\n# Late Heading\n\nText after.\n"
    h1, sections, passages = split_article(body, min_chars=0)
    assert h1 is None
    assert [(s.level, s.text) for s in sections] == [(1, "Late Heading")]
    assert passages[-1].heading_path == ("Late Heading",)


def test_nested_heading_paths() -> None:
    body = (
        "## A\n\ntext in a\n\n### B\n\ntext in b\n\n#### C\n\ntext in c\n\n"
        "### D\n\ntext in d\n\n## E\n\ntext in e\n"
    )
    _, _, passages = split_article(body, min_chars=0)
    got = {p.index_text: (p.heading_path, p.anchor) for p in passages}
    assert got == {
        "text in a": (("A",), "a"),
        "text in b": (("A", "B"), "b"),
        "text in c": (("A", "B", "C"), "c"),
        "text in d": (("A", "D"), "d"),
        "text in e": (("E",), "e"),
    }


CODE_BODY = """\
## Install

Run the installer like this.

```python
fenced_secret_token = 1
```

    indented_secret_token = 2

<div class="x">
html_secret_token
</div>

And then you are done.
"""


def test_code_and_html_blocks_excluded_from_passages() -> None:
    _, _, passages = split_article(CODE_BODY, min_chars=0)
    assert [p.index_text for p in passages] == ["Run the installer like this.", "And then you are done."]
    for p in passages:
        for secret in ("fenced_secret_token", "indented_secret_token", "html_secret_token", "```", "<div"):
            assert secret not in p.index_text
            assert secret not in p.text


def test_code_excluded_even_when_small_paragraphs_merge() -> None:
    _, _, passages = split_article(CODE_BODY, min_chars=200)
    assert len(passages) == 1
    text = passages[0].text
    assert "Run the installer like this." in text
    assert "And then you are done." in text
    assert "secret_token" not in text
    assert "secret_token" not in passages[0].index_text


def test_document_with_only_code_has_no_passages() -> None:
    h1, sections, passages = split_article("```\nprint('hi')\n```\n\n    more code\n", min_chars=0)
    assert h1 is None
    assert sections == []
    assert passages == []


def test_link_target_not_indexed_but_link_text_is() -> None:
    body = "See [the manual page](https://example.com/zzqtarget/path) and ![alt words](img/zzqimage.png) now.\n"
    _, _, passages = split_article(body, min_chars=0)
    assert len(passages) == 1
    index_text = passages[0].index_text
    assert "the manual page" in index_text
    assert "alt words" in index_text
    assert "zzqtarget" not in index_text
    assert "example.com" not in index_text
    assert "zzqimage" not in index_text
    # the passage text is the Markdown source, so it keeps the link
    assert "https://example.com/zzqtarget/path" in passages[0].text


def test_inline_code_is_indexed() -> None:
    _, _, passages = split_article("Call `frobnicate()` twice.\n", min_chars=0)
    assert passages[0].index_text == "Call frobnicate() twice."


def test_tiny_paragraphs_merge_with_neighbour_under_same_heading() -> None:
    long = "This paragraph is long enough to stand on its own as a passage. " * 2
    body = f"## H\n\nTiny.\n\n{long}\n\nAlso tiny.\n"
    _, _, passages = split_article(body, min_chars=50)
    assert len(passages) == 1
    assert passages[0].text.startswith("Tiny.")
    assert passages[0].text.endswith("Also tiny.")
    assert "stand on its own" in passages[0].index_text


def test_large_paragraphs_stay_separate() -> None:
    p1 = "First big paragraph with plenty of words in it to pass the limit."
    p2 = "Second big paragraph with plenty of words in it to pass the limit."
    _, _, passages = split_article(f"## H\n\n{p1}\n\n{p2}\n", min_chars=20)
    assert [p.text for p in passages] == [p1, p2]


def test_tiny_trailing_paragraph_merges_backwards() -> None:
    p1 = "First big paragraph with plenty of words in it to pass the limit."
    _, _, passages = split_article(f"## H\n\n{p1}\n\nTail.\n", min_chars=20)
    assert len(passages) == 1
    assert passages[0].text == f"{p1}\n\nTail."
    assert passages[0].index_text == f"{p1} Tail."


def test_tiny_paragraphs_never_merge_across_headings() -> None:
    body = "Intro.\n\n## A\n\nTiny a.\n\n### B\n\nTiny b.\n\n## C\n\nTiny c.\n"
    _, _, passages = split_article(body, min_chars=500)
    assert [(p.heading_path, p.text) for p in passages] == [
        ((), "Intro."),
        (("A",), "Tiny a."),
        (("A", "B"), "Tiny b."),
        (("C",), "Tiny c."),
    ]


def test_section_spans() -> None:
    body = (
        "# Title\n\nIntro.\n\n"
        "## Alpha\n\nalpha text\n\n"
        "### Alpha child\n\nchild text\n\n"
        "## Beta\n\nbeta text\n\n"
        "#### Deep\n\ndeep text\n"
    )
    _, sections, _ = split_article(body, min_chars=0)
    spans = {s.anchor: body[s.start : s.end] for s in sections}
    assert spans["alpha"] == "## Alpha\n\nalpha text\n\n### Alpha child\n\nchild text\n\n"
    assert spans["alpha-child"] == "### Alpha child\n\nchild text\n\n"
    assert spans["beta"] == "## Beta\n\nbeta text\n\n#### Deep\n\ndeep text\n"
    assert spans["deep"] == "#### Deep\n\ndeep text\n"
    assert sections[-1].end == len(body)
    for s in sections:
        assert body[s.start :].startswith("#" * s.level + " " + s.text)


def test_section_spans_with_crlf_line_endings() -> None:
    body = "Intro\r\n\r\n## Second\r\n\r\nText two.\r\n\r\n## Third\r\n\r\nText three.\r\n"
    _, sections, passages = split_article(body, min_chars=0)
    assert body[sections[0].start : sections[0].end] == "## Second\r\n\r\nText two.\r\n\r\n"
    assert body[sections[1].start : sections[1].end] == "## Third\r\n\r\nText three.\r\n"
    assert [p.text for p in passages] == ["Intro", "Text two.", "Text three."]


def test_setext_heading_is_a_section() -> None:
    body = "Intro text.\n\nSetext Heading\n--------------\n\nUnder setext.\n"
    _, sections, passages = split_article(body, min_chars=0)
    assert [(s.level, s.text, s.anchor) for s in sections] == [(2, "Setext Heading", "setext-heading")]
    assert body[sections[0].start :].startswith("Setext Heading")
    assert passages[-1].heading_path == ("Setext Heading",)


def test_unicode_line_separator_does_not_shift_spans() -> None:
    body = "Intro line with a\u2028separator inside.\n\n## Second\n\nText of second.\n"
    _, sections, passages = split_article(body, min_chars=0)
    assert body[sections[0].start : sections[0].end] == "## Second\n\nText of second.\n"
    assert passages[1].text == "Text of second."
