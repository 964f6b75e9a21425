"""Tests for sovereign_mcp.config (load_settings, redacted, ConfigError) and the `config`/`search` CLI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w
from pydantic import SecretStr

from sovereign_mcp import cli
from sovereign_mcp.config import ConfigError, Settings, load_settings, redacted
from tests.helpers import isolate


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No SOVEREIGN_MCP_* variables, no ./sovereign-mcp.toml, no user config file."""
    isolate(monkeypatch, tmp_path, chdir=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- load_settings ----------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings(None)
    assert s.server.port == 8002
    assert s.server.host == "127.0.0.1"
    assert s.server.path == "/mcp"
    assert s.server.max_body_bytes == 1_048_576
    assert s.corpus.base_url is None
    assert s.search.max_results == 20
    assert s.index_dir == s.data_dir / "index"


def test_toml_file_via_explicit_path(tmp_path: Path) -> None:
    f = write_toml(
        tmp_path / "conf" / "my.toml",
        '[server]\nport = 8003\nhost = "0.0.0.0"\n\n[corpus]\nbase_url = "https://blog.example/"\n\n'
        "[search]\nmax_results = 7\n",
    )
    s = load_settings(f)
    assert s.server.port == 8003
    assert s.server.host == "0.0.0.0"
    assert s.server.path == "/mcp"  # untouched keys keep their defaults
    assert s.corpus.base_url == "https://blog.example"  # trailing slash stripped
    assert s.search.max_results == 7


def test_local_toml_picked_up_from_cwd(isolated: Path) -> None:
    write_toml(isolated / "sovereign-mcp.toml", "[server]\nport = 8111\n")
    assert load_settings(None).server.port == 8111


def test_explicit_path_beats_local_toml(isolated: Path, tmp_path: Path) -> None:
    write_toml(isolated / "sovereign-mcp.toml", "[server]\nport = 8111\n")
    f = write_toml(tmp_path / "other.toml", "[server]\nport = 8222\n")
    assert load_settings(f).server.port == 8222


def test_user_config_dir_used_when_no_local_file(tmp_path: Path) -> None:
    write_toml(tmp_path / "xdg-config" / "sovereign-mcp" / "config.toml", "[server]\nport = 8333\n")
    assert load_settings(None).server.port == 8333


def test_missing_explicit_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write_toml(tmp_path / "c.toml", '[server]\nport = 8003\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("SOVEREIGN_MCP_SERVER__PORT", "8500")
    s = load_settings(f)
    assert s.server.port == 8500
    assert s.server.host == "0.0.0.0"  # other TOML keys of the same section survive


def test_overrides_beat_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write_toml(tmp_path / "c.toml", '[server]\nport = 8003\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("SOVEREIGN_MCP_SERVER__PORT", "8500")
    s = load_settings(f, server={"port": 9100})
    assert s.server.port == 9100
    assert s.server.host == "0.0.0.0"


def test_none_overrides_are_ignored() -> None:
    s = load_settings(None, data_dir=None, log_level=None)
    assert s.log_level == "info"
    assert s.data_dir is not None


def test_invalid_port_in_toml(tmp_path: Path) -> None:
    f = write_toml(tmp_path / "c.toml", "[server]\nport = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(f)
    message = str(info.value)
    assert "server.port" in message
    assert "70000" in message
    assert str(f) in message


def test_invalid_port_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVEREIGN_MCP_SERVER__PORT", "not-a-number")
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(None)


def test_invalid_override() -> None:
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(None, server={"port": 0})


def test_invalid_base_url() -> None:
    with pytest.raises(ConfigError, match=r"corpus\.base_url"):
        load_settings(None, corpus={"base_url": "ftp://blog.example"})


def test_unknown_section_key_in_toml(tmp_path: Path) -> None:
    f = write_toml(tmp_path / "c.toml", "[server]\nprot = 8003\n")
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings(f)


def test_unknown_top_level_key_in_toml(tmp_path: Path) -> None:
    f = write_toml(tmp_path / "c.toml", "bogus_setting = 1\n")
    with pytest.raises(ConfigError, match="bogus_setting"):
        load_settings(f)


def test_broken_toml_syntax(tmp_path: Path) -> None:
    f = write_toml(tmp_path / "c.toml", "[server\nport = 8003\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(f)


def test_non_utf8_toml(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(f)


def test_toml_file_does_not_leak_into_later_loads(tmp_path: Path) -> None:
    f = write_toml(tmp_path / "c.toml", "[server]\nport = 8003\n")
    assert load_settings(f).server.port == 8003
    assert load_settings(None).server.port == 8002


# --- redacted ---------------------------------------------------------------------------------


class _SecretSettings(Settings):
    api_token: str = "hunter2"
    db_password: SecretStr = SecretStr("pw")
    tokens: list[str] = ["tok-a", "tok-b"]  # noqa: RUF012
    empty_token: str = ""
    macaroon_path: Path | None = None
    token_ttl: int = 30


def test_redacted_hides_secret_looking_values() -> None:
    data = redacted(_SecretSettings())
    assert data["api_token"] == "***"
    assert data["db_password"] == "***"
    assert data["tokens"] == ["***", "***"]
    assert data["empty_token"] == ""  # nothing to hide
    assert data["token_ttl"] == 30  # only strings are secret
    assert "macaroon_path" not in data  # None values are dropped (TOML cannot hold them)
    assert "hunter2" not in repr(data)
    assert data["server"]["host"] == "127.0.0.1"
    assert data["server"]["port"] == 8002


def test_redacted_is_plain_toml_serialisable_data(tmp_path: Path) -> None:
    s = load_settings(None, corpus={"paths": [tmp_path]}, data_dir=tmp_path / "data")
    data = redacted(s)
    assert data["corpus"]["paths"] == [str(tmp_path)]
    assert data["data_dir"] == str(tmp_path / "data")
    assert "base_url" not in data["corpus"]
    assert tomllib.loads(tomli_w.dumps(data))["server"]["port"] == 8002


# --- CLI --------------------------------------------------------------------------------------


def test_cli_config_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", "[server]\nport = 8003\n")
    rc = cli.main(["config", "show", "--config", str(f), "--data-dir", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "port = 8003" in out
    parsed = tomllib.loads(out)
    assert parsed["server"]["port"] == 8003
    assert parsed["server"]["host"] == "127.0.0.1"
    assert parsed["data_dir"] == str(tmp_path / "data")


def test_cli_config_option_before_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", "[server]\nport = 8003\n")
    rc = cli.main(["config", "--config", str(f), "show"])
    assert rc == 0
    assert tomllib.loads(capsys.readouterr().out)["server"]["port"] == 8003


def test_cli_invalid_config_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", "[server]\nport = 70000\n")
    rc = cli.main(["config", "show", "--config", str(f)])
    captured = capsys.readouterr()
    assert rc == 2
    assert "server.port" in captured.err
    assert captured.out == ""


def test_cli_unknown_key_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", "[search]\nmax_resluts = 3\n")
    assert cli.main(["config", "show", "--config", str(f)]) == 2
    assert "search.max_resluts" in capsys.readouterr().err


def test_cli_missing_config_file_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "show", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_cli_env_invalid_returns_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SOVEREIGN_MCP_SEARCH__MAX_RESULTS", "0")
    assert cli.main(["config", "show"]) == 2
    assert "search.max_results" in capsys.readouterr().err


def test_cli_search_missing_corpus_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-corpus"
    rc = cli.main(["search", "x", "--corpus", str(missing), "--data-dir", str(tmp_path / "data")])
    assert rc == 2
    assert "no-such-corpus" in capsys.readouterr().err


def test_cli_search_finds_article(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "zebra.md").write_text(
        "---\ntitle: Zebra notes\ndate: 2020-01-01\n---\n\n## Stripes\n\nThe okapi is not a zebra.\n",
        encoding="utf-8",
    )
    args = ["search", "okapi", "--corpus", str(corpus), "--data-dir", str(tmp_path / "data"), "--json"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert '"slug": "zebra"' in out
    assert "/zebra/#stripes" in out
    assert cli.main(["search", "nonexistentword", "--corpus", str(corpus), "--data-dir", str(tmp_path / "d2")]) == 1


def test_cli_search_n_below_one_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["search", "x", "-n", "0", "--corpus", str(tmp_path)]) == 2
    assert "-n" in capsys.readouterr().err


# --- cross-field rules, reported at start ---------------------------------------------------------


def test_workers_force_stateless_http() -> None:
    s = load_settings(None, server={"workers": 4, "stateless_http": False})
    assert s.server.stateless_http is True
    assert load_settings(None, server={"workers": 1, "stateless_http": False}).server.stateless_http is False


def test_cli_config_show_shows_forced_stateless(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", "[server]\nworkers = 3\nstateless_http = false\n")
    assert cli.main(["config", "show", "--config", str(f)]) == 0
    assert tomllib.loads(capsys.readouterr().out)["server"]["stateless_http"] is True


def test_pipeline_role_must_name_a_gpu_service() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, pipeline={"services": {"voxtral": "tts-box"}})
    message = str(err.value)
    assert "pipeline.services.voxtral" in message and "'tts-box'" in message
    assert "[[gpu.services]]" in message and "voxtral-tts" in message  # the names that exist
    assert "(root)" not in message
    ok = load_settings(None, pipeline={"services": {"voxtral": "voxtral-tts"}})
    assert ok.pipeline.services == {"voxtral": "voxtral-tts"}


def test_cli_config_show_bad_pipeline_role_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", '[pipeline.services]\ncomfyui = "flux"\n')
    assert cli.main(["config", "show", "--config", str(f)]) == 2
    captured = capsys.readouterr()
    assert "pipeline.services.comfyui" in captured.err and captured.out == ""


@pytest.mark.parametrize("payments, missing", [
    ({"backend": "lnbits"}, "payments.lnbits_url"),
    ({"backend": "lnbits", "lnbits_url": "http://127.0.0.1:5000"}, "payments.lnbits_invoice_key"),
    ({"backend": "lnd", "lnd_url": "https://127.0.0.1:8080"}, "payments.lnd_macaroon"),
    ({"backend": "cln", "cln_rune": "r"}, "payments.cln_url"),
])
def test_backend_credentials_are_reported(payments: dict[str, str], missing: str) -> None:
    s = load_settings(None, payments=payments)
    assert s.payments.missing_backend_setting() == missing
    (problem,) = s.problems()
    assert missing in problem and f"SOVEREIGN_MCP_{missing.upper().replace('.', '__')}" in problem


def test_no_problem_for_dev_or_disabled_payments() -> None:
    assert load_settings(None).problems() == []
    assert load_settings(None, payments={"backend": "lnbits", "enabled": False}).problems() == []
    full = load_settings(None, payments={"backend": "lnbits", "lnbits_url": "http://127.0.0.1:5000",
                                         "lnbits_invoice_key": "k"})
    assert full.payments.missing_backend_setting() is None and full.problems() == []


def test_cli_config_show_reports_missing_backend_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", '[payments]\nbackend = "lnbits"\nlnbits_url = "http://127.0.0.1:5000"\n')
    assert cli.main(["config", "show", "--config", str(f)]) == 1
    captured = capsys.readouterr()
    assert tomllib.loads(captured.out)["payments"]["backend"] == "lnbits"  # the rest is still shown
    assert "payments.lnbits_invoice_key" in captured.err


def test_cli_serve_refuses_missing_backend_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_toml(tmp_path / "c.toml", '[payments]\nbackend = "cln"\n')
    rc = cli.main(["serve", "--config", str(f), "--data-dir", str(tmp_path / "data"), "--port", "1"])
    assert rc == 2
    assert "payments.cln_url" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before anything was written
