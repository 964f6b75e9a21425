"""Diagnostics as a service: the KB's SGLang rules plus the configured live-probe target."""

from __future__ import annotations

from collections.abc import Callable

from sovereign_mcp.config import Settings
from sovereign_mcp.diagnostics.engine import Diagnoser, DiagnosisReport, mvp_flags
from sovereign_mcp.diagnostics.probe import probe_sglang
from sovereign_mcp.kb.loader import KnowledgeBase


class DiagnosticsService:
    """Runs :class:`Diagnoser` and, when asked, the probe against ``diagnostics.sglang_url``."""

    def __init__(
        self, settings: Settings, kb: KnowledgeBase, article_url: Callable[[str], str | None] = lambda slug: None
    ) -> None:
        self.settings = settings.diagnostics
        self.diagnoser = Diagnoser(kb, article_url, self.settings.hardware)

    def run(
        self,
        *,
        error_log: str | None = None,
        launch_command: str | None = None,
        env: dict[str, str] | str | None = None,
        hardware: str | None = None,
        probe_url: str | None = None,
        attention_backend: str | None = None,
        mem_fraction: float | None = None,
        cuda_graph_max_bs: int | None = None,
        image_tag: str | None = None,
        error_message: str | None = None,
    ) -> DiagnosisReport:
        """Diagnose; ``probe_url`` (an explicit URL) triggers the live probe. ``error_message`` (the
        MVP's name) is appended to ``error_log``.

        Raises:
            DiagnoseInputError: ``error_log`` over 1 MB.
        """
        probe = None
        if probe_url:
            probe = probe_sglang(probe_url, self.settings.probe_timeout, self.settings.meminfo_path)
        return self.diagnoser.diagnose(
            error_log="\n".join(part for part in (error_log, error_message) if part) or None,
            launch_command=launch_command,
            env=env,
            hardware=hardware,
            probe=probe,
            extra_flags=mvp_flags(attention_backend, mem_fraction, cuda_graph_max_bs),
            image=image_tag,
        )
