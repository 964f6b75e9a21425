"""A loopback OpenAI-compatible chat server for tests: a stand-in for SGLang, llama.cpp or Ollama.

Speaks the exact shapes the inference client reads (OpenAI "Chat Completions"; SGLang ``http_server.py``
and llama.cpp ``tools/server/README.md``):

* ``POST /v1/chat/completions`` -> ``{"id", "object": "chat.completion", "created", "model", "choices":
  [{"index": 0, "message": {"role": "assistant", "content"}, "finish_reason": "stop"}], "usage"}``; with
  ``"stream": true`` server-sent events ``data: {"object": "chat.completion.chunk", "choices": [{"index": 0,
  "delta": {"content": "..."}}]}`` (a first role-only chunk, a last ``finish_reason`` chunk), then
  ``data: [DONE]``;
* ``GET /health`` -> 200 ``{"status": "ok"}``, or 503 ``Loading model`` in mode ``"503"`` (llama.cpp);
* ``GET /v1/models`` -> ``{"object": "list", "data": [{"id": model, ...}]}``; ``GET /api/version`` (Ollama).

Modes, switchable while running with :meth:`FakeLLM.set_mode`: ``healthy``; ``503`` (every route answers
llama.cpp's 503 ``Loading model``); ``429`` (rate limited, ``Retry-After: 1``); ``slow`` (waits
``slow_seconds`` before answering, to trip client timeouts); ``down`` (server stopped: connection refused).
``strict_roles=True`` rejects non-alternating user/assistant roles with HTTP 400 and SGLang's error body
(``{"object": "error", "message": "Conversation roles must alternate user/assistant/user/assistant/...",
"type": "BadRequestError", "param": null, "code": 400}``), as SGLang serving Mistral does.

Every request received is recorded in :attr:`FakeLLM.requests` (method, path, headers, JSON body).
Runs ``http.server.ThreadingHTTPServer`` in a daemon thread on 127.0.0.1 only::

    with FakeLLM("llamacpp") as fake:
        ChatClient(...base_url=fake.base_url...)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["healthy", "503", "429", "slow", "down"]
ROLES_MESSAGE = "Conversation roles must alternate user/assistant/user/assistant/..."
LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
RATE_LIMITED = {"error": {"code": 429, "message": "Too many requests, slow down", "type": "rate_limit_error"}}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (:func:`tests.helpers.free_port`)."""
    from tests.helpers import free_port as pick

    return pick()


def roles_alternate(messages: list[dict[str, Any]]) -> bool:
    """Mistral's template rule: after any system messages, user/assistant alternate starting with user."""
    roles = [m.get("role") for m in messages if m.get("role") in ("user", "assistant")]
    return all((role == "user") == (i % 2 == 0) for i, role in enumerate(roles))


