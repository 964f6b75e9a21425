"""Settings of the GPU service manager: which services share the GPU memory pool and how to drive them.

The operator's DGX Spark (GB10) has one 128 GB unified memory pool. SGLang (~94 GB), Voxtral TTS
(~111 GB) and ComfyUI FLUX (~14 GB) do not fit together, so only one runs at a time; after one stops,
unified memory comes back late, so the next one waits ``cooldown_seconds`` (60 s) or it loads and then
runs out of memory on its first real request (the operator's stack write-up).

Sizes are GB (10^9 bytes), durations are seconds. These models are meant to be nested in the global
``Settings`` as ``gpu: GPUSettings`` (TOML section ``[gpu]``, ``[[gpu.services]]``).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ServiceKind = Literal["sglang", "voxtral", "comfyui", "other"]


class GPUServiceSettings(BaseModel):
    """One GPU-bound service.

    ``start_command`` and ``stop_command`` are run without a shell (split with :func:`shlex.split`) and
    must return once the service is launched or gone: ``systemctl start sglang-mistral4`` (as a
    non-root user: ``sudo -n systemctl ...`` with a NOPASSWD sudoers entry for exactly that command),
    ``docker start ...``, or ``python -m sovereign_mcp.gpu.launcher start --pidfile ... -- <server>``
    for a plain process (the launcher stops its whole process group, SIGTERM then SIGKILL).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    kind: ServiceKind = "other"
    start_command: str = Field(min_length=1)
    stop_command: str = Field(min_length=1)
    readiness_url: str = Field(description="GET answers 200 once the service serves requests (503 = warming up).")
    memory_gb: float = Field(gt=0, le=4096, description="Memory the service takes while loaded, GB.")
    ready_timeout: float = Field(300.0, gt=0, description="Longest wait from the start request to HTTP 200, s.")
    cooldown_seconds: float = Field(60.0, ge=0, description="Wait after a stop before this service starts, s.")
    stop_timeout: float = Field(60.0, gt=0, description="Longest wait for the readiness URL to go away after "
                                "the stop command, s.")
    command_timeout: float = Field(180.0, gt=0, description="Limit for one start or stop command, s.")
    start_backoff_seconds: float = Field(600.0, ge=0, description="After a start that did not become ready, no "
                                         "new start for this long; doubles with each further failure, s "
                                         "(0 = retry at once). A failed start costs ready_timeout plus a "
                                         "cooldown, so trying again sooner than twice that mostly waits.")
    start_backoff_max_seconds: float = Field(3600.0, ge=0, description="Cap of the growing start backoff, s.")
    idle_stop_seconds: float | None = Field(None, gt=0, description="Stop the service once it has had no lease "
                                            "and no waiting job for this long, s (unset = never).")

    @field_validator("start_command", "stop_command")
    @classmethod
    def _check_command(cls, value: str) -> str:
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split command: {exc}") from None
        if not parts:
            raise ValueError("empty command")
        return value

    @field_validator("readiness_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


def default_services() -> list[GPUServiceSettings]:
    """The operator's three services with their memory figures and readiness endpoints.

    SGLang's ``/health`` answers 503 while warming and 200 once a one-token generation works; Voxtral
    (vLLM-Omni) is ready when ``/v1/audio/voices`` answers (it needs 60-90 s to load); ComfyUI when
    ``/system_stats`` answers. Names and commands match the unit files in ``systemd/`` (their
    ``ExecStopPost=/bin/sleep 60`` overlaps the manager's cooldown, which counts from the moment the
    readiness URL went away, so the wait is not doubled). SGLang, the LLM every text step needs, is never
    stopped for idleness; Voxtral and ComfyUI are stopped after 5 idle minutes, giving their memory back.
    """
    return [
        GPUServiceSettings(name="sglang-mistral4", kind="sglang",
                           start_command="systemctl start sglang-mistral4.service",
                           stop_command="systemctl stop sglang-mistral4.service",
                           readiness_url="http://127.0.0.1:30000/health", memory_gb=94.0),
        GPUServiceSettings(name="voxtral-tts", kind="voxtral", start_command="systemctl start voxtral-tts.service",
                           stop_command="systemctl stop voxtral-tts.service",
                           readiness_url="http://127.0.0.1:8001/v1/audio/voices", memory_gb=111.0,
                           idle_stop_seconds=300.0),
        GPUServiceSettings(name="comfyui-flux", kind="comfyui", start_command="systemctl start comfyui-flux.service",
                           stop_command="systemctl stop comfyui-flux.service",
                           readiness_url="http://127.0.0.1:8188/system_stats", memory_gb=14.0,
                           idle_stop_seconds=300.0),
    ]


class GPUSettings(BaseModel):
    """The shared GPU pool: its services and the guards applied before one starts."""

    model_config = ConfigDict(extra="forbid")

    services: list[GPUServiceSettings] = Field(default_factory=default_services)
    memory_margin_gb: float = Field(4.0, ge=0, description="Free memory wanted beyond a service's memory_gb, GB.")
    memory_wait_seconds: float = Field(120.0, ge=0, description="How long MemAvailable may take to come back, s.")
    meminfo_path: Path = Field(Path("/proc/meminfo"), description="MemAvailable source (nvidia-smi shows [N/A] "
                               "on GB10).")
    state_path: Path | None = Field(None, description="SQLite state file; default <data_dir>/gpu/state.sqlite3; "
                                    "a relative path is taken under data_dir. The lock file sits next to it.")
    busy_timeout_seconds: float = Field(1800.0, ge=0, description="Default wait for another service's leases "
                                        "to end before ServiceBusyError, s.")
    poll_interval: float = Field(1.0, gt=0, le=60, description="Polling period for readiness, memory, leases, s.")
    http_timeout: float = Field(2.0, gt=0, le=60, description="Timeout of one readiness request (first byte "
                                "included), s; far below a generation's timeout, so a hung service fails fast.")
    probe_connect_timeout: float = Field(0.5, gt=0, le=60, description="Connect timeout of one readiness "
                                         "request, s (loopback: a live service accepts at once).")
    event_retention: int = Field(100_000, ge=100, description="Newest events kept in the event log.")

    @model_validator(mode="after")
    def _unique_names(self) -> GPUSettings:
        seen: set[str] = set()
        for service in self.services:
            if service.name in seen:
                raise ValueError(f"duplicate GPU service name {service.name!r}")
            seen.add(service.name)
        return self

    def service(self, name: str) -> GPUServiceSettings:
        """The service called ``name``.

        Raises:
            KeyError: no such service is configured.
        """
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"unknown GPU service {name!r} (configured: {', '.join(s.name for s in self.services)})")

    def resolved_state_path(self, data_dir: Path) -> Path:
        """The SQLite state file for ``data_dir``."""
        if self.state_path is None:
            return data_dir / "gpu" / "state.sqlite3"
        return self.state_path if self.state_path.is_absolute() else data_dir / self.state_path
