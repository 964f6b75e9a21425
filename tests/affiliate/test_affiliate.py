"""The affiliate-link checker (issue 14): known defects at known lines, clean texts without a finding, the live
pass against a loopback server that redirects, strips the tag, answers 404 and soft 404, the CLI over a whole
corpus, and ``check_affiliate_links`` over MCP/HTTP unpaid and paid.

The live-pass tests use a KB of their own whose program lives on ``localhost`` (short links on
``127.0.0.1``), so nothing leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from sovereign_mcp.affiliate.config import AffiliateSettings
from sovereign_mcp.affiliate.links import find_links
from sovereign_mcp.affiliate.service import AffiliateInputError, AffiliateService
from sovereign_mcp.gate.document import prepare
from sovereign_mcp.kb.loader import load_kb
from sovereign_mcp.paths import default_kb_dir
from tests.helpers import REPO, mcp_challenge
from tests.payments.test_l402_http import Server, pay_cli, serve

FIXTURES = REPO / "tests" / "fixtures" / "affiliate"
IDS = {"amazon_com": "cipherfox-20", "amazon_de": "cipherfox-21"}


def service(**settings: object) -> AffiliateService:
    return AffiliateService(AffiliateSettings(ids=IDS, **settings), load_kb([default_kb_dir()]))  # type: ignore[arg-type]


def found(report: object) -> list[tuple[str, int]]:
    return [(f.rule_id, f.line) for f in report.findings]  # type: ignore[attr-defined]


# -- links ---------------------------------------------------------------------------------------------------
def test_links_in_markdown_html_and_bare_text_but_not_in_code() -> None:
    text = ('[a](https://a.example/x "t") <https://b.example/y> https://c.example/z.\n'
            '<a class=x href="https://d.example/?p=1&amp;q=2" rel="Sponsored nofollow">d</a>\n'
            "`https://e.example/in-code` and\n```\nhttps://f.example/in-fence\n```\n")
    links = find_links(prepare(text))
    assert [(link.url, link.form) for link in links] == [
        ("https://a.example/x", "markdown"), ("https://b.example/y", "autolink"), ("https://c.example/z", "bare"),
        ("https://d.example/?p=1&q=2", "html")]
    assert links[3].rel == frozenset({"sponsored", "nofollow"})
    assert text[links[0].start:links[0].end] == "https://a.example/x"


# -- offline checks --------------------------------------------------------------------------------------------
def test_defects_at_their_lines() -> None:
    report = service().check(text=(FIXTURES / "defects.md").read_text(encoding="utf-8"))
    assert found(report) == [
        ("affiliate-late-disclosure", 8), ("affiliate-missing-id", 8), ("affiliate-foreign-id", 10),
        ("affiliate-rel-sponsored", 11)]
    assert report.verdict == "fail" and report.links == {"amazon": 4}
    foreign = report.findings[2]
    assert "otherblog-20" in foreign.message and foreign.suggestion == "replace it with tag=cipherfox-20"
    late = report.findings[0]
    assert "line 19" in late.message and late.level == "error"
    assert report.findings[1].suggestion == "add tag=cipherfox-20"


def test_a_clean_article_and_other_hosts_have_no_finding() -> None:
    report = service().check(text=(FIXTURES / "clean.md").read_text(encoding="utf-8"))
    assert report.findings == [] and report.verdict == "pass" and report.links == {"amazon": 3}


def test_no_disclosure_short_links_and_unconfigured_ids() -> None:
    text = "Get it [here](https://amzn.to/3abc) or [there](https://www.amazon.co.uk/dp/X?tag=someone-21).\n"
    report = service().check(text=text)
    assert found(report) == [("affiliate-no-disclosure", 1), ("affiliate-short-link", 1),
                             ("affiliate-unconfigured-id", 1)]
    assert "ids.amazon_co_uk" in report.findings[2].suggestion
    wrapped = "As an Amazon Associate I earn\nfrom qualifying purchases.\n\n" + text  # a disclosure over two lines
    assert "affiliate-no-disclosure" not in {f.rule_id for f in service().check(text=wrapped).findings}


def test_podcast_ad_read_needs_a_spoken_disclosure_first() -> None:
    bad = service().check(text=(FIXTURES / "ad-read.txt").read_text(encoding="utf-8"), kind="podcast")
    assert found(bad) == [("affiliate-spoken-disclosure", 3)]  # line 2 names Amazon without an ad cue
    assert bad.findings[0].match == "Amazon"
    good = service().check(text=(FIXTURES / "ad-read-clean.txt").read_text(encoding="utf-8"), kind="podcast")
    assert good.findings == []


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(AffiliateInputError, match="either text or slug"):
        service().check()
    with pytest.raises(AffiliateInputError, match="no published article with slug 'nope'"):
        service().check(slug="nope")
    with pytest.raises(AffiliateInputError, match="NUL"):
        service().check(text="a\x00b")


# -- the live pass -------------------------------------------------------------------------------------------
class Shop(BaseHTTPRequestHandler):
    """Redirects, a stripped tag, a 404, a soft 404, a long chain; HEAD refused on /nohead."""

    def _answer(self, body: bool) -> None:
        port = self.server.server_address[1]
        shop = f"http://localhost:{port}"
        routes = {
            "/short-ok": (302, f"{shop}/dp/1?tag=me-20"), "/short-strip": (301, f"{shop}/go/2?tag=me-20"),
            "/go/2?tag=me-20": (302, f"{shop}/dp/2"), "/dp/1?tag=me-20": (200, None), "/dp/2": (200, None),
            "/dp/gone?tag=me-20": (404, None), "/dp/soft?tag=me-20": (200, "soft"),
        }
        for hop in range(5):
            routes[f"/chain{hop}?tag=me-20"] = (302, f"{shop}/chain{hop + 1}?tag=me-20")
        routes["/chain5?tag=me-20"] = (200, None)
        if self.command == "HEAD" and self.path.startswith("/nohead"):
            self.send_response(405)
            self.end_headers()
            return
        routes["/nohead?tag=me-20"] = (200, None)
        status, extra = routes.get(self.path, (404, None))
        page = b"<h1>Sorry, page not found</h1>" if extra == "soft" else b"<h1>A product</h1>"
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", extra or "/")
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        if body:
            self.wfile.write(page)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def shop() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def local_kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    (root / "affiliate").mkdir(parents=True)
    (root / "affiliate" / "shop.md").write_text(
        "---\nid: local-shop\ntype: affiliate\nscope: affiliate\nseverity: high\ntitle: A shop on loopback\n---\n"
        "```yaml\nprogram: shop\ndomains: [localhost]\nshort_domains: [127.0.0.1]\nid_params: [tag]\n"
        "disclosures: [affiliate link]\n```\n", encoding="utf-8")
    return root


def test_live_pass_follows_redirects_and_finds_what_broke(shop: int, local_kb: Path) -> None:
    live = AffiliateService(AffiliateSettings(ids={"shop": "me-20"}, per_host_rate="100/second", budget_seconds=30),
                            load_kb([local_kb]))
    lines = [f"http://127.0.0.1:{shop}/short-ok", f"http://127.0.0.1:{shop}/short-strip",
             f"http://localhost:{shop}/dp/gone?tag=me-20", f"http://localhost:{shop}/dp/soft?tag=me-20",
             f"http://localhost:{shop}/chain0?tag=me-20", f"http://localhost:{shop}/nohead?tag=me-20"]
    text = "Each is an affiliate link.\n\n" + "\n".join(f"- {url}" for url in lines) + "\n"
    offline = live.check(text=text)
    assert [f.rule_id for f in offline.findings] == ["affiliate-short-link", "affiliate-short-link"]
    report = live.check(text=text, live=True)
    assert report.live and found(report) == [
        ("affiliate-short-link", 3),
        ("affiliate-id-stripped", 4), ("affiliate-short-link", 4),
        ("affiliate-dead-link", 5), ("affiliate-soft-404", 6), ("affiliate-redirect-chain", 7)]
    stripped = report.findings[1]
    assert f"localhost:{shop}/dp/2" in stripped.message and "2 redirect(s)" in stripped.message
    assert "HTTP 404" in report.findings[3].message and "page not found" in report.findings[4].message


def test_live_pass_stops_at_its_budget(shop: int, local_kb: Path) -> None:
    slow = AffiliateService(AffiliateSettings(ids={"shop": "me-20"}, per_host_rate="1/minute", budget_seconds=1),
                            load_kb([local_kb]))
    text = "An affiliate link: " + " ".join(f"http://localhost:{shop}/dp/1?tag=me-20&n={n}" for n in range(3))
    report = slow.check(text=text, live=True)
    skipped = [f for f in report.findings if f.rule_id == "affiliate-live-skipped"]
    assert len(skipped) == 1 and skipped[0].message.startswith("2 link(s) not checked live")


# -- the CLI ---------------------------------------------------------------------------------------------------
def test_cli_audits_a_whole_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from sovereign_mcp.cli import main

    corpus = tmp_path / "blog"
    corpus.mkdir()
    shutil.copy(FIXTURES / "defects.md", corpus / "desk.md")
    shutil.copy(FIXTURES / "clean.md", corpus / "box.md")
    (corpus / "plain.md").write_text("---\ntitle: Plain\ndate: 2026-01-01\n---\n\nNo links.\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for key, value in IDS.items():
        monkeypatch.setenv(f"SOVEREIGN_MCP_AFFILIATE__IDS__{key.upper()}", value)
    monkeypatch.setenv("SOVEREIGN_MCP_DATA_DIR", str(tmp_path / "data"))
    assert main(["affiliate", "--corpus", str(corpus)]) == 1
    out = capsys.readouterr().out
    assert "desk.md:8:" in out and "[affiliate-late-disclosure]" in out and "desk.md:10:" in out
    assert "box.md" not in out.replace("box.md: pass", "")  # the clean article has no finding line
    assert "amazon: 7 link(s) in 2 article(s); affiliate-foreign-id 1, affiliate-late-disclosure 1" in out
    assert main(["affiliate", str(FIXTURES / "clean.md"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["reports"][0]["verdict"] == "pass"
    assert main(["affiliate", str(tmp_path / "missing.md")]) == 2
    assert "missing.md" in capsys.readouterr().err


# -- over MCP, paid -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    corpus = tmp_path_factory.mktemp("affiliate-corpus")
    shutil.copy(FIXTURES / "defects.md", corpus / "desk.md")
    home = tmp_path_factory.mktemp("affiliate-mcp")
    with serve(corpus, home, SOVEREIGN_MCP_PAYMENTS__MCP_HTTP_402="false",
               SOVEREIGN_MCP_AFFILIATE__IDS='{"amazon_com": "cipherfox-20"}') as srv:
        yield srv


async def test_check_affiliate_links_unpaid_then_paid_over_mcp(paid_server: Server) -> None:
    arguments = {"slug": "desk"}
    required = await mcp_challenge(paid_server.url, "check_affiliate_links", arguments)
    assert required["tool"] == "check_affiliate_links" and required["amount_sat"] == 10
    credential = f"L402 {required['macaroon']}:{pay_cli(paid_server, required['invoice'])}"
    async with Client(StreamableHttpTransport(f"{paid_server.url}/mcp")) as client:
        paid = await client.call_tool("check_affiliate_links", {**arguments, "l402": credential},
                                      raise_on_error=False)
        assert not paid.is_error, paid.content
        report = paid.structured_content
        assert report["verdict"] == "fail" and report["source"] == "desk" and report["links"] == {"amazon": 4}
        assert {f["rule_id"] for f in report["findings"]} >= {"affiliate-late-disclosure", "affiliate-foreign-id"}
        # a call the tool refuses (live pass off here) is not charged: the same credential then buys a real check
        second = await mcp_challenge(paid_server.url, "check_affiliate_links", {"text": "x", "live": True})
        fresh = f"L402 {second['macaroon']}:{pay_cli(paid_server, second['invoice'])}"
        live = await client.call_tool("check_affiliate_links", {"text": "x", "live": True, "l402": fresh},
                                      raise_on_error=False)
        assert live.is_error and "live pass is off" in live.content[0].text
        after = await client.call_tool("check_affiliate_links", {"text": "No links here.", "l402": fresh},
                                       raise_on_error=False)
        assert not after.is_error and after.structured_content["verdict"] == "pass"
