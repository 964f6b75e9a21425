"""The compiled gate cached between ``sovereign-mcp gate`` runs: a cached run prints exactly what a full run
prints, and any change to what the gate was built from (KB, corpus, settings inputs) or a bad cache file
means a full run again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sovereign_mcp import cli
from sovereign_mcp.cli import gate as gate_cli
from sovereign_mcp.gate import snapshot
from sovereign_mcp.gate.snapshot import GateSnapshot, snapshot_dir, snapshot_key
from sovereign_mcp.kb.entry_types import KIND_SCOPES
from sovereign_mcp.kb.loader import load_kb
from sovereign_mcp.paths import default_kb_dir
from tests.helpers import isolate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gate"
PODCAST = FIXTURES / "podcast_episode.txt"
ARTICLE = FIXTURES / "clean_article.md"
POST = "---\ntitle: {title}\ndate: {date}\n---\n\nStop one service before you start the next.\n"


class World:
    """A tmp KB (a copy of the shipped one), a tmp corpus, a tmp data dir and user cache."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.kb = tmp / "kb"
        shutil.copytree(default_kb_dir(), self.kb)
        self.corpus = tmp / "corpus"
        self.corpus.mkdir()
        (self.corpus / "one-gpu.md").write_text(POST.format(title="One GPU Service At A Time", date="2025-02-01"))
        self.data = tmp / "data"
        self.capsys = capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(["gate", *args, "--corpus", str(self.corpus), "--data-dir", str(self.data),
                         "--kb", str(self.kb)])
        out = self.capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> World:
    isolate(monkeypatch, tmp_path)
    return World(tmp_path, capsys)


def _no_full_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the full path ran although a current snapshot exists")

    monkeypatch.setattr(gate_cli, "_full_gate", refuse)


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
@pytest.mark.parametrize("kind, fixture", [("podcast", PODCAST), ("article", ARTICLE), ("article", PODCAST)])
def test_a_cached_run_prints_what_the_full_run_printed(world: World, monkeypatch: pytest.MonkeyPatch, fmt: str,
                                                       kind: str, fixture: Path) -> None:
    full = world.run(str(fixture), "--kind", kind, "--format", fmt)
    assert len(list(snapshot_dir().glob("*.pkl"))) == 1
    _no_full_run(monkeypatch)
    cached = world.run(str(fixture), "--kind", kind, "--format", fmt)
    assert cached == full
    assert full[1].strip()  # the run printed a report


