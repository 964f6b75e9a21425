"""Clients for the media services and the file formats the pipeline produces.

* Voxtral TTS served by vLLM-Omni (vLLM-Omni ``docs/serving/speech_api.md``): ``POST /v1/audio/speech``
  with ``input``, ``model``, ``voice``,
  ``response_format``, ``speed`` returns the raw audio bytes; ``GET /v1/audio/voices`` returns
  ``{"voices": [names...], "uploaded_voices": [...]}``.
* ComfyUI: ``POST /prompt {"prompt": graph, "client_id"}`` -> ``{"prompt_id", "number", "node_errors"}``
  (HTTP 400 with ``error`` and ``node_errors`` on a bad graph); ``GET /history/{prompt_id}`` is ``{}`` until
  the prompt ran, then ``{prompt_id: {"outputs": {node: {"images": [{filename, subfolder, type}]}},
  "status": {"status_str", "completed", "messages"}}}``; ``GET /view?filename=&subfolder=&type=output``
  returns the file.
* The FLUX.1-schnell API graph: CheckpointLoaderSimple -> 2x CLIPTextEncode -> EmptySD3LatentImage ->
  KSampler (4 steps, cfg 1.0, euler, simple) -> VAEDecode -> SaveImage.
* ffmpeg mixes the WAV turns into one MP3 (concat filter, each turn resampled to the first one's rate,
  a short pause after each turn, libmp3lame).

All HTTP goes to the configured local URLs with proxies ignored.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FLUX_STEPS = 4


class MediaError(Exception):
    """A media service refused or failed a request, or a produced file is not what it should be."""


class MediaUnavailable(MediaError):
    """The service did not answer (connection refused or reset, timeout, HTTP 5xx) on every attempt: it is
    down or dying, not refusing this request. The worker restarts it and retries the step."""


class FFmpegMissing(MediaError):
    """ffmpeg is not installed (or not at the configured path)."""


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            text = error.get("message") or error.get("type") or str(error)
            details = error.get("details")
            return f"{text}: {details}" if details else str(text)
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                return data[key]
    return str(data)[:500]


class _HTTP:
    def __init__(self, base_url: str, timeout: float, retries: int, transport: httpx.BaseTransport | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=5.0),
                                 trust_env=False, transport=transport, headers={"User-Agent": "sovereign-mcp"})

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; connection errors, timeouts and 5xx are retried (``retries`` attempts in all)."""
        last = ""
        for attempt in range(self.retries):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code < 500:
                    return response
                last = f"HTTP {response.status_code}: {_message(response)}"
            if attempt + 1 < self.retries:
                time.sleep(min(2.0 ** attempt * 0.5, 5.0))
        raise MediaUnavailable(f"{method} {self.base_url}{path} failed after {self.retries} attempts: {last}")

    def close(self) -> None:
        self.http.close()


