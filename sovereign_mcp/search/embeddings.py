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
row (256 bytes + 2 per passage at 256-d, a quarter of float32). The index cache keeps the codes in a
separate ``.npy`` file that a server maps read-only (``numpy.load(mmap_mode='r')``): a query reads only its
candidates' rows, so the vectors cost page cache, not resident memory.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
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
    """WordLlama ``l2_supercat`` at 256 dimensions, read from the installed wheel (~0.1 s, ~25 MB resident).

    A text's vector is the mean of its tokens' rows of the embedding table, L2-normalised: the same
    computation as ``wordllama.inference.WordLlamaInference.embed(texts, norm=True)`` (mean pooling over the
    attention mask). It is done here over the wheel's files with ``tokenizers`` and ``safetensors`` because
    importing ``wordllama`` itself costs ~30 MB (and reconfigures the root logger), its table is widened to
    float32 (32 MB instead of 16), and its batches are padded to their longest text, which makes embedding
    long passages need hundreds of MB. Here the table stays float16 and each batch is pooled without padding.

    Raises:
        EmbeddingError: the ``wordllama`` package (or its packaged files) is not installed.
    """

    name = "wordllama/l2_supercat_256"

    def __init__(self) -> None:
        try:
            from safetensors import safe_open
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(f"search.embeddings = 'wordllama' needs the wordllama package: "
                                 f"pip install 'sovereign-mcp[dense]' ({exc})") from None
        package = _wordllama_files()
        weights, tokenizer = package / WORDLLAMA_WEIGHTS, package / WORDLLAMA_TOKENIZER
        if not (weights.is_file() and tokenizer.is_file()):
            raise EmbeddingError(f"wordllama is installed without {WORDLLAMA_WEIGHTS} / {WORDLLAMA_TOKENIZER}: "
                                 f"reinstall it from its wheel")
        with safe_open(str(weights), framework="np", device="cpu") as fh:
            self._table = np.ascontiguousarray(fh.get_tensor("embedding.weight"))  # (vocab, 256), float16
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def embed(self, texts: Sequence[str], batch: int = 256) -> np.ndarray:
        """``(len(texts), 256)`` float32, rows L2-normalised (a text without tokens gets a zero row)."""
        out = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        for lo in range(0, len(texts), batch):
            encodings = self._tokenizer.encode_batch(list(texts[lo : lo + batch]), add_special_tokens=False)
            lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
            present = np.flatnonzero(lengths)
            if not len(present):
                continue
            ids = np.concatenate([np.asarray(encodings[k].ids, dtype=np.int64) for k in present])
            np.clip(ids, 0, len(self._table) - 1, out=ids)
            starts = np.concatenate(([0], np.cumsum(lengths[present])[:-1]))
            sums = np.add.reduceat(self._table[ids].astype(np.float32), starts, axis=0)
            out[lo + present] = sums / lengths[present, None]
        return _normalise(out)


def _wordllama_files() -> Path:
    """The installed ``wordllama`` package folder, found without importing it (its ``__init__`` is heavy)."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError("search.embeddings = 'wordllama' needs the wordllama package: "
                             "pip install 'sovereign-mcp[dense]'")
    return Path(next(iter(spec.submodule_search_locations)))


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
