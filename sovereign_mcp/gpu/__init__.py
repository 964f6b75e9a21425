"""GPU service manager: one GPU-bound service (SGLang, Voxtral TTS, ComfyUI) at a time on a shared
unified memory pool, with a memory guard, a cooldown after each stop, readiness checks and leases.

This package's ``__init__`` re-exports the settings only, so :mod:`sovereign_mcp.config` loads no engine;
import the manager from :mod:`sovereign_mcp.gpu.manager`.
"""

from sovereign_mcp.gpu.config import GPUServiceSettings, GPUSettings, ServiceKind, default_services

__all__ = ["GPUServiceSettings", "GPUSettings", "ServiceKind", "default_services"]
