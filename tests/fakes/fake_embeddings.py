"""A loopback OpenAI-style embedding server for tests: a stand-in for llama.cpp ``--embedding``, Ollama or TEI.

``POST /v1/embeddings`` with ``{"model", "input": str | [str]}`` answers the OpenAI "Embeddings" shape:
``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [floats]}], "model",
"usage": {"prompt_tokens", "total_tokens"}}``; an unknown model gets 404 ``{"error": {"message": "model
'x' not found", ...}}`` (Ollama's wording), an empty input 400.

The vectors are a small, real bag-of-concepts model: every word is mapped to a concept (``synonyms`` puts
several words on one concept, e.g. car and automobile), a concept to one of ``dims`` coordinates by a stable
hash, and the counts are L2-normalised. So texts that share meaning but not words come out close, which is
what a dense re-rank adds to lexical search. Every request is recorded in :attr:`FakeEmbeddings.requests`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.fake_llm import FakeLLM, serve_loopback
from tests.helpers import free_port

_WORD = re.compile(r"[a-z0-9]+")


class FakeEmbeddings:
    """The server on ``127.0.0.1:port``; ``base_url`` ends in ``/v1``. Use as a context manager."""

    def __init__(self, model: str = "fake-embed", dims: int = 64, synonyms: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.model, self.dims = model, dims
        self.synonyms = synonyms or {}
        self.port = port or free_port()
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def vector(self, text: str) -> list[float]:
        out = [0.0] * self.dims
        for word in _WORD.findall(text.lower()):
            concept = self.synonyms.get(word, word)
            out[int.from_bytes(hashlib.sha256(concept.encode()).digest()[:4], "big") % self.dims] += 1.0
        norm = math.sqrt(sum(v * v for v in out)) or 1.0
        return [v / norm for v in out]

    def start(self) -> FakeEmbeddings:
        self._server, _ = serve_loopback(self.port, self._dispatch, "fake-embeddings")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeEmbeddings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}") if handler.command == "POST" else {}
        self.requests.append({"method": handler.command, "path": handler.path, "body": body})
        if handler.command != "POST" or handler.path != "/v1/embeddings":
            return FakeLLM._json(handler, 404, {"error": {"message": f"no route {handler.path}", "type": "not_found"}})
        if body.get("model") != self.model:
            return FakeLLM._json(handler, 404, {"error": {"message": f"model '{body.get('model')}' not found",
                                                       "type": "not_found_error"}})
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not texts or not all(isinstance(t, str) for t in texts):
            return FakeLLM._json(handler, 400, {"error": {"message": "input must be a non-empty string or list of "
                                                                  "strings", "type": "invalid_request_error"}})
        tokens = sum(len(t.split()) for t in texts)
        FakeLLM._json(handler, 200, {
            "object": "list", "model": self.model,
            "data": [{"object": "embedding", "index": i, "embedding": self.vector(t)} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
