"""Inference fallback chain: OpenAI-compatible chat over local servers (SGLang, llama.cpp, Ollama), in order.

Public API: :class:`ChatClient` (``complete``, ``stream``, ``wait_until_available``, ``health``, ``status``),
its settings :class:`InferenceSettings` / :class:`ProviderSettings`, the result :class:`Completion`, and the
errors :class:`InferenceRequestError`, :class:`InferenceUnavailable`, :class:`InferenceDeadlineExceeded`,
:class:`SovereigntyError`.
"""

from sovereign_mcp.inference.breaker import BreakerState, CircuitBreaker
from sovereign_mcp.inference.client import ChatClient, ProviderStatus
from sovereign_mcp.inference.config import InferenceSettings, ProviderSettings, is_local_host
from sovereign_mcp.inference.errors import (
    InferenceDeadlineExceeded,
    InferenceError,
    InferenceRequestError,
    InferenceUnavailable,
    SovereigntyError,
)
from sovereign_mcp.inference.messages import merge_consecutive_roles
from sovereign_mcp.inference.protocol import Completion, Usage

__all__ = [
    "BreakerState",
    "ChatClient",
    "CircuitBreaker",
    "Completion",
    "InferenceDeadlineExceeded",
    "InferenceError",
    "InferenceRequestError",
    "InferenceSettings",
    "InferenceUnavailable",
    "ProviderSettings",
    "ProviderStatus",
    "SovereigntyError",
    "Usage",
    "is_local_host",
    "merge_consecutive_roles",
]
