"""Prometheus metrics of one server (names follow https://prometheus.io/docs/practices/naming/: prefix
``sovereign_mcp_``, base units in the name, ``_total`` on counters).

Two kinds:

* **Events** counted by this process (tool calls, latencies, errors, HTTP requests, invoices issued): module
  level :mod:`prometheus_client` counters and histograms. With ``PROMETHEUS_MULTIPROC_DIR`` set in the
  environment *before* :mod:`prometheus_client` is first imported (``serve --workers N`` sets it), every worker
  writes them to files in that directory and a scrape of any worker sums all of them (prometheus-client
  "multiprocess mode"); the directory must be emptied before the workers start.
* **State** read at scrape time by :class:`StateCollector` from the shared stores, so it is the same in every
  process and survives restarts: invoices paid and sats earned (L402 token store), tokens by state, jobs by
  state (pipeline job store), GPU service state (GPU manager records; nothing is probed or started), index
  size, build info.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from sovereign_mcp import __version__
from sovereign_mcp.gpu.records import SERVICE_STATES
from sovereign_mcp.pipeline.models import JOB_STATES

log = logging.getLogger(__name__)
disable_created_metrics()  # no *_created series: Prometheus does not use them and they double the output

OUTCOMES = ("ok", "tool_error", "payment_required", "rate_limited", "internal_error", "timeout")
"""Values of the ``outcome`` label of ``sovereign_mcp_tool_calls_total``."""
ERROR_KINDS = ("tool_error", "internal_error", "timeout", "rate_limited", "unauthorized", "too_large",
               "bad_request", "server_error")
"""Values of the ``kind`` label of ``sovereign_mcp_errors_total`` (tool outcomes other than ok/payment_required,
and HTTP answers: 401/403 unauthorized, 413 too_large, 429 rate_limited, other 4xx but 402/404 bad_request,
5xx server_error)."""
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
"""Values of the ``method`` label of ``sovereign_mcp_http_requests_total``; any other method a client sends
(RFC 9110 section 9 lets it name any token, case-sensitive) is counted as ``other``, so clients cannot create
series."""
GPU_STATES = SERVICE_STATES
TOKEN_STATES = ("pending", "paid", "expired", "revoked")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

TOOL_CALLS = Counter("sovereign_mcp_tool_calls", "MCP tool calls by tool and outcome.", ["tool", "outcome"])
TOOL_DURATION = Histogram("sovereign_mcp_tool_duration_seconds", "Time from receiving a tool call to its answer, "
                          "seconds.", ["tool"], buckets=LATENCY_BUCKETS)
ERRORS = Counter("sovereign_mcp_errors", "Errors by kind (see sovereign_mcp.observability.metrics.ERROR_KINDS).",
                 ["kind"])
HTTP_REQUESTS = Counter("sovereign_mcp_http_requests", "HTTP requests by route template, method and status.",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("sovereign_mcp_http_request_duration_seconds", "HTTP request duration until the "
                          "response ended, seconds.", ["route"], buckets=LATENCY_BUCKETS)
INVOICES_ISSUED = Counter("sovereign_mcp_l402_invoices_issued", "L402 invoices issued (402 challenges and "
                          "payment_required results), by tool.", ["tool"])


def error_kind_of_status(status: int) -> str | None:
    """The ``errors_total`` kind of an HTTP status, ``None`` when it is not an error (2xx/3xx, 402, 404)."""
    if status in (401, 403):
        return "unauthorized"
    if status == 413:
        return "too_large"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status >= 400 and status not in (402, 404):
        return "bad_request"
    return None


def record_tool_call(tool: str, outcome: str, seconds: float | None = None, *, count_error: bool = True) -> None:
    """Count one tool call (and its latency when known); non-ok outcomes other than payment_required also
    count as an error of that kind, unless ``count_error`` is false (a call refused with an HTTP error status,
    which :func:`record_http_request` already counted: every error is counted once)."""
    TOOL_CALLS.labels(tool, outcome).inc()
    if seconds is not None:
        TOOL_DURATION.labels(tool).observe(seconds)
    if count_error and outcome not in ("ok", "payment_required"):
        ERRORS.labels(outcome).inc()


def method_label(method: str) -> str:
    """``method`` when it is one of :data:`HTTP_METHODS`, else ``"other"``."""
    return method if method in HTTP_METHODS else "other"


def record_http_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one HTTP request (``method`` through :func:`method_label`); error statuses also count in
    ``sovereign_mcp_errors_total``."""
    HTTP_REQUESTS.labels(route, method_label(method), str(status)).inc()
    HTTP_DURATION.labels(route).observe(seconds)
    kind = error_kind_of_status(status)
    if kind is not None:
        ERRORS.labels(kind).inc()


