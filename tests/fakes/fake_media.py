"""Loopback stand-ins for the media services the pipeline drives, and a scripted chat model.

* :class:`FakeVoxtral`: vLLM-Omni's speech API (vLLM-Omni ``docs/serving/speech_api.md``): ``POST
  /v1/audio/speech`` ``{input, model, voice, response_format, speed}`` -> a REAL WAV file (a sine wave
  written with the stdlib ``wave`` module, length from the text); 400 ``{"error": {...}}`` for an unknown
  voice, a speed outside 0.25..4.0 or an empty input; ``GET /v1/audio/voices`` -> ``{"voices": [...],
  "uploaded_voices": []}``.
* :class:`FakeComfyUI`: ``POST /prompt {"prompt", "client_id"}`` -> ``{"prompt_id", "number",
  "node_errors": {}}``, or 400 ``{"error": {"type": "prompt_outputs_failed_validation", ...}, "node_errors"}``
  when the graph is not FLUX.1-schnell-shaped; ``GET /history/{id}`` -> ``{}`` for the first
  ``render_polls`` polls, then the entry with ``outputs.<node>.images[{filename, subfolder, type}]`` and
  ``status``; ``GET /view?filename=&subfolder=&type=`` -> a REAL PNG (zlib + struct); ``GET /system_stats``,
  ``GET /queue``.
* :class:`ScriptedLLM`: :class:`tests.fakes.fake_llm.FakeLLM` (the SGLang / llama.cpp chat API) whose answer is
  computed per request by a ``responder(prompt) -> str``; :func:`content_responder` writes clean (or, on
  purpose, gate-failing) articles and two-host scripts, and can hold one request (kill-mid-job tests).

All servers are ``ThreadingHTTPServer`` on 127.0.0.1 in daemon threads and record what they receive.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import threading
import time
import uuid
import wave
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.fake_llm import FakeLLM, free_port, serve_loopback

VOICES = ["neutral_female", "neutral_male", "casual_female", "casual_male"]
FLUX_NODES = {"CheckpointLoaderSimple", "CLIPTextEncode", "EmptySD3LatentImage", "KSampler", "VAEDecode", "SaveImage"}


# -- real media bytes -----------------------------------------------------------------------------
def make_wav(seconds: float, *, rate: int = 24_000, freq: float = 440.0) -> bytes:
    """A mono 16-bit PCM WAV file holding a sine wave."""
    frames = int(seconds * rate)
    samples = b"".join(struct.pack("<h", int(12_000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(width: int = 64, height: int = 36) -> bytes:
    """An 8-bit RGB PNG with a gradient (signature, IHDR, IDAT, IEND, real CRCs)."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 96))
                                          for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 9))
            + _chunk(b"IEND", b""))


# -- a tiny JSON/bytes HTTP server base -----------------------------------------------------------
Handler = BaseHTTPRequestHandler  # one request, as served by tests.fakes.fake_llm.serve_loopback