# -- Voxtral --------------------------------------------------------------------------------------
class VoxtralClient:
    """Voxtral TTS (vLLM-Omni) at ``base_url`` (no ``/v1``)."""

    def __init__(self, base_url: str, model: str, *, timeout: float = 300.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.model = model
        self._http = _HTTP(base_url, timeout, retries, transport)

    def voices(self) -> list[str]:
        """Voice names the server offers (preset and uploaded)."""
        response = self._http.request("GET", "/v1/audio/voices")
        if response.status_code != 200:
            raise MediaError(f"GET /v1/audio/voices answered HTTP {response.status_code}: {_message(response)}")
        data = response.json()
        items: list[Any] = []
        if isinstance(data, dict):
            items = list(data.get("voices") or data.get("data") or []) + list(data.get("uploaded_voices") or [])
        elif isinstance(data, list):
            items = data
        names = []
        for item in items:
            name = item if isinstance(item, str) else (item.get("name") or item.get("id") or item.get("voice_id")
                                                       if isinstance(item, dict) else None)
            if isinstance(name, str) and name not in names:
                names.append(name)
        return names

    def speech(self, text: str, voice: str, *, speed: float = 1.0, response_format: str = "wav") -> bytes:
        """Synthesize ``text``; returns the audio bytes (checked to be a WAV file for ``wav``)."""
        if speed > 1.0:
            raise ValueError("Voxtral speed above 1.0 sounds broken; use <= 1.0")
        body = {"input": text, "model": self.model, "voice": voice, "response_format": response_format,
                "speed": speed}
        response = self._http.request("POST", "/v1/audio/speech", json=body)
        if response.status_code != 200:
            raise MediaError(f"Voxtral refused a turn (HTTP {response.status_code}): {_message(response)}")
        audio = response.content
        if response_format == "wav" and not is_wav(audio):
            raise MediaError(f"Voxtral answered {len(audio)} bytes that are not a WAV file "
                             f"(content-type {response.headers.get('content-type')!r})")
        return audio

    def close(self) -> None:
        self._http.close()


# -- ComfyUI --------------------------------------------------------------------------------------
def flux_schnell_graph(prompt: str, *, width: int, height: int, seed: int, checkpoint: str,
                       prefix: str = "sovereign-mcp") -> dict[str, Any]:
    """The FLUX.1-schnell text-to-image graph in ComfyUI's API format (node id -> class and inputs)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptySD3LatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": FLUX_STEPS, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "denoise": 1.0, "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["6", 0]}},
    }


class ComfyUIClient:
    """ComfyUI at ``base_url``."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = _HTTP(base_url, timeout, retries, transport)

    def queue(self, graph: dict[str, Any], client_id: str) -> str:
        """Queue ``graph``; returns the prompt id. A bad graph raises :class:`MediaError` with ComfyUI's reason."""
        response = self._http.request("POST", "/prompt", json={"prompt": graph, "client_id": client_id})
        if response.status_code != 200:
            detail = _message(response)
            with contextlib.suppress(ValueError):
                errors = response.json().get("node_errors")
                if errors:
                    detail += f" (node errors: {errors})"
            raise MediaError(f"ComfyUI rejected the graph (HTTP {response.status_code}): {detail}")
        data = response.json()
        if not isinstance(data, dict) or not data.get("prompt_id"):
            raise MediaError(f"ComfyUI answered /prompt without a prompt_id: {str(data)[:300]}")
        if data.get("node_errors"):
            raise MediaError(f"ComfyUI reported node errors: {data['node_errors']}")
        return str(data["prompt_id"])

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry, or ``None`` while it has not run yet."""
        response = self._http.request("GET", f"/history/{prompt_id}")
        if response.status_code != 200:
            raise MediaError(f"GET /history/{prompt_id} answered HTTP {response.status_code}: {_message(response)}")
        data = response.json()
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    def wait_images(self, prompt_id: str, *, timeout: float, poll: float,
                    should_stop: Callable[[], bool] = lambda: False) -> list[dict[str, str]]:
        """Poll ``/history`` until the prompt finished; return its output images (``filename``, ``subfolder``,
        ``type``). Raises :class:`MediaError` on an execution error, no image or the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise MediaError(f"ComfyUI failed prompt {prompt_id}: {_execution_error(status)}")
                images = [img for out in (entry.get("outputs") or {}).values() if isinstance(out, dict)
                          for img in out.get("images") or [] if isinstance(img, dict) and img.get("filename")]
                done = status.get("completed", True) or status.get("status_str") == "success"
                if images and done:
                    return images
                if done and status:
                    raise MediaError(f"ComfyUI prompt {prompt_id} finished without an image")
            if should_stop():
                raise MediaError("stopped while waiting for ComfyUI")
            if time.monotonic() >= deadline:
                raise MediaError(f"ComfyUI prompt {prompt_id} not finished within {timeout:g} s")
            time.sleep(poll)

    def view(self, image: dict[str, str]) -> bytes:
        """Download one output image via ``/view``."""
        params = {"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                  "type": image.get("type", "output")}
        response = self._http.request("GET", "/view", params=params)
        if response.status_code != 200:
            raise MediaError(f"GET /view {image['filename']} answered HTTP {response.status_code}: "
                             f"{_message(response)}")
        return response.content

    def close(self) -> None:
        self._http.close()


def _execution_error(status: dict[str, Any]) -> str:
    for message in status.get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            info = message[1] if isinstance(message[1], dict) else {}
            return f"{info.get('node_type', '?')}: {info.get('exception_message', 'execution error')}".strip()
    return "execution error"


# -- file formats ---------------------------------------------------------------------------------
def is_wav(data: bytes) -> bool:
    """RIFF/WAVE header."""
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def is_png(data: bytes) -> bool:
    """PNG signature followed by an IHDR chunk."""
    return data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels from the IHDR chunk (PNG spec, 11.2.2: two big-endian uint32 right
    after the chunk type), or ``None`` when ``data`` is not a PNG."""
    if not is_png(data) or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def mp3_frame_offset(data: bytes) -> int | None:
    """Offset of the first MPEG audio frame header (after an ID3v2 tag if any), or ``None``.

    A frame header starts with 11 set sync bits; layer bits ``00`` and bitrate index ``1111`` are invalid
    (ISO/IEC 11172-3, 2.4.2.3).
    """
    offset = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
        offset = 10 + size
    for i in range(offset, min(len(data) - 3, offset + 4096)):
        b1, b2, b3 = data[i + 1], data[i + 2], data[i]
        if b3 == 0xFF and b1 & 0xE0 == 0xE0 and b1 & 0x06 != 0 and b2 & 0xF0 != 0xF0 and b2 & 0x0C != 0x0C:
            return i
    return None


def wav_params(path: Path) -> tuple[int, int, float]:
    """``(sample rate, channels, duration s)`` of a WAV file. Raises :class:`MediaError` if unreadable."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, frames = w.getframerate(), w.getnchannels(), w.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        raise MediaError(f"{path.name} is not a readable WAV file: {exc}") from None
    return rate, channels, frames / rate if rate else 0.0


def wav_bytes_params(data: bytes) -> tuple[int, int, float]:
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getnframes() / w.getframerate()


def find_ffmpeg(ffmpeg: str) -> str:
    """Absolute path of ``ffmpeg``. Raises :class:`FFmpegMissing` with what to do."""
    found = shutil.which(ffmpeg)
    if found is None:
        raise FFmpegMissing(f"ffmpeg not found ({ffmpeg!r} is not on PATH): podcast audio is mixed with ffmpeg; "
                            "install it (e.g. 'apt-get install ffmpeg') or set pipeline.ffmpeg to its path")
    return found


def mix_to_mp3(turns: list[Path], out: Path, *, ffmpeg: str = "ffmpeg", bitrate: str = "128k",
               pause: float = 0.25, timeout: float = 900.0) -> None:
    """Concatenate the WAV ``turns`` (in order) into one MP3 at ``out``, with ``pause`` s after each turn.

    Raises:
        FFmpegMissing: no ffmpeg. MediaError: no turns, unreadable WAV, or ffmpeg failed (its stderr tail).
    """
    binary = find_ffmpeg(ffmpeg)
    if not turns:
        raise MediaError("no audio turns to mix")
    rate, _, _ = wav_params(turns[0])
    for turn in turns[1:]:
        wav_params(turn)
    chains = [f"[{i}:a]aresample={rate},aformat=sample_fmts=s16:channel_layouts=mono,apad=pad_dur={pause}[a{i}]"
              for i in range(len(turns))]
    graph = ";".join(chains) + ";" + "".join(f"[a{i}]" for i in range(len(turns))) + \
        f"concat=n={len(turns)}:v=0:a=1[out]"
    tmp = out.with_name(f".{out.name}.tmp")
    argv = [binary, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for turn in turns:
        argv += ["-i", str(turn)]
    argv += ["-filter_complex", graph, "-map", "[out]", "-c:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3", str(tmp)]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"ffmpeg did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = proc.stderr.decode("utf-8", "replace").strip()[-800:]
        raise MediaError(f"ffmpeg exited with {proc.returncode}: {tail}")
    data = tmp.read_bytes()
    if mp3_frame_offset(data) is None:
        tmp.unlink(missing_ok=True)
        raise MediaError("ffmpeg produced a file without an MP3 frame header")
    tmp.replace(out)