def test_a_kb_edit_is_seen_on_the_next_run(world: World, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("We frobnicate the cluster.\n")
    assert world.run(str(note))[0] == 0
    (world.kb / "no-frobnicate.md").write_text(
        "---\nid: no-frobnicate\ntype: existence\nscope: article\nseverity: high\ntitle: No frobnicate\n---\n"
        "Prose.\n\n```yaml\nphrases: [frobnicate]\n```\n")
    code, out, _ = world.run(str(note))
    assert code == 1 and "[no-frobnicate]" in out


def test_a_new_article_is_a_known_title_on_the_next_run(world: World, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text('As "The Second Service Story" explains, wait for the port to close.\n')
    assert "possible fabrication: title 'The Second Service Story'" in world.run(str(note))[1]
    (world.corpus / "second.md").write_text(POST.format(title="The Second Service Story", date="2025-03-01"))
    assert "possible fabrication" not in world.run(str(note))[1]


def test_a_corrupt_snapshot_means_a_full_run_and_a_fresh_file(world: World) -> None:
    full = world.run(str(PODCAST), "--kind", "podcast")
    [stored] = snapshot_dir().glob("*.pkl")
    stored.write_bytes(b"not a pickle")
    code, out, err = world.run(str(PODCAST), "--kind", "podcast")
    assert (code, out) == full[:2] and "gate plan cache" in err and "unusable" in err
    assert stored.read_bytes()[:1] == b"\x80"  # rewritten as a pickle


def test_rules_and_log_level_always_take_the_full_path(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.run(str(PODCAST), "--kind", "podcast")

    def refuse(key: str) -> None:
        raise AssertionError("a snapshot was read")

    monkeypatch.setattr(snapshot, "load_snapshot", refuse)
    some_rule = sorted(load_kb([world.kb]).in_scopes(KIND_SCOPES["podcast"], rules_only=True), key=lambda e: e.id)[0]
    out = world.run(str(PODCAST), "--kind", "podcast", "--rules", some_rule.id)[1]
    assert out.splitlines()[-1].startswith(f"{PODCAST}: ")
    assert cli.main(["gate", str(PODCAST), "--log-level", "error", "--corpus", str(world.corpus),
                     "--data-dir", str(world.data), "--kb", str(world.kb)]) == 1


def test_a_kb_with_errors_is_never_cached_so_its_warning_shows_every_time(world: World) -> None:
    (world.kb / "broken.md").write_text("---\nid: Broken_Id\ntype: existence\nscope: article\ntitle: x\n---\n")
    for _ in range(2):
        code, _, err = world.run(str(ARTICLE))
        assert code == 0 and "broken.md" in err
    assert list(snapshot_dir().glob("*.pkl")) == []


def test_an_unwritable_cache_leaves_the_command_working(world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    first = world.run(str(PODCAST), "--kind", "podcast")
    assert first[0] == 1 and world.run(str(PODCAST), "--kind", "podcast") == first


def test_the_key_follows_every_settings_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, tmp_path)
    base = snapshot_key(None, {})
    assert base == snapshot_key(None, {}) and base is not None
    assert snapshot_key(None, {"corpus": {"paths": [Path("elsewhere")]}}) != base
    monkeypatch.setenv("SOVEREIGN_MCP_KB__PATHS", '["/srv/kb"]')
    with_env = snapshot_key(None, {})
    assert with_env != base
    (tmp_path / "sovereign-mcp.toml").write_text("log_level = 'info'\n")  # ./sovereign-mcp.toml is read
    with_file = snapshot_key(None, {})
    assert with_file != with_env
    (tmp_path / "sovereign-mcp.toml").write_text("log_level = 'error'\n")
    assert snapshot_key(None, {}) != with_file
    assert snapshot_key(tmp_path / "missing.toml", {}) is None  # the full run reports the missing file
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)  # relative paths resolve elsewhere
    assert snapshot_key(None, {}) != with_env


def test_a_snapshot_expires_when_a_scheduled_post_falls_due(tmp_path: Path) -> None:
    from sovereign_mcp.gate.facts import KnownFacts

    snap = GateSnapshot("k", [], {}, KnownFacts(), {}, expires_at=1000.0)
    assert snap.is_current(now=999.0) and not snap.is_current(now=1000.0)
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("x")
    from sovereign_mcp.files import listing_digest

    snap = GateSnapshot("k", [(str(folder), (".md",), listing_digest(folder, (".md",)))], {}, KnownFacts(), {})
    assert snap.is_current()
    (folder / "b.md").write_text("y")
    assert not snap.is_current()


def test_the_snapshot_expires_with_the_first_scheduled_post(world: World) -> None:
    import pickle
    from datetime import UTC, datetime

    (world.corpus / "later.md").write_text(POST.format(title="A Post For Later", date="2999-01-01"))
    world.run(str(ARTICLE))
    [stored] = snapshot_dir().glob("*.pkl")
    snap = pickle.loads(stored.read_bytes())
    assert snap.expires_at == datetime(2999, 1, 1, tzinfo=UTC).timestamp()


def test_re_pointing_a_symlinked_kb_folder_is_a_change(world: World, tmp_path: Path) -> None:
    other = tmp_path / "kb-b"
    shutil.copytree(world.kb, other)
    (other / "no-frobnicate.md").write_text(
        "---\nid: no-frobnicate\ntype: existence\nscope: article\nseverity: high\ntitle: No frobnicate\n---\n"
        "Prose.\n\n```yaml\nphrases: [frobnicate]\n```\n")
    link = tmp_path / "kb-current"
    link.symlink_to(world.kb)
    note = tmp_path / "note.md"
    note.write_text("We frobnicate the cluster.\n")
    world.kb = link
    assert world.run(str(note))[0] == 0
    link.unlink()
    link.symlink_to(other)  # a deploy switching current -> the next release
    code, out, _ = world.run(str(note))
    assert code == 1 and "[no-frobnicate]" in out


def test_a_kb_edit_during_a_full_run_stores_no_snapshot(world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sovereign_mcp.gate import published

    real = published.published_facts_until

    def edit_meanwhile(settings: object) -> object:
        (world.kb / "no-frobnicate.md").write_text(
            "---\nid: no-frobnicate\ntype: existence\nscope: article\nseverity: high\ntitle: No frobnicate\n---\n"
            "Prose.\n\n```yaml\nphrases: [frobnicate]\n```\n")
        return real(settings)  # type: ignore[arg-type]

    monkeypatch.setattr(published, "published_facts_until", edit_meanwhile)
    note = tmp_path / "note.md"
    note.write_text("We frobnicate the cluster.\n")
    assert world.run(str(note))[0] == 0  # the KB was read before the edit
    assert list(snapshot_dir().glob("*.pkl")) == []  # so its plans are not kept
    monkeypatch.setattr(published, "published_facts_until", real)
    code, out, _ = world.run(str(note))
    assert code == 1 and "[no-frobnicate]" in out


def test_a_removed_working_folder_means_a_full_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, tmp_path)
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert snapshot_key(None, {}) is None
    assert cli.main(["gate", str(ARTICLE), "--kb", str(default_kb_dir()), "--corpus", str(tmp_path),
                     "--data-dir", str(tmp_path / "data")]) == 0
