"""Alt text (issue 14): the image input, the WAI checks, the captioner against a loopback OpenAI-compatible
vision stand-in that checks what it receives, the GPU lease on a managed SGLang stand-in, ``caption_image``
over MCP/HTTP unpaid, paid, and with no provider (not charged), and the CLI commands."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from sovereign_mcp.alttext.captioner import Captioner, CaptionUnavailable
from sovereign_mcp.alttext.config import AltTextSettings
from sovereign_mcp.alttext.images import ImageInputError, from_text
from sovereign_mcp.alttext.lint import lint_alt, lint_document
from sovereign_mcp.alttext.service import AltTextService, gpu_lease
from sovereign_mcp.inference.client import ChatClient
from sovereign_mcp.inference.config import InferenceSettings
from tests.fakes.fake_media import ScriptedLLM, make_png
from tests.helpers import mcp_challenge
from tests.payments.test_l402_http import Server, pay_cli, serve
from tests.pipeline.test_pipeline import World, gpu_events

PNG = make_png(32, 16)
ANSWER = {"role": "informative", "alt": "The GB10 box on a shelf with its status light green",
          "long_description": None, "text_in_image": None}


def vision(answer: object = ANSWER) -> ScriptedLLM:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return ScriptedLLM("vision", lambda prompt: text).start()


def chain(fake: ScriptedLLM) -> ChatClient:
    return ChatClient(InferenceSettings(providers=[{"name": "vision", "kind": "openai", "base_url": fake.base_url,
                                                    "model": "mistral-small-4", "timeout": 10, "connect_timeout": 1}],
                                        failure_threshold=1, cooldown_seconds=0.1))


# -- the image --
def test_image_from_base64_and_data_uri_and_refusals() -> None:
    b64 = base64.b64encode(PNG).decode()
    assert from_text(b64, 10_000).format == "png"
    assert from_text(f"data:image/png;base64,{b64}", 10_000).data == PNG
    jpeg = from_text("data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0" + b"0" * 20).decode(), 10_000)
    assert jpeg.format == "jpeg" and jpeg.data_uri().startswith("data:image/jpeg;base64,")
    with pytest.raises(ImageInputError, match="not valid base64"):
        from_text("not base64!!", 10_000)
    with pytest.raises(ImageInputError, match="not a PNG, JPEG or WebP"):
        from_text(base64.b64encode(b"GIF89a....").decode(), 10_000)
    with pytest.raises(ImageInputError, match="over the 100 byte limit"):
        from_text(b64, 100)
    with pytest.raises(ImageInputError, match="data: URI must be"):
        from_text("data:image/png,rawbytes", 10_000)


# -- the WAI checks --
@pytest.mark.parametrize(("alt", "role", "rules"), [
    (None, None, ["alt-missing"]),
    ("", None, ["alt-empty"]),
    ("", "informative", ["alt-empty-informative"]),
    ("Fan curve", "decorative", ["alt-decorative-not-empty"]),
    ("", "decorative", []),
    ("image of a rack", None, ["alt-redundant-prefix"]),
    ("Photo showing the rack", None, ["alt-redundant-prefix"]),
    ("IMG_2231.JPG", None, ["alt-filename"]),
    ("photo", None, ["alt-placeholder"]),
    ("x" * 126, None, ["alt-too-long"]),
    ("The GB10 box on a shelf", "informative", []),
])
def test_lint_alt(alt: str | None, role: str | None, rules: list[str]) -> None:
    assert [p.rule_id for p in lint_alt(alt, role)] == rules  # type: ignore[arg-type]


def test_lint_document_finds_images_outside_code_at_their_lines() -> None:
    text = ("# Post\n\n![image of the box](box.png)\n\n```\n![](in-code.png)\n```\n"
            '<img src="fan.png">\n<img src="line.png" alt="" role="presentation">\n![The fan, unplugged](fan.png)\n')
    report = lint_document(text)
    assert [(f.rule_id, f.line) for f in report.findings] == [("alt-redundant-prefix", 3), ("alt-missing", 8)]
    assert report.verdict == "fail"


# -- the captioner --
def test_caption_sends_the_image_as_a_data_uri_at_temperature_zero() -> None:
    fake = vision()
    try:
        result = Captioner(AltTextSettings(), chain(fake)).caption(from_text(base64.b64encode(PNG).decode(), 10**6),
                                                                   "The box runs one service at a time.")
        (request,) = fake.chat_requests
        body = request.body
        parts = body["messages"][-1]["content"]
        image = next(p for p in parts if p["type"] == "image_url")
        assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
        assert body["temperature"] == 0.0 and "one service at a time" in parts[0]["text"]
        assert "decision tree" in body["messages"][0]["content"]
    finally:
        fake.stop()
    assert result.alt == ANSWER["alt"] and result.role == "informative" and result.warnings == []
    assert result.provider == "vision" and result.html == f'<img src="image.png" alt="{ANSWER["alt"]}">'


def test_caption_roles_text_decorative_and_non_json_answers() -> None:
    image = from_text(base64.b64encode(PNG).decode(), 10**6)
    fake = vision({"role": "text", "alt": "", "text_in_image": "Sixty seconds"})
    try:
        captioner = Captioner(AltTextSettings(), chain(fake))
        assert captioner.caption(image).alt == "Sixty seconds"
        assert captioner.caption(image, role="decorative").alt == ""  # no model call
        assert len(fake.chat_requests) == 1
        fake.responder = lambda prompt: "An image of a server rack with blinking lights"
        odd = captioner.caption(image)
        assert odd.alt.startswith("An image of") and any("did not answer JSON" in w for w in odd.warnings)
        assert any(w.startswith("alt-redundant-prefix") for w in odd.warnings)
    finally:
        fake.stop()


def test_no_provider_is_a_clear_error() -> None:
    fake = vision()
    fake.stop()
    with pytest.raises(CaptionUnavailable, match="no vision model answered"):
        Captioner(AltTextSettings(deadline_seconds=5), chain(fake)).caption(
            from_text(base64.b64encode(PNG).decode(), 10**6))


def test_caption_holds_the_lease_of_a_loaded_sglang_and_never_starts_it(tmp_path: Path) -> None:
    world = World(tmp_path)
    (tmp_path / "corpus").mkdir()
    world.sglang.responder = lambda prompt: json.dumps(ANSWER)
    world.sglang.start()
    try:
        deps = world.service().deps
        lease = gpu_lease(lambda: deps.gpu, deps.gpu_service_for("sglang"), 5.0)
        service = AltTextService(AltTextSettings(), lambda: deps.chat, lease)
        image = base64.b64encode(PNG).decode()
        assert service.caption(image).alt == ANSWER["alt"]  # SGLang not loaded: asked as is, nothing started
        assert [e.event for e in gpu_events(world.services[0])] == []
        with deps.gpu.acquire("fake-sglang", job_id="a pipeline step"):  # now it is loaded
            pass
        assert service.caption(image).alt == ANSWER["alt"]
        leased = [e for e in gpu_events(world.services[0]) if e.event == "lease_granted"]
        assert [(e.service, e.job_id) for e in leased] == [("fake-sglang", "a pipeline step"),
                                                           ("fake-sglang", "caption_image")]
        assert [e.service for e in gpu_events(world.services[0]) if e.event == "start_requested"] == ["fake-sglang"]
    finally:
        world.close()


# -- over MCP --
@pytest.fixture(scope="module")
def stand_in() -> Iterator[ScriptedLLM]:
    fake = vision()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def paid_server(stand_in: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    corpus = tmp_path_factory.mktemp("alt-corpus")
    (corpus / "box.md").write_text("---\ntitle: The box\ndate: 2026-01-01\n---\n\nOne machine.\n", encoding="utf-8")
    inference = {"providers": [{"name": "vision", "kind": "openai", "base_url": stand_in.base_url,
                                "model": "mistral-small-4", "timeout": 10, "connect_timeout": 1}],
                 "failure_threshold": 1, "cooldown_seconds": 0.1}
    with serve(corpus, tmp_path_factory.mktemp("alt-mcp"), SOVEREIGN_MCP_PAYMENTS__MCP_HTTP_402="false",
               SOVEREIGN_MCP_INFERENCE=json.dumps(inference), SOVEREIGN_MCP_PIPELINE__MANAGE_GPU="false",
               SOVEREIGN_MCP_ALT_TEXT__DEADLINE_SECONDS="5") as srv:
        yield srv


async def test_caption_image_unpaid_paid_and_not_charged_without_a_provider(
        paid_server: Server, stand_in: ScriptedLLM) -> None:
    arguments = {"image": base64.b64encode(PNG).decode(), "context": "box"}
    required = await mcp_challenge(paid_server.url, "caption_image", arguments)
    assert required["tool"] == "caption_image" and required["amount_sat"] == 50
    credential = f"L402 {required['macaroon']}:{pay_cli(paid_server, required['invoice'])}"
    async with Client(StreamableHttpTransport(f"{paid_server.url}/mcp")) as client:
        stand_in.stop()
        down = await client.call_tool("caption_image", {**arguments, "l402": credential}, raise_on_error=False)
        assert down.is_error and "no vision model answered" in down.content[0].text
        stand_in.start()
        await asyncio.sleep(0.3)  # the provider's open circuit (cooldown_seconds = 0.1) lets the next call probe
        paid = await client.call_tool("caption_image", {**arguments, "l402": credential}, raise_on_error=False)
        assert not paid.is_error, paid.content  # the failed call was not charged: the same credential still pays
        assert paid.structured_content["alt"] == ANSWER["alt"]
        assert "The image belongs to the article 'The box'" in json.dumps(stand_in.chat_requests[-1].body)
        bad = await client.call_tool("caption_image", {"image": "nope", "l402": credential}, raise_on_error=False)
        assert bad.is_error


# -- the CLI --
def test_cli_caption_and_alt_lint(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sovereign_mcp.cli import main

    fake = vision()
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("SOVEREIGN_MCP_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("SOVEREIGN_MCP_PIPELINE__MANAGE_GPU", "false")
        monkeypatch.setenv("SOVEREIGN_MCP_INFERENCE", json.dumps({"providers": [
            {"name": "vision", "kind": "openai", "base_url": fake.base_url, "model": "m", "timeout": 10}]}))
        (tmp_path / "box.png").write_bytes(PNG)
        assert main(["caption", str(tmp_path / "box.png")]) == 0
        assert capsys.readouterr().out.strip() == f"![{ANSWER['alt']}](box.png)"
        (tmp_path / "note.txt").write_text("not an image", encoding="utf-8")
        assert main(["caption", str(tmp_path / "note.txt")]) == 2
        assert "not a PNG, JPEG or WebP" in capsys.readouterr().err
    finally:
        fake.stop()
    (tmp_path / "post.md").write_text("![photo](a.png)\n\n![The fan, unplugged](b.png)\n", encoding="utf-8")
    assert main(["alt-lint", str(tmp_path / "post.md")]) == 1
    assert "post.md:1:1: error [alt-placeholder]" in capsys.readouterr().out
    (tmp_path / "ok.md").write_text("![The fan, unplugged](b.png)\n", encoding="utf-8")
    assert main(["alt-lint", str(tmp_path / "ok.md")]) == 0


class TextOnly(ScriptedLLM):
    """A chat server whose model cannot read images: HTTP 400 to any image part (as vLLM/SGLang answer)."""

    def _chat(self, handler: object, body: dict) -> None:  # type: ignore[override]
        if "image_url" in json.dumps(body):
            self._json(handler, 400, {"object": "error", "message": "this model does not support image input",
                                      "type": "BadRequestError", "code": 400})
            return
        super()._chat(handler, body)


def test_hero_alt_with_a_text_only_model_leaves_the_job_done_with_a_warning(tmp_path: Path) -> None:
    from tests.fakes.fake_media import content_responder

    world = World(tmp_path)
    (tmp_path / "corpus").mkdir()
    world.sglang = TextOnly("sglang", content_responder(), port=world.sglang.port).start()
    try:
        service = world.service()
        status = service.run_until_finished(service.submit("hero_image", "a text-only model").job_id)
        assert status.state == "done", status.error
        alt = status.steps[1]
        assert alt.name == "hero_alt" and alt.detail["alt"] is None
        assert "does not support image input" in alt.detail["warning"]
        assert [a.name for a in status.artifacts] == ["hero.png"]
    finally:
        world.close()
