"""What the pipeline's worker and steps work with, built once per pipeline service.

The worker is handed this object, not the service: it needs the store, the GPU manager, the inference chain,
the quality gate, the media clients and which GPU service serves each role, and nothing of the service's job
API. The heavy collaborators (gate, chat client, GPU manager) are built on first use, so a process that only
reads job status never opens them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from sovereign_mcp.config import Settings
from sovereign_mcp.corpus.models import Article
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.gpu.manager import GPUServiceManager
from sovereign_mcp.inference.client import ChatClient
from sovereign_mcp.inference.shared import SharedBreakers
from sovereign_mcp.pipeline.config import ROLES, PipelineSettings, Role
from sovereign_mcp.pipeline.media import ComfyUIClient, VoxtralClient
from sovereign_mcp.pipeline.store import JobStore


def gpu_service_for(settings: Settings, role: Role | str | None) -> str | None:
    """The ``[[gpu.services]]`` name that serves ``role``: ``pipeline.services[role]``, else the first service of
    that ``kind``; ``None`` when the role is not managed (or ``pipeline.manage_gpu`` is off)."""
    if role is None or not settings.pipeline.manage_gpu:
        return None
    if role in settings.pipeline.services:
        return settings.pipeline.services[role]  # type: ignore[index]
    return next((service.name for service in settings.gpu.services if service.kind == role), None)


class PipelineDeps:
    """The pipeline's collaborators.

    Args:
        settings: the effective settings (``pipeline``, ``gpu``, ``inference``, ``kb``, ``data_dir``).
        store: the job store.
        gates: the quality gate (default: one over ``settings.kb`` with facts from ``articles``).
        articles: the published articles (gate facts).
        chat: the inference chain (default: from ``settings.inference``).
        gpu: the GPU manager (default: one over ``settings.gpu`` and ``settings.data_dir``).

    Raises:
        ValueError: ``pipeline.services`` maps a role to a name that is not in ``[[gpu.services]]``.
    """

    def __init__(self, settings: Settings, store: JobStore, *, gates: GateService | None = None,
                 articles: Callable[[], Sequence[Article]] | None = None, chat: ChatClient | None = None,
                 gpu: GPUServiceManager | None = None) -> None:
        self.settings = settings
        self.config: PipelineSettings = settings.pipeline
        self.store = store
        self.articles: Callable[[], Sequence[Article]] = articles or (lambda: ())
        self._gates = gates
        self._chat = chat
        self._gpu = gpu
        self._lock = threading.Lock()
        for role, name in self.config.services.items():
            try:
                settings.gpu.service(name)
            except KeyError:
                raise ValueError(f"pipeline.services.{role} names {name!r}, which is not in [[gpu.services]]")\
                    from None

    @property
    def gates(self) -> GateService:
        """The quality gate (built on first use)."""
        with self._lock:
            if self._gates is None:
                self._gates = GateService(self.settings, self.articles)
            return self._gates

    @property
    def chat(self) -> ChatClient:
        """The inference chain (built on first use)."""
        with self._lock:
            if self._chat is None:
                self._chat = ChatClient(self.settings.inference, shared=SharedBreakers(
                    self.settings.data_dir / "inference-breakers.sqlite3"))
            return self._chat

    @property
    def gpu(self) -> GPUServiceManager:
        """The GPU manager (built on first use)."""
        with self._lock:
            if self._gpu is None:
                self._gpu = GPUServiceManager(self.settings.gpu, self.settings.data_dir)
            return self._gpu

    def voxtral_client(self) -> VoxtralClient:
        """A Voxtral TTS client from ``pipeline.voxtral_url`` (``tts_timeout`` seconds, ``http_retries``)."""
        return VoxtralClient(self.config.voxtral_url, self.config.voxtral_model, timeout=self.config.tts_timeout,
                             retries=self.config.http_retries)

    def comfyui_client(self) -> ComfyUIClient:
        """A ComfyUI client from ``pipeline.comfyui_url``."""
        return ComfyUIClient(self.config.comfyui_url, retries=self.config.http_retries)

    def gpu_service_for(self, role: Role | str | None) -> str | None:
        """The ``[[gpu.services]]`` name that serves ``role``, or ``None`` when it is not managed."""
        return gpu_service_for(self.settings, role)

    def running_role(self) -> str | None:
        """The role of the GPU service the manager records ``running`` (``None`` if none or unmanaged)."""
        if not self.config.manage_gpu:
            return None
        names = {self.gpu_service_for(role): role for role in ROLES}
        names.pop(None, None)
        if not names:
            return None
        try:
            status = self.gpu.status()
        except Exception:  # status is advisory here
            return None
        for service in status.services:
            if service.state == "running" and service.name in names:
                return names[service.name]
        return None

    def close(self) -> None:
        """Close the inference client if one was built."""
        if self._chat is not None:
            self._chat.close()
