"""Configuration: defaults < TOML file < ``SOVEREIGN_MCP_*`` environment < command-line overrides.

The TOML file is the one given with ``--config PATH``, else ``./sovereign-mcp.toml``, else
``<user config dir>/sovereign-mcp/config.toml`` (platformdirs). Sections map to the nested models
below (``[server]``, ``[corpus]``, ``[search]``, ``[kb]``, ``[diagnostics]``,
``[payments]``, ``[inference]``, ``[gpu]``, ``[pipeline]``, ``[auth]``, ``[rate_limit]``,
``[observability]``, ``[dashboard]``); environment variables
use ``__`` between levels, e.g. ``SOVEREIGN_MCP_SERVER__PORT=8003`` or ``SOVEREIGN_MCP_CORPUS__BASE_URL=https://blog.example``.
"""

from __future__ import annotations

import contextvars
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sovereign_mcp.affiliate.config import AffiliateSettings
from sovereign_mcp.alttext.config import AltTextSettings
from sovereign_mcp.gpu.config import GPUSettings
from sovereign_mcp.inference.config import InferenceSettings
from sovereign_mcp.paths import APP_NAME, ENV_PREFIX, default_config_file, default_corpus_dir, default_kb_dir
from sovereign_mcp.pipeline.config import PipelineSettings

SECRET_MARKERS = ("token", "secret", "password", "key", "macaroon", "preimage")


