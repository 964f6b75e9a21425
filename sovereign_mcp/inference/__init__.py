"""Inference fallback chain: OpenAI-compatible chat over local servers (SGLang, llama.cpp, Ollama), in order.

The client is :class:`sovereign_mcp.inference.client.ChatClient` (``complete``, ``stream``,
``wait_until_available``, ``health``, ``status``); its result :class:`~sovereign_mcp.inference.protocol.Completion`.
This package's ``__init__`` re-exports only the settings and the errors, so :mod:`sovereign_mcp.config` loads
no HTTP client: import engines from their modules.
"""

from sovereign_mcp.inference.config import InferenceSettings, ProviderSettings, is_local_host
from sovereign_mcp.inference.errors import (
    InferenceDeadlineExceeded,
    InferenceError,
    InferenceRequestError,
    InferenceUnavailable,
    SovereigntyError,
)

__all__ = [
    "InferenceDeadlineExceeded",
    "InferenceError",
    "InferenceRequestError",
    "InferenceSettings",
    "InferenceUnavailable",
    "ProviderSettings",
    "SovereigntyError",
    "is_local_host",
]
