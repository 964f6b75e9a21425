"""Live probe of a running SGLang server (read-only HTTP GETs with short timeouts).

Endpoints (SGLang ``python/sglang/srt/entrypoints/http_server.py``): ``/health`` (200 when a one-token
generation works, 503 while
starting), ``/server_info`` (older servers: ``/get_server_info``), ``/model_info`` (older:
``/get_model_info``) and ``/metrics`` (Prometheus text, with ``--enable-metrics``), parsed with
prometheus-client. Free memory comes from ``MemAvailable`` in ``/proc/meminfo``: on the GB10's
unified memory ``nvidia-smi`` reports ``[N/A]``. An unreachable server is reported, never raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from sovereign_mcp.gpu.host import mem_available_gb

__all__ = ["METRICS", "ProbeResult", "mem_available_gb", "parse_metrics", "probe_sglang"]

METRICS = {
    "sglang:token_usage": "kv_cache_usage",
    "sglang:num_running_reqs": "running_requests",
    "sglang:num_queue_reqs": "queued_requests",
    "sglang:gen_throughput": "gen_throughput_tok_s",
}


class ProbeResult(BaseModel):
    """What the probe saw. ``ready`` is ``None`` when ``/health`` could not be read."""

    url: str
    reachable: bool
    ready: bool | None = None
    health_status: int | None = None
    server_args: dict[str, Any] = Field(default_factory=dict)
    model_info: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict, description="kv_cache_usage (0-1), running_requests, "
                                      "queued_requests, gen_throughput_tok_s")
    mem_available_gb: float | None = Field(None, description="MemAvailable of this host, GB (10^9 bytes)")
    deprecated_endpoints: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else f"cannot connect ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _json_with_fallback(client: httpx.Client, paths: tuple[str, str], result: ProbeResult) -> dict[str, Any]:
    for i, path in enumerate(paths):
        try:
            response = client.get(path)
        except httpx.HTTPError as exc:
            result.errors.append(f"GET {path}: {_reason(exc)}")
            return {}
        if response.status_code == 404 and i == 0:
            continue
        if response.status_code != 200:
            result.errors.append(f"GET {path}: HTTP {response.status_code}")
            return {}
        if i == 1:
            result.deprecated_endpoints.append(path)
        try:
            data = response.json()
        except ValueError:
            result.errors.append(f"GET {path}: not JSON")
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def parse_metrics(text: str) -> dict[str, float]:
    """The SGLang gauges of interest from Prometheus exposition text (summed over label sets)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = METRICS.get(sample.name)
            if key is not None:
                found[key] = found.get(key, 0.0) + float(sample.value)
    return found


def probe_sglang(url: str, timeout: float = 2.0, meminfo: Path = Path("/proc/meminfo")) -> ProbeResult:
    """Probe the SGLang server at base ``url`` (e.g. ``http://127.0.0.1:30000``)."""
    base = url.rstrip("/")
    result = ProbeResult(url=base, reachable=False, mem_available_gb=mem_available_gb(meminfo))
    with httpx.Client(base_url=base, timeout=timeout) as client:
        try:
            health = client.get("/health")
        except httpx.HTTPError as exc:
            result.errors.append(f"not reachable at {base}: {_reason(exc)}")
            return result
        result.reachable = True
        result.health_status = health.status_code
        result.ready = health.status_code == 200
        result.server_args = _json_with_fallback(client, ("/server_info", "/get_server_info"), result)
        result.model_info = _json_with_fallback(client, ("/model_info", "/get_model_info"), result)
        try:
            metrics = client.get("/metrics")
            if metrics.status_code == 200:
                result.metrics = parse_metrics(metrics.text)
            else:
                result.errors.append(f"GET /metrics: HTTP {metrics.status_code} (start SGLang with --enable-metrics)")
        except (httpx.HTTPError, ValueError) as exc:
            result.errors.append(f"GET /metrics: {exc}")
    return result
