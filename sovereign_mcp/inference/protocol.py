"""The OpenAI chat-completions wire format and how each answer is classified (fallback or not).

Shapes (OpenAI API reference, "Chat Completions"; served as-is by SGLang, llama.cpp ``llama-server``,
Ollama ``/v1`` and vLLM):

* request ``POST {base_url}/chat/completions`` ``{"model", "messages", "max_tokens", "temperature",
  "stream"}``;
* answer ``{"id", "object": "chat.completion", "model", "choices": [{"index": 0, "message": {"role":
  "assistant", "content"}, "finish_reason"}], "usage": {"prompt_tokens", "completion_tokens",
  "total_tokens"}}``;
* stream (``"stream": true``): server-sent events ``data: {"choices": [{"delta": {"content": "..."}}]}``,
  one per line, ended by ``data: [DONE]``;
* errors: OpenAI and llama.cpp ``{"error": {"message", "type", "code"}}``, SGLang
  ``{"object": "error", "message", "type", "code"}`` (sglang ``entrypoints/openai/protocol.py``
  ``ErrorResponse``), FastAPI ``{"detail"}``.

Fallback rule (sovereign-forge epic, "Model Fallback Chain": fall back on timeout, 429, 503, DNS failure):
transport errors (refused, DNS, timeout, reset), HTTP 429, any 5xx and a malformed 2xx answer raise
:class:`ProviderFailure` (try the next provider); any other 4xx raises :class:`InferenceRequestError`.

Readiness (SGLang ``python/sglang/srt/entrypoints/http_server.py`` ``/health``; llama.cpp
``tools/server/README.md``; Ollama ``docs/api.md``): SGLang and llama.cpp ``GET /health`` (200 ready,
503 while loading), Ollama
``GET /api/version``, anything else ``GET {base_url}/models``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from pydantic import BaseModel

from sovereign_mcp.inference.config import ProviderSettings
from sovereign_mcp.inference.errors import InferenceRequestError

DNS_MARKERS = ("name or service not known", "temporary failure in name resolution", "nodename nor servname",
               "no address associated", "getaddrinfo failed", "name resolution")
HEALTH_PATHS = {"sglang": "/health", "llamacpp": "/health", "ollama": "/api/version"}


class Usage(BaseModel):
    """Token counts reported by the server."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Completion(BaseModel):
    """One finished answer: its text and which provider/model produced it."""

    text: str
    provider: str
    model: str
    usage: Usage | None = None
    finish_reason: str | None = None


class ProviderFailure(Exception):
    """Internal: this provider failed in a way the next provider may not (``reason`` says how)."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


def transport_failure(exc: httpx.TransportError) -> ProviderFailure:
    """Name an httpx transport error: ``connection refused``, ``DNS failure: ...``, ``timed out ...``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return ProviderFailure("connect timed out", timed_out=True)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderFailure(f"timed out ({type(exc).__name__})", timed_out=True)
    if isinstance(exc, httpx.ConnectError):
        lowered = text.lower()
        if any(marker in lowered for marker in DNS_MARKERS):
            return ProviderFailure(f"DNS failure ({text})")
        if "refused" in lowered:
            return ProviderFailure("connection refused")
        return ProviderFailure(f"cannot connect ({text})")
    return ProviderFailure(f"transport error ({type(exc).__name__}: {text})")


def server_message(response: httpx.Response) -> str:
    """The server's error message from any of the known error shapes, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        for candidate in (error, data.get("message"), data.get("detail")):
            if isinstance(candidate, str) and candidate:
                return candidate
    return response.text.strip()[:500] or response.reason_phrase


def check_status(provider: str, response: httpx.Response) -> None:
    """Return on 2xx. The body must already be read (call ``response.read()`` on a stream first).

    Raises:
        ProviderFailure: HTTP 429, 5xx, or an unexpected 1xx/3xx.
        InferenceRequestError: any other 4xx, with the server's message.
    """
    code = response.status_code
    if 200 <= code < 300:
        return
    message = server_message(response)
    if code == 429 or code >= 500 or code < 400:
        raise ProviderFailure(f"HTTP {code}: {message}")
    raise InferenceRequestError(provider, code, message)


def chat_payload(model: str, messages: list[dict[str, Any]], *, max_tokens: int | None,
                 temperature: float | None, stream: bool, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request body; ``None`` values are left out so the server's defaults apply."""
    payload: dict[str, Any] = dict(params or {})
    payload.update(model=model, messages=messages, stream=stream)
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    if temperature is not None:
        payload["temperature"] = temperature
    return payload


def parse_completion(data: Any, provider: str, requested_model: str) -> Completion:
    """Read a non-streamed answer. Raises :class:`ProviderFailure` if it lacks ``choices[0].message``."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise ProviderFailure(f"malformed answer (no choices[0].message): {str(data)[:200]}") from None
    usage = data.get("usage")
    return Completion(
        text=message.get("content") or "",
        provider=provider,
        model=data.get("model") or requested_model,
        usage=Usage.model_validate(usage) if isinstance(usage, dict) else None,
        finish_reason=choice.get("finish_reason"),
    )


def first_model_id(data: Any) -> str:
    """The first ``data[].id`` of a ``GET /v1/models`` answer. Raises :class:`ProviderFailure` if none."""
    try:
        return str(data["data"][0]["id"])
    except (KeyError, IndexError, TypeError):
        raise ProviderFailure(f"GET /models listed no model: {str(data)[:200]}") from None


def iter_sse_deltas(lines: Iterable[str]) -> Iterator[str]:
    """Yield the non-empty ``choices[0].delta.content`` strings of an SSE chat stream until ``[DONE]``.

    Lines other than ``data:`` (comments, ``event:``, blanks) are skipped. Raises :class:`ProviderFailure`
    on a chunk that is not JSON or carries an ``error`` object (llama.cpp and SGLang report mid-stream
    failures that way).
    """
    for line in lines:
        if not line.startswith("data:"):
            continue
        body = line[5:].strip()
        if body == "[DONE]":
            return
        try:
            chunk = json.loads(body)
        except ValueError:
            raise ProviderFailure(f"malformed stream chunk: {body[:200]}") from None
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise ProviderFailure(f"error in stream: {message}")
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content and choice.get("index", 0) == 0:
                yield content


def health_url(provider: ProviderSettings) -> str:
    """Where readiness is read: ``/health``, ``/api/version`` or ``{base_url}/models`` (see module doc)."""
    path = HEALTH_PATHS.get(provider.kind)
    return provider.root_url + path if path else provider.base_url + "/models"
