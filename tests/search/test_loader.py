"""Tests for sovereign_mcp.corpus.loader: front matter flavours, dates, slugs, warnings, real corpora."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sovereign_mcp.corpus.loader import load_article, load_corpus
from sovereign_mcp.corpus.models import Article, Corpus

CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def load(root: Path, **kwargs) -> Corpus:
    return load_corpus([root], **kwargs)


def by_source(corpus: Corpus) -> dict[str, Article]:
    return {a.source: a for a in corpus.articles}


def only(corpus: Corpus) -> Article:
    assert len(corpus.articles) == 1, [a.source for a in corpus.articles]
    return corpus.articles[0]


# --- front matter flavours --------------------------------------------------------------------


def test_hugo_yaml_front_matter(tmp_path: Path) -> None:
    write(
        tmp_path,
        "content/post/computers-are-fast.md",
        "---\n"
        'title: "Computers are *fast*!"\n'
        "date: 2014-05-12T10:30:00Z\n"
        "url: /blog/2014/05/12/computers-are-fast/\n"
        "categories: [performance, hardware]\n"
        "---\n\n"
        "Some text about how fast computers are.\n",
    )
    corpus = load(tmp_path)
    a = only(corpus)
    assert a.title == "Computers are *fast*!"
    assert a.slug == "computers-are-fast"
    assert a.date == datetime(2014, 5, 12, 10, 30, tzinfo=UTC)
    assert a.url == "/blog/2014/05/12/computers-are-fast/"
    assert a.tags == ("performance", "hardware")
    assert a.source == "content/post/computers-are-fast.md"
    assert a.path == tmp_path.resolve() / "content/post/computers-are-fast.md"
    assert a.front_matter["date"] == "2014-05-12T10:30:00+00:00"  # made JSON-safe
    assert corpus.warnings == []


def test_jekyll_file_name_gives_date_and_slug(tmp_path: Path) -> None:
    write(tmp_path, "_posts/2014-05-12-foo.markdown", "---\ntitle: Foo post\nlayout: post\n---\n\nHello.\n")
    a = only(load(tmp_path))
    assert a.slug == "foo"
    assert a.title == "Foo post"
    assert a.date == datetime(2014, 5, 12, tzinfo=UTC)
    assert a.url == "/foo/"


def test_jekyll_front_matter_date_wins_over_file_name(tmp_path: Path) -> None:
    write(tmp_path, "_posts/2014-05-12-foo.md", "---\ntitle: Foo\ndate: 2015-06-07 08:09:10 -0400\n---\nx\n")
    a = only(load(tmp_path))
    assert a.date == datetime(2015, 6, 7, 12, 9, 10, tzinfo=UTC)
    assert a.date.utcoffset() is not None


def test_astro_pubdate_and_description(tmp_path: Path) -> None:
    write(
        tmp_path,
        "src/content/blog/first-post.md",
        "---\ntitle: 'First post'\ndescription: 'Lorem ipsum dolor sit amet'\npubDate: '2022-07-08'\n"
        "heroImage: '/blog-placeholder-3.jpg'\n---\n\nBody.\n",
    )
    a = only(load(tmp_path))
    assert a.slug == "first-post"
    assert a.date == datetime(2022, 7, 8, tzinfo=UTC)
    assert a.description == "Lorem ipsum dolor sit amet"
    assert a.front_matter["heroImage"] == "/blog-placeholder-3.jpg"


def test_toml_front_matter(tmp_path: Path) -> None:
    write(
        tmp_path,
        "post/toml-post.md",
        '+++\ntitle = "TOML post"\ndate = 2021-03-04T05:06:07Z\ntags = ["rust", "hugo"]\n'
        'summary = "A summary"\ndraft = false\n+++\n\n## Heading\n\nBody text.\n',
    )
    a = only(load(tmp_path))
    assert a.title == "TOML post"
    assert a.slug == "toml-post"
    assert a.date == datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert a.tags == ("rust", "hugo")
    assert a.description == "A summary"
    assert a.body.startswith("## Heading")
    assert "+++" not in a.body
    assert [s.anchor for s in a.sections] == ["heading"]


def test_malformed_toml_front_matter_warns(tmp_path: Path) -> None:
    write(tmp_path, "bad.md", "+++\ntitle = 'unterminated\n+++\nbody\n")
    write(tmp_path, "good.md", "+++\ntitle = 'Good'\n+++\nbody\n")
    corpus = load(tmp_path)
    assert [a.title for a in corpus.articles] == ["Good"]
    assert len(corpus.warnings) == 1
    assert corpus.warnings[0].path.endswith("bad.md")


def test_explicit_slug_is_slugified(tmp_path: Path) -> None:
    write(tmp_path, "x.md", "---\ntitle: X\nslug: My Slug!\ndate: 2020-01-01\n---\nbody\n")
    a = only(load(tmp_path))
    assert a.slug == "my-slug"
    assert a.url == "/my-slug/"


def test_tags_categories_keywords_deduplicated(tmp_path: Path) -> None:
    write(
        tmp_path,
        "x.md",
        "---\ntitle: X\ndate: 2020-01-01\ntags: [a, b]\ncategories: [b, c]\nkeywords: c, d\n---\nbody\n",
    )
    assert only(load(tmp_path)).tags == ("a", "b", "c", "d")


def test_tags_as_comma_string(tmp_path: Path) -> None:
    write(tmp_path, "x.md", "---\ntitle: X\ndate: 2020-01-01\ntags: 'python, web dev ,sqlite'\n---\nbody\n")
    assert only(load(tmp_path)).tags == ("python", "web dev", "sqlite")


def test_tags_as_space_separated_string(tmp_path: Path) -> None:
    write(tmp_path, "x.md", "---\ntitle: X\ndate: 2020-01-01\ntags: python sqlite\n---\nbody\n")
    assert only(load(tmp_path)).tags == ("python", "sqlite")


# --- no front matter --------------------------------------------------------------------------


def test_no_front_matter_title_from_h1_and_topic_tag(tmp_path: Path) -> None:
    path = write(tmp_path, "python/my-note.md", "# My Note Title\n\nSome content of the note.\n")
    stamp = datetime(2019, 8, 7, 6, 5, 4, tzinfo=UTC).timestamp()
    os.utime(path, (stamp, stamp))
    a = only(load(tmp_path))
    assert a.title == "My Note Title"
    assert a.slug == "my-note"
    assert a.tags == ("python",)
    assert a.date == datetime(2019, 8, 7, 6, 5, 4, tzinfo=UTC)  # from the mtime
    assert a.front_matter == {}
    assert all("My Note Title" not in p.heading_path for p in a.passages)


def test_no_front_matter_nested_topic_folders_become_tags(tmp_path: Path) -> None:
    write(tmp_path, "dev/python/note.md", "# Note\n\ntext\n")
    assert only(load(tmp_path)).tags == ("dev", "python")


def test_no_front_matter_at_root_has_no_tags(tmp_path: Path) -> None:
    write(tmp_path, "note.md", "# Note\n\ntext\n")
    assert only(load(tmp_path)).tags == ()


def test_no_front_matter_no_heading_title_from_file_name(tmp_path: Path) -> None:
    write(tmp_path, "some_plain-note.md", "Just text, no heading.\n")
    a = only(load(tmp_path))
    assert a.title == "some plain note"
    assert a.slug == "some_plain-note"


def test_no_front_matter_date_from_file_name(tmp_path: Path) -> None:
    write(tmp_path, "2020-02-03-dated-note.md", "# Dated\n\ntext\n")
    a = only(load(tmp_path))
    assert a.date == datetime(2020, 2, 3, tzinfo=UTC)
    assert a.slug == "dated-note"


def test_no_front_matter_date_from_folder_path(tmp_path: Path) -> None:
    path = write(tmp_path, "journal/2018/11/30/entry.md", "# Entry\n\ntext\n")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    a = only(load(tmp_path))
    assert a.date == datetime(2018, 11, 30, tzinfo=UTC)


def test_invalid_date_in_file_name_falls_back_to_mtime(tmp_path: Path) -> None:
    path = write(tmp_path, "2014-13-45-odd.md", "# Odd\n\ntext\n")
    os.utime(path, (1_500_000_000, 1_500_000_000))
    a = only(load(tmp_path))
    assert a.date == datetime.fromtimestamp(1_500_000_000, tz=UTC)


def test_index_md_takes_folder_name(tmp_path: Path) -> None:
    write(tmp_path, "posts/my-trip/index.md", "---\ntitle: My trip\ndate: 2020-01-01\n---\nbody\n")
    write(tmp_path, "notes/other-note/index.md", "# Other\n\nbody\n")
    corpus = load(tmp_path)
    assert sorted(a.slug for a in corpus.articles) == ["my-trip", "other-note"]
    assert by_source(corpus)["posts/my-trip/index.md"].url == "/my-trip/"


# --- drafts and future posts ------------------------------------------------------------------


def test_drafts_and_unpublished_skipped(tmp_path: Path) -> None:
    write(tmp_path, "draft.md", "---\ntitle: Draft\ndate: 2020-01-01\ndraft: true\n---\nbody\n")
    write(tmp_path, "unpub.md", "---\ntitle: Unpublished\ndate: 2020-01-01\npublished: false\n---\nbody\n")
    write(tmp_path, "tomldraft.md", "+++\ntitle = 'T'\ndraft = true\n+++\nbody\n")
    write(tmp_path, "live.md", "---\ntitle: Live\ndate: 2020-01-01\ndraft: false\npublished: true\n---\nbody\n")
    corpus = load(tmp_path)
    assert [a.title for a in corpus.articles] == ["Live"]
    assert corpus.skipped_drafts == 3
    assert corpus.warnings == []


def test_load_article_returns_none_for_draft(tmp_path: Path) -> None:
    path = write(tmp_path, "d.md", "---\ntitle: D\ndraft: true\n---\nbody\n")
    assert load_article(path, tmp_path, path.read_bytes()) is None


def test_future_posts_skipped_with_next_publish_at(tmp_path: Path) -> None:
    write(tmp_path, "past.md", "---\ntitle: Past\ndate: 2024-12-31\n---\nbody\n")
    write(tmp_path, "soon.md", "---\ntitle: Soon\ndate: 2025-03-01\n---\nbody\n")
    write(tmp_path, "later.md", "---\ntitle: Later\ndate: 2025-06-01T12:00:00Z\n---\nbody\n")
    corpus = load(tmp_path, now=NOW)
    assert [a.title for a in corpus.articles] == ["Past"]
    assert corpus.skipped_future == 2
    assert corpus.next_publish_at == datetime(2025, 3, 1, tzinfo=UTC)
    assert corpus.warnings == []

    later = load(tmp_path, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert sorted(a.title for a in later.articles) == ["Later", "Past", "Soon"]
    assert later.skipped_future == 0
    assert later.next_publish_at is None


# --- warnings ---------------------------------------------------------------------------------


def test_malformed_yaml_one_warning_others_load(tmp_path: Path) -> None:
    write(tmp_path, "a-good.md", "---\ntitle: Good A\ndate: 2020-01-01\n---\nbody\n")
    bad = write(tmp_path, "b-bad.md", "---\ntitle: [unclosed\ndate: 2020-01-01\n---\nbody\n")
    write(tmp_path, "c-good.md", "---\ntitle: Good C\ndate: 2020-01-01\n---\nbody\n")
    corpus = load(tmp_path)
    assert sorted(a.title for a in corpus.articles) == ["Good A", "Good C"]
    assert len(corpus.warnings) == 1
    warning = corpus.warnings[0]
    assert warning.path == str(bad.resolve())
    assert "front matter" in warning.message
    assert "b-bad.md" in str(warning)


def test_non_utf8_file_warns(tmp_path: Path) -> None:
    bad = write(tmp_path, "latin.md", b"\xff\xfe---\ntitle: caf\xe9\n---\nbody\n")
    write(tmp_path, "ok.md", "---\ntitle: OK\ndate: 2020-01-01\n---\nbody\n")
    corpus = load(tmp_path)
    assert [a.title for a in corpus.articles] == ["OK"]
    assert len(corpus.warnings) == 1
    assert corpus.warnings[0].path == str(bad.resolve())
    assert "UTF-8" in corpus.warnings[0].message


def test_invalid_calendar_date_in_front_matter_warns(tmp_path: Path) -> None:
    # an invalid calendar date inside YAML is reported as malformed front matter, not a crash
    write(tmp_path, "baddate.md", "---\ntitle: X\ndate: 2014-99-99\n---\nbody\n")
    corpus = load(tmp_path)
    assert corpus.articles == []
    assert len(corpus.warnings) == 1
    assert corpus.warnings[0].path.endswith("baddate.md")


def test_yaml_list_front_matter_warns(tmp_path: Path) -> None:
    write(tmp_path, "listy.md", "---\n- just\n- a list\n---\nbody\n")
    write(tmp_path, "ok.md", "---\ntitle: OK\ndate: 2020-01-01\n---\nbody\n")
    corpus = load(tmp_path)
    assert [a.title for a in corpus.articles] == ["OK"]
    assert len(corpus.warnings) == 1
    assert corpus.warnings[0].path.endswith("listy.md")
    assert "mapping" in corpus.warnings[0].message


def test_duplicate_slug_keeps_first_and_warns_on_later(tmp_path: Path) -> None:
    write(tmp_path, "a/same.md", "---\ntitle: First\ndate: 2020-01-01\n---\nbody\n")
    later = write(tmp_path, "b/same.md", "---\ntitle: Second\ndate: 2021-01-01\n---\nbody\n")
    corpus = load(tmp_path)
    a = only(corpus)
    assert a.title == "First"
    assert a.source == "a/same.md"
    assert len(corpus.warnings) == 1
    assert corpus.warnings[0].path == str(later.resolve())
    assert "duplicate slug 'same'" in corpus.warnings[0].message
    assert "a/same.md" in corpus.warnings[0].message


def test_duplicate_slug_across_roots_first_root_wins(tmp_path: Path) -> None:
    write(tmp_path / "r1", "post.md", "---\ntitle: From r1\ndate: 2020-01-01\n---\nbody\n")
    write(tmp_path / "r2", "post.md", "---\ntitle: From r2\ndate: 2020-01-01\n---\nbody\n")
    corpus = load_corpus([tmp_path / "r1", tmp_path / "r2"], now=NOW)
    assert [a.title for a in corpus.articles] == ["From r1"]
    assert len(corpus.warnings) == 1
    assert "r2" in corpus.warnings[0].path
    assert corpus.roots == [str((tmp_path / "r1").resolve()), str((tmp_path / "r2").resolve())]


def test_unreadable_file_warns(tmp_path: Path) -> None:
    locked = write(tmp_path, "locked.md", "---\ntitle: Locked\ndate: 2020-01-01\n---\nbody\n")
    write(tmp_path, "open.md", "---\ntitle: Open\ndate: 2020-01-01\n---\nbody\n")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running with privileges that can read a chmod 000 file")
        corpus = load(tmp_path)
    finally:
        locked.chmod(0o644)
    assert [a.title for a in corpus.articles] == ["Open"]
    assert len(corpus.warnings) == 1
    assert corpus.warnings[0].path == str(locked.resolve())
    assert "cannot read" in corpus.warnings[0].message


def test_read_error_passed_in_files_warns(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    good = write(root, "good.md", "---\ntitle: Good\ndate: 2020-01-01\n---\nbody\n")
    bad = root / "bad.md"
    err = PermissionError(13, "Permission denied")
    files = [(root, bad, err), (root, good, good.read_bytes())]
    corpus = load_corpus([root], now=NOW, files=files)
    assert [a.title for a in corpus.articles] == ["Good"]
    assert len(corpus.warnings) == 1
    assert corpus.warnings[0].path == str(bad)
    assert corpus.warnings[0].message == "cannot read: Permission denied"


# --- URLs -------------------------------------------------------------------------------------


def test_base_url_makes_absolute_urls_and_front_matter_url_wins(tmp_path: Path) -> None:
    write(tmp_path, "plain.md", "---\ntitle: Plain\ndate: 2020-01-01\n---\nbody\n")
    write(tmp_path, "custom.md", "---\ntitle: Custom\ndate: 2020-01-01\nurl: blog/2020/custom-path/\n---\nbody\n")
    write(
        tmp_path,
        "external.md",
        "---\ntitle: External\ndate: 2020-01-01\nurl: https://elsewhere.example/x/ext/\n---\nbody\n",
    )
    corpus = load(tmp_path, base_url="https://blog.example")
    urls = {a.source: (a.slug, a.url) for a in corpus.articles}
    assert urls["plain.md"] == ("plain", "https://blog.example/plain/")
    assert urls["custom.md"] == ("custom-path", "https://blog.example/blog/2020/custom-path/")
    assert urls["external.md"] == ("ext", "https://elsewhere.example/x/ext/")


def test_absolute_url_kept_without_base_url(tmp_path: Path) -> None:
    write(tmp_path, "e.md", "---\ntitle: E\ndate: 2020-01-01\npermalink: http://old.example/2010/post.html\n---\nb\n")
    a = only(load(tmp_path))
    assert a.url == "http://old.example/2010/post.html"
    assert a.slug == "post"


def test_anchor_url(tmp_path: Path) -> None:
    write(tmp_path, "p.md", "---\ntitle: P\ndate: 2020-01-01\n---\n\n## Why 60 s?\n\ntext\n")
    a = only(load(tmp_path, base_url="https://blog.example"))
    assert a.sections[0].anchor == "why-60-s"
    assert a.anchor_url("why-60-s") == "https://blog.example/p/#why-60-s"
    assert a.anchor_url("") == "https://blog.example/p/"


# --- walking ----------------------------------------------------------------------------------


def test_hidden_files_and_folders_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".obsidian/hidden-note.md", "# Hidden\n\ntext\n")
    write(tmp_path, "notes/.drafts/secret.md", "# Secret\n\ntext\n")
    write(tmp_path, ".dotfile.md", "# Dot\n\ntext\n")
    write(tmp_path, "notes/visible.md", "# Visible\n\ntext\n")
    corpus = load(tmp_path)
    assert [a.source for a in corpus.articles] == ["notes/visible.md"]
    assert corpus.warnings == []


def test_only_markdown_extensions_loaded(tmp_path: Path) -> None:
    for name in ("a.md", "b.markdown", "c.mdown", "d.mdx", "e.MD", "f.txt", "g.html"):
        write(tmp_path, name, f"# {name}\n\ntext\n")
    assert sorted(a.source for a in load(tmp_path).articles) == ["a.md", "b.markdown", "c.mdown", "d.mdx", "e.MD"]
    assert [a.source for a in load(tmp_path, extensions=[".txt"]).articles] == ["f.txt"]


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_corpus([tmp_path / "does-not-exist"])


def test_root_that_is_a_file_raises(tmp_path: Path) -> None:
    f = write(tmp_path, "file.md", "# x\n")
    with pytest.raises(FileNotFoundError):
        load_corpus([f])


# --- real corpora -----------------------------------------------------------------------------


def corpus_dir(name: str) -> Path:
    path = CORPORA / name
    if not path.is_dir():
        pytest.skip(f"shared corpus {path} not available")
    return path


def test_real_corpus_jvns() -> None:
    corpus = load_corpus([corpus_dir("jvns")])
    assert len(corpus.articles) > 380
    assert corpus.skipped_drafts == 2
    assert corpus.warnings == []
    slugs = [a.slug for a in corpus.articles]
    assert len(slugs) == len(set(slugs))
    assert all(a.date.tzinfo is not None for a in corpus.articles)
    assert all(a.title for a in corpus.articles)


def test_real_corpus_til() -> None:
    corpus = load_corpus([corpus_dir("til")])
    assert len(corpus.articles) > 570
    assert len(corpus.warnings) == 2
    names = sorted(Path(w.path).name for w in corpus.warnings)
    assert names == ["github-pages.md", "json-extract-path.md"]
    assert all("duplicate slug" in w.message for w in corpus.warnings)