class _Fake:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _Fake:
        if self._server is None:
            self._server, _ = serve_loopback(self.port, self._dispatch, f"{type(self).__name__}-{self.port}")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> _Fake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.startswith(path))

    def _dispatch(self, handler: Handler) -> None:
        parts = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append((handler.command, parts.path, body))
        with contextlib.suppress(OSError):  # the client gave up
            self.route(handler, handler.command, parts.path, parse_qs(parts.query), body)

    def route(self, handler: Handler, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def send(handler: Handler, status: int, payload: bytes | Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


# -- Voxtral --------------------------------------------------------------------------------------
class FakeVoxtral(_Fake):
    """Voxtral TTS as served by vLLM-Omni; ``speeches`` lists every accepted speech request body."""

    def __init__(self, port: int | None = None, voices: list[str] | None = None,
                 seconds_per_word: float = 0.02) -> None:
        super().__init__(port)
        self.voices = voices or list(VOICES)
        self.seconds_per_word = seconds_per_word
        self.speeches: list[dict[str, Any]] = []
        self.crash_at: int | None = None  # the engine dies on this speech request (0-based count of accepted ones)
        self.on_crash: Callable[[], None] | None = None  # e.g. kill the service process that hosts it
        self.outage: Callable[[], bool] | None = None  # while true, every request answers 503 (engine dead)
        self.crashed = False

    def route(self, handler: Handler, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        if (method, path) == ("GET", "/v1/audio/voices"):
            self.send(handler, 200, {"voices": self.voices, "uploaded_voices": []})
        elif (method, path) == ("GET", "/v1/models"):
            self.send(handler, 200, {"object": "list", "data": [{"id": "mistralai/Voxtral-4B-TTS-2603"}]})
        elif (method, path) == ("POST", "/v1/audio/speech"):
            self._speech(handler, body if isinstance(body, dict) else {})
        else:
            self.send(handler, 404, {"detail": "Not Found"})

    def _speech(self, handler: Handler, body: dict[str, Any]) -> None:
        with self._lock:
            crash = self.crash_at is not None and not self.crashed and len(self.speeches) == self.crash_at
            self.crashed = self.crashed or crash
        if crash and self.on_crash is not None:
            self.on_crash()
        if crash or (self.outage is not None and self.outage()):  # vLLM's answer once its engine core is gone
            self.send(handler, 503, {"error": {"message": "EngineDeadError: EngineCore encountered an issue",
                                               "type": "ServiceUnavailableError", "code": 503}})
            return
        text, voice, speed = body.get("input"), body.get("voice"), body.get("speed", 1.0)
        problem = None
        if not isinstance(text, str) or not text.strip():
            problem = "input must be a non-empty string"
        elif voice not in self.voices:
            problem = f"Invalid speaker '{voice}'. Supported: {', '.join(self.voices)}"
        elif not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            problem = "speed must be between 0.25 and 4.0"
        elif body.get("response_format", "wav") != "wav":
            problem = "this fake only speaks wav"
        if problem:
            self.send(handler, 400, {"error": {"message": problem, "type": "BadRequestError", "code": 400}})
            return
        with self._lock:
            self.speeches.append(body)
        seconds = max(0.1, len(text.split()) * self.seconds_per_word / float(speed))
        self.send(handler, 200, make_wav(seconds, freq=330.0 if voice.endswith("male") else 550.0), "audio/wav")


# -- ComfyUI --------------------------------------------------------------------------------------
class FakeComfyUI(_Fake):
    """ComfyUI's HTTP API; ``prompts`` holds every accepted graph by prompt id."""

    def __init__(self, port: int | None = None, render_polls: int = 2) -> None:
        super().__init__(port)
        self.render_polls = render_polls
        self.prompts: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, int] = {}
        self.wrong_size: tuple[int, int] | None = None  # render this size whatever the graph asks
        self.images: dict[str, bytes] = {}  # output filename -> the PNG /view serves

    @staticmethod
    def validate(graph: Any) -> list[str]:
        """Why ``graph`` is not a FLUX.1-schnell API graph (empty = fine)."""
        if not isinstance(graph, dict) or not graph:
            return ["prompt must be a non-empty object of nodes"]
        problems = []
        types = {node.get("class_type") for node in graph.values() if isinstance(node, dict)}
        missing = FLUX_NODES - types
        if missing:
            problems.append(f"missing nodes: {sorted(missing)}")
        for node_id, node in graph.items():
            if not isinstance(node, dict) or "inputs" not in node:
                problems.append(f"node {node_id} has no inputs")
                continue
            for value in node["inputs"].values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) not in graph:
                    problems.append(f"node {node_id} links to missing node {value[0]}")
            if node.get("class_type") == "KSampler":
                i = node["inputs"]
                if (i.get("steps"), i.get("cfg"), i.get("sampler_name"), i.get("scheduler")) != (4, 1.0, "euler",
                                                                                                 "simple"):
                    problems.append("KSampler must be 4 steps, cfg 1.0, euler, simple for FLUX.1-schnell")
        return problems

    def route(self, handler: Handler, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        if (method, path) == ("GET", "/system_stats"):
            self.send(handler, 200, {"system": {"os": "posix", "comfyui_version": "0.3.0-fake"},
                                     "devices": [{"name": "cuda:0 NVIDIA GB10", "type": "cuda"}]})
        elif (method, path) == ("GET", "/queue"):
            self.send(handler, 200, {"queue_running": [], "queue_pending": []})
        elif (method, path) == ("POST", "/prompt"):
            graph = body.get("prompt") if isinstance(body, dict) else None
            problems = self.validate(graph)
            if problems:
                self.send(handler, 400, {"error": {"type": "prompt_outputs_failed_validation",
                                                   "message": "Prompt outputs failed validation",
                                                   "details": "; ".join(problems), "extra_info": {}},
                                         "node_errors": {}})
                return
            prompt_id = str(uuid.uuid4())
            with self._lock:
                self.prompts[prompt_id] = graph
                number = len(self.prompts)
            self.send(handler, 200, {"prompt_id": prompt_id, "number": number, "node_errors": {}})
        elif method == "GET" and path.startswith("/history/"):
            self._history(handler, path.rsplit("/", 1)[1])
        elif (method, path) == ("GET", "/view"):
            name = (query.get("filename") or [""])[0]
            if not name.endswith(".png") or query.get("type", ["output"])[0] != "output":
                self.send(handler, 404, {"error": "not found"})
            elif name not in self.images:
                self.send(handler, 404, {"error": f"no output {name}"})
            else:
                self.send(handler, 200, self.images[name], "image/png")
        else:
            self.send(handler, 404, {"error": "not found"})

    def _history(self, handler: Handler, prompt_id: str) -> None:
        with self._lock:
            graph = self.prompts.get(prompt_id)
            self._polls[prompt_id] = self._polls.get(prompt_id, 0) + 1
            polls = self._polls[prompt_id]
        if graph is None or polls <= self.render_polls:
            self.send(handler, 200, {})
            return
        save_id, save = next((k, n) for k, n in graph.items() if n.get("class_type") == "SaveImage")
        prefix = save["inputs"].get("filename_prefix", "ComfyUI")
        subfolder, _, stem = prefix.rpartition("/")
        latent = next(n for n in graph.values() if n.get("class_type") == "EmptySD3LatentImage")["inputs"]
        filename = f"{stem}_00001_.png"
        with self._lock:  # rendered at the latent's size, as ComfyUI does
            if filename not in self.images:
                self.images[filename] = make_png(*(self.wrong_size or (latent["width"], latent["height"])))
        entry = {"prompt": [1, prompt_id, graph, {}, [save_id]],
                 "outputs": {save_id: {"images": [{"filename": filename, "subfolder": subfolder,
                                                   "type": "output"}]}},
                 "status": {"status_str": "success", "completed": True,
                            "messages": [["execution_start", {"prompt_id": prompt_id}],
                                         ["execution_success", {"prompt_id": prompt_id}]]},
                 "meta": {}}
        self.send(handler, 200, {prompt_id: entry})


# -- a scripted chat model ------------------------------------------------------------------------
Responder = Callable[[str], str]


class ScriptedLLM(FakeLLM):
    """The fake SGLang/llama.cpp chat server answering ``responder(prompt)`` (the messages' text joined)."""

    def __init__(self, name: str, responder: Responder, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.responder = responder

    def _chat(self, handler: Any, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        prompt = "\n\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        text = self.responder(prompt)
        self.chunks = [text]
        super()._chat(handler, body)

    def prompts(self) -> list[str]:
        return ["\n\n".join(str(m.get("content") or "") for m in r.body.get("messages", []))
                for r in self.chat_requests if isinstance(r.body, dict)]


CLEAN_ARTICLE = """# One Service At A Time On The Spark

Last week the language model server and the speech engine both wanted the unified memory pool. The
speech engine loaded, the first request came in, and the whole box stalled.

## What I changed

I stop the language model server first, wait a full minute, and only then start the speech engine. The
dashboard now refuses to start a second service while one is loaded."""
CLEAN_SCRIPT = """HEXABELLA: So why can only one of these services run at a time?
CIPHERFOX: They all share one memory pool, and two of them together do not fit.
HEXABELLA: Right. And the minute of waiting?
CIPHERFOX: The memory comes back late after a stop, so the next service waits before it loads.
HEXABELLA: Hm. That explains the stalls.
CIPHERFOX: It does. Since then the box has been quiet."""
BAD_PHRASE = "Here's the thing: "
HERO_ALT = "A dark machine room with one server rack lit in soft blue"


def content_responder(*, bad: Callable[[str], bool] = lambda prompt: False,
                      hold: Callable[[str], threading.Event | None] = lambda prompt: None) -> Responder:
    """Clean articles / scripts by prompt; ``bad(prompt)`` true -> a high-severity overused phrase is added;
    ``hold(prompt)`` returns an event to wait on before answering (None = answer at once)."""

    def respond(prompt: str) -> str:
        event = hold(prompt)
        if event is not None:
            event.wait(30)
        if "You write alt text for one image" in prompt:  # the vision step: one JSON object
            return json.dumps({"role": "informative", "alt": HERO_ALT})
        if "podcast" in prompt.lower() and ("episode script" in prompt or "Naturalize this two-host" in prompt):
            text = CLEAN_SCRIPT
            if bad(prompt):
                text = text.replace("CIPHERFOX: They all", f"CIPHERFOX: {BAD_PHRASE}they all")
        elif "Write part 2 of 2" in prompt:
            text = "## Checking it\n\nAfter the change the memory guard reports the free pool before each start."
        else:
            text = CLEAN_ARTICLE
        if bad(prompt) and not text.startswith("HEXABELLA"):
            text = text.replace("Last week", f"{BAD_PHRASE}last week").replace("After the change",
                                                                                f"{BAD_PHRASE}after the change")
        return text

    return respond


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