def prepare_multiprocess_dir(default: Path) -> Path:
    """For several worker processes: the directory prometheus-client's multiprocess mode counts into
    (``PROMETHEUS_MULTIPROC_DIR`` when set, else ``default``), created, emptied of a previous run's ``*.db``
    files (stale files would add old counts) and exported in ``os.environ`` so that worker processes started
    afterwards find it before they import prometheus-client. Call it in the parent, before starting them."""
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when multiprocess mode is on, else ``None``."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(slots=True)
class StateSources:
    """Where :class:`StateCollector` reads state; each ``None`` source is left out of the scrape.

    Attributes:
        index: ``() -> (articles, passages)`` of the served index.
        l402_stats: ``() -> TokenStore.stats()`` dict (``earned`` per tool set, ``by_state``).
        jobs: ``() -> {state: count}`` from the pipeline job store.
        gpu: ``() -> {service: state}`` from the GPU manager's records.
    """

    index: Callable[[], tuple[int, int]] | None = None
    l402_stats: Callable[[], Mapping[str, Any]] | None = None
    jobs: Callable[[], Mapping[str, int]] | None = None
    gpu: Callable[[], Mapping[str, str]] | None = None


class StateCollector:
    """A prometheus-client custom collector (``collect()`` yields metric families) over :class:`StateSources`.

    A source that raises is logged and reported as ``sovereign_mcp_metrics_source_up{source} 0``; the rest of
    the scrape still answers.
    """

    def __init__(self, sources: StateSources) -> None:
        self.sources = sources

    def describe(self) -> list[Metric]:
        """Nothing up front: names are only known from a scrape (and must not clash with the registry's)."""
        return []

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("sovereign_mcp_build_info", "Version of the running server (value is 1).",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        up = GaugeMetricFamily("sovereign_mcp_metrics_source_up", "1 when the source was read for this scrape.",
                               labels=["source"])
        for name, reader in (("index", self._index), ("l402", self._l402), ("jobs", self._jobs), ("gpu", self._gpu)):
            if getattr(self.sources, "l402_stats" if name == "l402" else name) is None:
                continue
            try:
                families = list(reader())
            except Exception as exc:  # a broken store must not break the scrape
                log.warning("metrics: cannot read %s: %s", name, exc)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up

    def _index(self) -> Iterable[Metric]:
        assert self.sources.index is not None
        articles, passages = self.sources.index()
        yield GaugeMetricFamily("sovereign_mcp_index_articles", "Articles in the served index.", value=articles)
        yield GaugeMetricFamily("sovereign_mcp_index_passages", "Passages in the served index.", value=passages)

    def _l402(self) -> Iterable[Metric]:
        assert self.sources.l402_stats is not None
        stats = self.sources.l402_stats()
        paid = CounterMetricFamily("sovereign_mcp_l402_invoices_paid", "L402 invoices paid, by tool (from the "
                                   "token store: all processes, across restarts).", labels=["tool"])
        sats = CounterMetricFamily("sovereign_mcp_l402_sats_earned", "Sats earned from paid L402 tokens, by tool "
                                   "(from the token store).", labels=["tool"])
        for tool, earned in sorted(stats.get("earned", {}).items()):
            paid.add_metric([tool], int(earned.get("tokens", 0)))
            sats.add_metric([tool], int(earned.get("sats", 0)))
        tokens = GaugeMetricFamily("sovereign_mcp_l402_tokens", "L402 tokens in the store by state.",
                                   labels=["state"])
        by_state = stats.get("by_state", {})
        for state in TOKEN_STATES:
            tokens.add_metric([state], int(by_state.get(state, 0)))
        yield from (paid, sats, tokens)

    def _jobs(self) -> Iterable[Metric]:
        assert self.sources.jobs is not None
        counts = self.sources.jobs()
        jobs = GaugeMetricFamily("sovereign_mcp_pipeline_jobs", "Pipeline jobs by state.", labels=["state"])
        for state in sorted({*JOB_STATES, *counts}):
            jobs.add_metric([state], int(counts.get(state, 0)))
        yield jobs

    def _gpu(self) -> Iterable[Metric]:
        assert self.sources.gpu is not None
        states = self.sources.gpu()
        gauge = GaugeMetricFamily("sovereign_mcp_gpu_service_state", "GPU service state as recorded by the GPU "
                                  "manager: 1 for the current state, 0 for the others.", labels=["service", "state"])
        for service, current in sorted(states.items()):
            for state in sorted({*GPU_STATES, current}):
                gauge.add_metric([service, state], 1 if state == current else 0)
        yield gauge


def render(state: StateCollector | None = None, accept: str | None = None) -> tuple[bytes, str]:
    """One scrape: ``(body, content type)`` in the format ``accept`` asks for (Prometheus text 0.0.4 by
    default, OpenMetrics when requested), holding this process's (or, in multiprocess mode, every worker's)
    event metrics plus ``state``. Runs blocking store queries: call it from a worker thread."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(REGISTRY)  # the default registry: our metrics plus process_* and python_* ones
    if state is not None:
        registry.register(state)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
