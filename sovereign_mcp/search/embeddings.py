"""Dense vectors for the optional re-rank stage: an embedded static model or a local embedding server.

Two backends behind one interface (:class:`Embedder`), chosen by ``[search] embeddings``:

* ``"wordllama"``: WordLlama's 256-d static token embeddings (PyPI ``wordllama``; the weights
  ``wordllama/weights/l2_supercat_256.safetensors`` and the tokenizer ``wordllama/tokenizers/
  l2_supercat_tokenizer_config.json`` ship inside the wheel). Both files are opened from the installed
  package directly, so nothing is ever fetched from a model hub (``WordLlama.load`` would look for the
  tokenizer under a folder the wheel does not have and then try to download it).
* ``{base_url, model}``: any server speaking the OpenAI embeddings API, ``POST {base_url}/embeddings``
  with ``{"model", "input": [texts]}`` -> ``{"data": [{"index", "embedding"}]}`` (llama.cpp
  ``llama-server --embedding``, Ollama, Hugging Face TEI, SGLang ``--is-embedding``, vLLM).

Vectors are L2-normalised float32 rows; :func:`quantize` stores them as int8 with one float16 scale per
row (256 bytes + 2 per passage at 256-d, a quarter of float32).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Protocol

import numpy as np

from sovereign_mcp.config import EmbeddingServer, SearchSettings

log = logging.getLogger(__name__)

WORDLLAMA_WEIGHTS = "weights/l2_supercat_256.safetensors"
WORDLLAMA_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


class EmbeddingError(RuntimeError):
    """The embedding backend could not produce vectors (server down, bad answer, package missing)."""


class Embedder(Protocol):
    """``embed(texts) -> float32 array (len(texts), dim)``, rows L2-normalised; ``name`` identifies the model."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class WordLlamaEmbedder:
    """WordLlama ``l2_supercat`` at 256 dimensions, loaded from the installed wheel (~0.3 s, 16 MB).

    Raises:
        EmbeddingError: the ``wordllama`` package (or its packaged files) is not installed.
    """

    name = "wordllama/l2_supercat_256"

    def __init__(self) -> None:
        try:
            from safetensors import safe_open
            from tokenizers import Tokenizer
            from wordllama.inference import WordLlamaInference
        except ImportError as exc:
            raise EmbeddingError(f"search.embeddings = 'wordllama' needs the wordllama package: "
                                 f"pip install 'sovereign-mcp[dense]' ({exc})") from None
        package = resources.files("wordllama")
        weights, tokenizer = package / WORDLLAMA_WEIGHTS, package / WORDLLAMA_TOKENIZER
        if not (weights.is_file() and tokenizer.is_file()):
            raise EmbeddingError(f"wordllama is installed without {WORDLLAMA_WEIGHTS} / {WORDLLAMA_TOKENIZER}: "
                                 f"reinstall it from its wheel")
        with safe_open(str(weights), framework="np", device="cpu") as fh:
            table = fh.get_tensor("embedding.weight")
        self._model = WordLlamaInference(table, Tokenizer.from_file(str(tokenizer)), binary=False)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 256), dtype=np.float32)
        return _normalise(self._model.embed(list(texts), norm=True, batch_size=256))


class OpenAIEmbedder:
    """Client of an OpenAI-style ``POST {base_url}/embeddings`` endpoint on a local server (httpx).

    Raises (from :meth:`embed`):
        EmbeddingError: connection failure, timeout, non-2xx status, or an answer without one vector per text.
    """

    def __init__(self, server: EmbeddingServer) -> None:
        import httpx

        self.server = server
        self.name = f"{server.base_url.rstrip('/')}|{server.model}"
        headers = {"Authorization": f"Bearer {server.api_key.get_secret_value()}"} if server.api_key else {}
        self._client = httpx.Client(base_url=server.base_url.rstrip("/"), timeout=server.timeout, headers=headers)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import httpx

        out: list[np.ndarray] = []
        for lo in range(0, len(texts), self.server.batch_size):
            batch = list(texts[lo : lo + self.server.batch_size])
            try:
                response = self._client.post("/embeddings", json={"model": self.server.model, "input": batch})
                response.raise_for_status()
                rows = sorted(response.json()["data"], key=lambda row: row["index"])
                vectors = np.array([row["embedding"] for row in rows], dtype=np.float32)
            except httpx.HTTPError as exc:
                raise EmbeddingError(f"embedding server {self.server.base_url}: {type(exc).__name__}: {exc}") from None
            except (KeyError, TypeError, ValueError) as exc:
                raise EmbeddingError(f"embedding server {self.server.base_url} sent no usable 'data' list "
                                     f"({type(exc).__name__}: {exc})") from None
            if vectors.ndim != 2 or len(vectors) != len(batch):
                raise EmbeddingError(f"embedding server {self.server.base_url} returned {len(vectors)} vectors "
                                     f"for {len(batch)} texts")
            out.append(vectors)
        return _normalise(np.concatenate(out)) if out else np.zeros((0, 0), dtype=np.float32)

    def close(self) -> None:
        self._client.close()


def embedder_for(settings: SearchSettings) -> Embedder | None:
    """The backend ``settings.embeddings`` names, or ``None`` when it is ``"off"``.

    Raises:
        EmbeddingError: ``"wordllama"`` without the package installed.
    """
    choice = settings.embeddings
    if choice == "off":
        return None
    if choice == "wordllama":
        return WordLlamaEmbedder()
    return OpenAIEmbedder(choice)


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``vectors`` as ``(int8 codes, float16 scale)``: ``row ~= codes * scale`` (symmetric, per row)."""
    peak = np.abs(vectors).max(axis=1) if len(vectors) else np.zeros(0, dtype=np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
    return codes, scale.astype(np.float16)


def embed_all(embedder: Embedder, texts: Sequence[str], batch: int = 2048,
              progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embed ``texts`` in batches and quantize them; ``progress(done, total)`` after each batch."""
    codes, scales = [], []
    for lo in range(0, len(texts), batch):
        c, s = quantize(embedder.embed(texts[lo : lo + batch]))
        codes.append(c)
        scales.append(s)
        if progress is not None:
            progress(min(lo + batch, len(texts)), len(texts))
    if not codes:
        return np.zeros((0, 0), dtype=np.int8), np.zeros(0, dtype=np.float16)
    return np.concatenate(codes), np.concatenate(scales)