class ConfigError(Exception):
    """Raised when the effective configuration is invalid; ``str(err)`` names the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    """HTTP transport settings. Port 8002 because Voxtral TTS already listens on 8001."""

    host: str = "127.0.0.1"
    port: int = Field(8002, ge=1, le=65535)
    path: str = Field("/mcp", pattern=r"^/[\w\-/]*$")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header values accepted (DNS-rebinding protection); '*' disables the check.",
    )
    allowed_origins: list[str] = Field(default_factory=list)
    stateless_http: bool = Field(True, description=(
        "No server-side MCP sessions: every POST stands alone (the 2026-07-28 protocol is sessionless anyway). "
        "false keeps sessions for older clients that want server-initiated streams; each costs memory for "
        "30 min idle and the SDK caps them at 10,000, which anonymous clients could fill."))
    json_response: bool = False
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted /api request body, bytes.")
    max_mcp_body_bytes: int = Field(4 * 1_048_576, ge=1024, description="Largest accepted POST to the MCP "
                                    "endpoint, bytes (validate_quality takes up to 1 MB of text, JSON-escaped).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (>1 forces stateless_http).")
    trusted_proxies: list[str] = Field(default_factory=list, description=(
        "Addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed (uvicorn "
        "forwarded_allow_ips); empty = the socket peer is the client."))
    tool_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="Default limit for one tool call, s.")
    tool_timeouts: dict[str, float] = Field(default_factory=dict, description="Per-tool limits, s, by tool name.")

    @model_validator(mode="after")
    def _workers_are_stateless(self) -> ServerSettings:
        """An MCP session lives in one process's memory, so several worker processes serve stateless HTTP
        (``workers > 1`` forces ``stateless_http = true``; ``config show`` shows the effective value)."""
        if self.workers > 1:
            self.stateless_http = True
        return self


class AuthSettings(_Section):
    """Operator authentication: bearer tokens for operator-only tools and routes (stdio is the local operator)."""

    enabled: bool = Field(True, description="Operator-only tools need a bearer token with the operator scope "
                          "(false: every HTTP caller is the operator; only for a server bound to loopback).")
    jwt_jwks_uri: str | None = Field(None, description="Also accept JWTs verified against this JWKS URL.")
    jwt_public_key: SecretStr | None = Field(None, description="Also accept JWTs signed by this PEM public key.")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_operator_scope: str = Field("operator", min_length=1, description="JWT scope that grants operator access.")

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthSettings:
        if self.jwt_public_key is not None and self.jwt_jwks_uri:  # FastMCP's JWTVerifier takes one of them
            raise ValueError("set auth.jwt_public_key or auth.jwt_jwks_uri, not both")
        return self


class DashboardSettings(_Section):
    """The operator dashboard at ``/dashboard`` (sovereign_mcp.dashboard): login sessions and refresh."""

    enabled: bool = Field(True, description="Serve /dashboard (login with an operator token; no data without "
                          "a session).")
    session_hours: float = Field(8.0, gt=0, le=24 * 30, description="Lifetime of a dashboard login session, hours "
                                 "(never past the operator token's own expiry).")
    max_sessions: int = Field(64, ge=1, le=10_000, description="Sessions kept in memory; the oldest goes first.")
    refresh_seconds: float = Field(3.0, ge=0.5, le=300, description="How often the page polls its panels, s.")
    chart_days: int = Field(14, ge=2, le=90, description="Days shown in the sats-per-day and jobs-per-day charts.")
    recent_jobs: int = Field(20, ge=1, le=200, description="Jobs listed in the queue panel (active ones first).")
    gpu_events: int = Field(30, ge=1, le=500, description="Newest GPU event-log rows shown.")


class RateLimitSettings(_Section):
    """Per-client request limits (client = bearer token id when authenticated, else the client IP)."""

    enabled: bool = True
    free_calls: str = Field("60/minute", description="Free tool calls and /api requests per client "
                            "(limits library notation: '60/minute', '1000/hour').")
    challenges: str = Field("20/minute", description="L402 invoices issued per client (each unpaid call to a "
                            "paid tool creates one).")
    storage_uri: str = Field("memory://", description="limits storage: memory:// (per process) or "
                             "redis://host:port to share counters between worker processes.")

    @field_validator("free_calls", "challenges")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError("must be like '60/minute', '1000/hour' or '5 per second'") from None
        return value


class ObservabilitySettings(_Section):
    """Metrics and logs."""

    metrics: bool = Field(True, description="Serve GET /metrics in Prometheus text format.")
    metrics_token: SecretStr | None = Field(None, description="When set, /metrics needs 'Authorization: Bearer "
                                            "<this>' (else an operator token is not required).")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per line with the "
                                                "request id.")


class CorpusSettings(_Section):
    """Where the published articles come from."""

    paths: list[Path] = Field(default_factory=lambda: [default_corpus_dir()])
    base_url: str | None = Field(None, description="Public site URL; joined with each article's path.")
    watch: bool = Field(True, description="Rebuild the index in the background when corpus files change.")
    extensions: list[str] = Field(default_factory=lambda: [".md", ".markdown", ".mdown", ".mdx"])

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


class EmbeddingServer(_Section):
    """A local server speaking the OpenAI embeddings API (``POST {base_url}/embeddings``), for the dense re-rank."""

    base_url: str = Field(description="e.g. http://127.0.0.1:8080/v1 (llama.cpp --embedding) or "
                                      "http://127.0.0.1:11434/v1 (Ollama)")
    model: str = Field(min_length=1, description="Model name the server expects, e.g. nomic-embed-text.")
    api_key: SecretStr | None = None
    timeout: float = Field(10.0, gt=0, le=600, description="Per-request timeout, seconds.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per request when indexing.")

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class SearchSettings(_Section):
    """Ranking knobs and result limits (defaults chosen by benchmarks/search_quality.py)."""

    default_results: int = Field(5, ge=1, le=100)
    max_results: int = Field(20, ge=1, le=100)
    article_page_chars: int = Field(20_000, ge=500, description="Default get_article page size, characters.")
    weighting: Literal["bm25", "tfidf"] = "bm25"
    k1: float = Field(1.2, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    passage_weight: float = Field(0.5, ge=0, le=1, description=(
        "Weight of the best passage's score against the whole article's, each divided by its per-query maximum."))
    embeddings: Literal["off", "wordllama"] | EmbeddingServer = Field("off", description=(
        "Dense re-rank of the lexical candidates: 'off', 'wordllama' (static vectors shipped in the wordllama "
        "wheel) or a table {base_url, model} for a local OpenAI-style embedding server."))
    dense_weight: float = Field(0.15, ge=0, le=1, description="Share of the dense score in the final ranking.")
    dense_candidates: int = Field(200, ge=1, le=10_000, description="Articles re-ranked by the dense stage.")
    boost_title: float = Field(0.3, ge=0, description="Title weight added to the whole-article score.")
    boost_headings: float = Field(0.0, ge=0, description="Heading-path weight added to a passage's score.")
    boost_tags: float = Field(0.0, ge=0, description="Tag weight added to the whole-article score.")
    boost_description: float = Field(0.0, ge=0, description="Description weight added to the whole-article score.")
    min_passage_chars: int = Field(1200, ge=0, description="Paragraphs merge under one heading up to this size.")


class KBSettings(_Section):
    """Knowledge-base roots, in override order (a later root's entry replaces an earlier one by id)."""

    paths: list[Path] = Field(default_factory=lambda: [default_kb_dir()])


class DiagnosticsSettings(_Section):
    """SGLang diagnostics: the hardware assumed when none is given, and the live probe target."""

    hardware: str = "GB10 (DGX Spark)"
    sglang_url: str | None = Field(None, description="Base URL of the SGLang server to probe; unset = no probe.")
    probe_timeout: float = Field(2.0, gt=0, le=30, description="Per-request probe timeout, seconds.")
    meminfo_path: Path = Path("/proc/meminfo")

    @field_validator("sglang_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class Price(_Section):
    """What one token for a tool costs: ``sats`` buys ``calls`` calls within ``valid_seconds``."""

    sats: int = Field(ge=1, le=10_000_000)
    calls: int = Field(1, ge=1, le=1_000_000)
    valid_seconds: int = Field(86_400, ge=60)


BACKEND_SETTINGS: dict[str, tuple[str, ...]] = {
    "lnbits": ("lnbits_url", "lnbits_invoice_key"),
    "lnd": ("lnd_url", "lnd_macaroon"),
    "cln": ("cln_url", "cln_rune"),
}
"""The ``[payments]`` keys each Lightning backend needs (``dev`` needs none)."""


class PaymentsSettings(_Section):
    """L402 payments: which tools are paid, the Lightning backend, and where tokens are stored."""

    enabled: bool = True
    backend: Literal["dev", "lnbits", "lnd", "cln"] = "dev"
    prices: dict[str, Price] = Field(default_factory=lambda: {
        "validate_quality": Price(sats=21, calls=1),
        "trigger_pipeline": Price(sats=2100, calls=1),
        "check_affiliate_links": Price(sats=10, calls=1),
        "caption_image": Price(sats=50, calls=1),
    })
    invoice_expiry: int = Field(600, ge=30, le=86_400, description="Invoice lifetime, seconds.")
    free_calls_per_day: int = Field(0, ge=0, description="Free paid-tool calls per client (/24, /48) per day.")
    mcp_http_402: bool = Field(False, description=(
        "Answer unpaid tools/call on /mcp with HTTP 402 + WWW-Authenticate (for L402-aware proxies). Off: the "
        "payment_required challenge is an in-band tool result, which every MCP client can read."))
    database_url: str | None = Field(None, description="postgresql://... to share tokens; default SQLite.")
    lnbits_url: str | None = None
    lnbits_invoice_key: SecretStr | None = None
    lnd_url: str | None = None
    lnd_macaroon: SecretStr | None = Field(None, description="Invoice macaroon, hex.")
    lnd_tls_cert: Path | None = None
    cln_url: str | None = None
    cln_rune: SecretStr | None = None
    lightning_address_name: str = Field("tips", pattern=r"^[a-z0-9._-]{1,64}$")
    public_url: str | None = Field(None, description="Public base URL for LNURL callbacks (default: the request's).")
    lnurl_min_sat: int = Field(1, ge=1)
    lnurl_max_sat: int = Field(1_000_000, ge=1)

    def missing_backend_setting(self) -> str | None:
        """The first ``payments.*`` key the chosen Lightning backend needs and lacks, or ``None``.

        ``lnbits`` needs ``lnbits_url`` and ``lnbits_invoice_key`` (LNbits ``POST /api/v1/payments`` takes the
        invoice key in ``X-Api-Key``); ``lnd`` needs ``lnd_url`` and ``lnd_macaroon`` (REST ``/v1/invoices``,
        ``Grpc-Metadata-macaroon``); ``cln`` needs ``cln_url`` and ``cln_rune`` (clnrest ``Rune`` header);
        ``dev`` needs nothing. Not a load-time error, so ``config show`` can still print the rest: ``serve`` and
        ``config show`` report it at start (:meth:`Settings.problems`) and the backend factory refuses it.
        """
        needed = BACKEND_SETTINGS.get(self.backend, ())
        return next((f"payments.{key}" for key in needed if not getattr(self, key)), None)


class Settings(BaseSettings):
    """The effective configuration of one server process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    database_url: str | None = Field(None, description=(
        "postgresql://user:pass@host/db shares L402 tokens, operator tokens and job records between "
        "processes and hosts; unset = SQLite files under data_dir (shared by processes on one host)."))
    server: ServerSettings = Field(default_factory=ServerSettings)
    corpus: CorpusSettings = Field(default_factory=CorpusSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    kb: KBSettings = Field(default_factory=KBSettings)
    diagnostics: DiagnosticsSettings = Field(default_factory=DiagnosticsSettings)
    payments: PaymentsSettings = Field(default_factory=PaymentsSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    gpu: GPUSettings = Field(default_factory=GPUSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    affiliate: AffiliateSettings = Field(default_factory=AffiliateSettings)
    alt_text: AltTextSettings = Field(default_factory=AltTextSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _TOML_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _pipeline_roles_name_gpu_services(self) -> Settings:
        """``pipeline.services`` maps a role to a ``[[gpu.services]]`` name: each name must exist there."""
        known = [service.name for service in self.gpu.services]
        for role, name in self.pipeline.services.items():
            if name not in known:
                raise ValueError(f"pipeline.services.{role} names {name!r}, which is not in [[gpu.services]] "
                                 f"(names there: {', '.join(known) or 'none'}); add that service or fix the name")
        return self

    def problems(self) -> list[str]:
        """Settings that load but leave a part unable to start, one sentence each that says what to set
        (today: a Lightning backend without its URL or key while payments are enabled). ``serve`` refuses to
        start on any; ``config show`` prints them and exits 1."""
        out = []
        missing = self.payments.missing_backend_setting() if self.payments.enabled else None
        if missing:
            out.append(f"payments.backend = {self.payments.backend!r} needs {missing} (set it in [payments] or "
                       f"{ENV_PREFIX}{missing.upper().replace('.', '__')}, or use backend = 'dev')")
        return out

    @property
    def index_dir(self) -> Path:
        """Folder holding the persisted passage indexes (one file per corpus hash)."""
        return self.data_dir / "index"


_TOML_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml_file", default=None)


def find_config_file(explicit: Path | None = None) -> Path | None:
    """Return the TOML file to read: ``explicit``, else ``./sovereign-mcp.toml``, else the user one.

    Raises:
        ConfigError: ``explicit`` was given but does not exist.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return explicit
    return default_config_file()


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build the effective :class:`Settings`.

    Args:
        config: explicit TOML path (``--config``); ``None`` searches the default locations.
        overrides: nested dicts from the command line, e.g. ``corpus={"paths": [...]}``; highest priority.

    Raises:
        ConfigError: unreadable TOML, or a value that fails validation (message names the key).
    """
    path = find_config_file(config)
    if path is not None:
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    token = _TOML_FILE.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    finally:
        _TOML_FILE.reset(token)


def _describe(exc: ValidationError, path: Path | None) -> str:
    """One line per invalid key: ``server.port: Input should be ... (got 70000)``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        got = err.get("input")
        if not key:  # a rule across sections (a model validator): its message names the keys itself
            lines.append(err["msg"].removeprefix("Value error, "))
            continue
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key}: {err['msg']}{shown}")
    where = f"config file {path} or " if path else ""
    return f"invalid configuration (from {where}{ENV_PREFIX}* environment or flags):\n  " + "\n  ".join(lines)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret-looking value replaced by ``"***"``."""

    def scrub(key: str, value: Any) -> Any:
        if isinstance(value, SecretStr) or (
            isinstance(value, str) and value and any(m in key.lower() for m in SECRET_MARKERS)
        ):
            return "***"
        if isinstance(value, dict):
            return {k: scrub(k, v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [scrub(key, v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return scrub("", settings.model_dump())