@dataclass(frozen=True)
class Recorded:
    """One request as received: ``body`` is the parsed JSON (``None`` when empty or not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    dispatch: Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.dispatch(self)

    def do_POST(self) -> None:
        self.server.dispatch(self)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def serve_loopback(port: int, dispatch: Callable[[BaseHTTPRequestHandler], None],
                   name: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A threaded HTTP server on ``127.0.0.1:port`` handing every GET and POST to ``dispatch``, served from a
    daemon thread called ``name``; stop it with ``shutdown()`` then ``server_close()``."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.dispatch = dispatch
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=name)
    thread.start()
    return server, thread


class FakeLLM:
    """One fake provider on a fixed 127.0.0.1 port (kept across stop/start, so "down" then "healthy" works).

    Args:
        name: used in the default reply, ``"Hello from <name>."``.
        port: the port; default a free one, chosen now so the URL is known before :meth:`start`.
        model: the id listed by ``/v1/models`` and echoed in answers.
        chunks: the streamed deltas; the non-streamed reply is their concatenation.
        mode: initial mode (see module doc); ``"down"`` means not started.
        strict_roles: reject non-alternating roles like SGLang + Mistral.
        slow_seconds: how long ``slow`` mode waits before answering, seconds.
    """

    def __init__(self, name: str = "fake", *, port: int | None = None, model: str = "fake-model",
                 chunks: list[str] | None = None, mode: Mode = "healthy", strict_roles: bool = False,
                 slow_seconds: float = 5.0) -> None:
        self.name = name
        self.port = port or free_port()
        self.model = model
        self.chunks = chunks if chunks is not None else ["Hello", " from", f" {name}", "."]
        self.mode: Mode = mode
        self.strict_roles = strict_roles
        self.slow_seconds = slow_seconds
        self._requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT`` (where ``/health`` lives)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL, ``<url>/v1``."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeLLM:
        """Listen on the port (idempotent); switches a ``down`` fake to ``healthy``."""
        with self._lock:
            if self._server is not None:
                return self
            if self.mode == "down":
                self.mode = "healthy"
            self._stopping = threading.Event()
            self._server, self._thread = serve_loopback(self.port, self._handle, f"fake-llm-{self.name}")
        return self

    def stop(self) -> None:
        """Close the listening socket (connection refused from now on); wakes any ``slow`` waits."""
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
            self.mode = "down"
        self._stopping.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)

    def set_mode(self, mode: Mode) -> None:
        """Switch behaviour; ``down`` stops the server, any other mode (re)starts it."""
        if mode == "down":
            self.stop()
            return
        self.start()
        self.mode = mode

    def start_later(self, delay: float) -> threading.Timer:
        """Start after ``delay`` seconds from a timer thread (for wait-and-resume tests)."""
        timer = threading.Timer(delay, self.start)
        timer.daemon = True
        timer.start()
        return timer

    def __enter__(self) -> FakeLLM:
        return self.start() if self.mode != "down" else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what was received -----------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[Recorded]:
        """Only ``POST /v1/chat/completions``."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/chat/completions"]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- serving ---------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._requests.append(Recorded(handler.command, path, {k.lower(): v for k, v in handler.headers.items()},
                                           body))
        mode = self.mode
        try:
            if mode == "slow" and self._stopping.wait(self.slow_seconds):
                return  # stopped while waiting: drop the connection
            if mode == "503":
                self._json(handler, 503, LOADING)
            elif mode == "429":
                self._json(handler, 429, RATE_LIMITED, {"Retry-After": "1"})
            else:
                self._route(handler, path, body)
        except OSError:  # the client gave up (timeout tests)
            pass

    def _route(self, handler: BaseHTTPRequestHandler, path: str, body: Any) -> None:
        route = (handler.command, path)
        if route == ("GET", "/health"):
            self._json(handler, 200, {"status": "ok"})
        elif route == ("GET", "/v1/models"):
            self._json(handler, 200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "fake-llm"}]})
        elif route == ("GET", "/api/version"):
            self._json(handler, 200, {"version": "0.0.0-fake"})
        elif route == ("POST", "/v1/chat/completions"):
            self._chat(handler, body if isinstance(body, dict) else {})
        else:
            self._json(handler, 404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._json(handler, 400, {"object": "error", "message": "messages must be a non-empty list",
                                      "type": "BadRequestError", "param": None, "code": 400})
            return
        if self.strict_roles and not roles_alternate(messages):
            self._json(handler, 400, {"object": "error", "message": ROLES_MESSAGE, "type": "BadRequestError",
                                      "param": None, "code": 400})
            return
        ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        model = body.get("model") or self.model
        if body.get("stream"):
            self._sse(handler, ident, created, model)
            return
        text = "".join(self.chunks)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        self._json(handler, 200, {
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(self.chunks),
                      "total_tokens": prompt_tokens + len(self.chunks)},
        })

    def _sse(self, handler: BaseHTTPRequestHandler, ident: str, created: int, model: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            handler.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            handler.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        for piece in self.chunks:
            chunk({"content": piece})
        chunk({}, "stop")
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
