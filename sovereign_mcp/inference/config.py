"""Settings of the inference fallback chain: which OpenAI-compatible servers to call, in which order.

Shape (TOML, once nested in the global settings as ``[inference]``)::

    [inference]
    sovereign_mode = true        # refuse providers outside loopback / private networks
    failure_threshold = 3        # consecutive failures that open a provider's circuit
    cooldown_seconds = 30        # open -> half-open after this long, seconds
    deadline_seconds = 600       # default budget of one call over all providers, seconds

    [[inference.providers]]      # tried in this order
    name = "sglang"
    kind = "sglang"              # sglang | llamacpp | ollama | openai (picks the health endpoint)
    base_url = "http://127.0.0.1:30000/v1"
    model = "mistral-small-4"    # optional: unset = first id of GET {base_url}/models
    timeout = 120                # per attempt, seconds

Defaults follow the operator's stack (the operator's stack write-up; llama.cpp ``tools/server/README.md``;
Ollama ``docs/openai.md``): SGLang serving Mistral Small 4 on port 30000, then llama.cpp ``llama-server``
on port 8080 as the
local model of last resort (sovereign-forge epic, "Model Fallback Chain": "the local model becomes the
ultimate fallback of last resort"). Ollama would be ``http://127.0.0.1:11434/v1`` with ``kind = "ollama"``.

Sovereign mode (the epic's "no cloud API calls in critical path") refuses at construction any provider whose
host is not ``localhost`` (or ``*.localhost``, RFC 6761) nor a loopback, private (RFC 1918, RFC 4193) or
link-local IP address. A LAN host name cannot be judged without DNS: mark it ``local = true``. The same goes
for Tailscale's 100.64.0.0/10 addresses, which Python does not count as private.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sovereign_mcp.inference.errors import SovereigntyError

ProviderKind = Literal["sglang", "llamacpp", "ollama", "openai"]


def is_local_host(host: str) -> bool:
    """Whether ``host`` is this machine or a private network: ``localhost``, ``*.localhost``, or a loopback,
    private or link-local IPv4/IPv6 literal (brackets allowed). Host names are never resolved (no DNS)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


class ProviderSettings(BaseModel):
    """One OpenAI-compatible chat server of the chain."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][\w.\-]{0,63}$", description="Label used in errors and logs.")
    base_url: str = Field(description="OpenAI-compatible base URL including /v1, e.g. http://127.0.0.1:30000/v1.")
    kind: ProviderKind = Field("openai", description="Server type; picks the readiness endpoint.")
    model: str | None = Field(None, description="Model id to request; unset = first id of GET {base_url}/models.")
    api_key: SecretStr | None = Field(None, description="Sent as 'Authorization: Bearer <key>'.")
    timeout: float = Field(120.0, gt=0, le=3600, description="Per-attempt timeout, seconds: for a non-streamed "
                           "answer the whole generation, for a stream the longest gap between chunks.")
    connect_timeout: float = Field(5.0, gt=0, le=60, description="TCP/TLS connect timeout, seconds.")
    local: bool | None = Field(None, description="Whether the host is on the operator's own machines; "
                               "unset = judged from the host (loopback/private IP or localhost).")

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/v1")
        return value.rstrip("/")

    @property
    def host(self) -> str:
        """The URL's host name or IP literal (without brackets)."""
        return urlsplit(self.base_url).hostname or ""

    @property
    def is_local(self) -> bool:
        """``local`` when set, else :func:`is_local_host` of the URL's host."""
        return self.local if self.local is not None else is_local_host(self.host)

    @property
    def root_url(self) -> str:
        """The server root: ``base_url`` without a trailing ``/v1`` (where ``/health`` and ``/api/*`` live)."""
        return self.base_url.removesuffix("/v1")


def _default_providers() -> list[ProviderSettings]:
    return [
        ProviderSettings(name="sglang", kind="sglang", base_url="http://127.0.0.1:30000/v1", timeout=120.0),
        # CPU llama.cpp at ~5 tokens/s (sovereign-forge epic) needs minutes for a long answer.
        ProviderSettings(name="llamacpp", kind="llamacpp", base_url="http://127.0.0.1:8080/v1", timeout=300.0),
    ]


class InferenceSettings(BaseModel):
    """The fallback chain: providers in order, circuit-breaker knobs and the per-call deadline.

    Raises (at construction, as a pydantic ``ValidationError``):
        SovereigntyError: ``sovereign_mode`` is on and a provider is not local; the message names it.
        ValueError: two providers share a name, or the list is empty.
    """

    model_config = ConfigDict(extra="forbid")

    providers: list[ProviderSettings] = Field(default_factory=_default_providers, min_length=1)
    sovereign_mode: bool = Field(True, description="Refuse any provider whose host is not loopback/private.")
    failure_threshold: int = Field(3, ge=1, le=1000, description="Consecutive failures that open a circuit.")
    cooldown_seconds: float = Field(30.0, ge=0, le=86_400, description="Open circuit -> one probe after, seconds.")
    deadline_seconds: float = Field(600.0, gt=0, le=86_400, description="Default budget of one call, seconds.")
    probe_timeout_seconds: float = Field(5.0, gt=0, le=120, description="Readiness GET of a provider that timed "
                                         "out, before it gets a real call again, seconds (connect and answer).")

    @model_validator(mode="after")
    def _check(self) -> InferenceSettings:
        names = [p.name for p in self.providers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"provider names must be unique; repeated: {', '.join(duplicates)}")
        self.refuse_non_local()
        return self

    def refuse_non_local(self) -> None:
        """Raise :class:`SovereigntyError` naming the first non-local provider if ``sovereign_mode`` is on."""
        if not self.sovereign_mode:
            return
        for provider in self.providers:
            if not provider.is_local:
                raise SovereigntyError(
                    f"sovereign_mode refuses provider {provider.name!r} at {provider.base_url}: host "
                    f"{provider.host!r} is not loopback, private or localhost. Set local = true on it if it runs "
                    f"on your own network, or sovereign_mode = false to allow remote providers."
                )
