"""OpenAI-compatible chat client with an ordered fallback chain, per-provider circuit breakers and deadlines.

Behaviour (sovereign-forge epic, "Model Fallback Chain": fall back on timeout, 429, 503 and DNS failure with
no human intervention, the local model as last resort; Mistral's chat template for role merging):

* Messages go through :func:`~sovereign_mcp.inference.messages.merge_consecutive_roles` first (SGLang
  serving Mistral answers HTTP 400 to non-alternating roles).
* Providers are tried in configured order. Connection refused, DNS failure, timeout, a dropped connection,
  HTTP 429, any 5xx or a malformed answer moves on to the next provider; any other 4xx raises
  :class:`InferenceRequestError` at once (see :mod:`sovereign_mcp.inference.protocol`).
* Each provider has a :class:`CircuitBreaker`: after ``failure_threshold`` consecutive failures it is skipped
  without any network traffic until ``cooldown_seconds`` have passed, then one probe call decides.
* Every call has a deadline (``deadline`` seconds, default ``deadline_seconds``) covering all attempts; each
  attempt's timeout is clipped to what is left. A stream checks it between chunks, so a stalled stream
  overruns it by at most the provider's ``timeout``. Deadlines use :func:`time.monotonic`; the injectable
  ``clock`` drives the breakers only.
* A stream falls back only before its first text delta; once text has been yielded, a broken stream raises
  :class:`InferenceUnavailable` naming that provider (the caller holds a partial answer).

Synchronous (httpx.Client, thread-safe); async code should call it through ``anyio.to_thread.run_sync``.
Loopback providers ignore ``HTTP(S)_PROXY`` variables (``trust_env`` off) so local traffic stays local.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from sovereign_mcp.inference.breaker import BreakerState, CircuitBreaker
from sovereign_mcp.inference.config import InferenceSettings, ProviderSettings
from sovereign_mcp.inference.errors import InferenceDeadlineExceeded, InferenceRequestError, InferenceUnavailable
from sovereign_mcp.inference.messages import merge_consecutive_roles
from sovereign_mcp.inference.protocol import (
    Completion,
    ProviderFailure,
    chat_payload,
    check_status,
    first_model_id,
    health_url,
    iter_sse_deltas,
    parse_completion,
    server_message,
    transport_failure,
)
from sovereign_mcp.inference.shared import SharedBreakers

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT = 10.0  # seconds for one readiness GET (SGLang's /health runs a one-token generation)
DEFAULT_MAX_TOKENS = 1024


class ProviderStatus(BaseModel):
    """A snapshot of one provider for diagnostics; ``retry_in_seconds`` is 0 unless the circuit is open."""

    name: str
    kind: str
    base_url: str
    local: bool
    state: BreakerState
    consecutive_failures: int
    retry_in_seconds: float
    last_error: str | None


@dataclass
class _Provider:
    settings: ProviderSettings
    http: httpx.Client
    breaker: CircuitBreaker
    model: str | None
    last_error: str | None = None
    hung: bool = False  # its last failure was a timeout: probe readiness before the next real call

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass
class _Outcome:
    ok: bool = False


class _Attempts:
    """One call's walk down the chain: deadline, skipped circuits and the errors seen, by provider."""

    def __init__(self, providers: list[_Provider], budget: float,
                 probe: Callable[[_Provider, float], str | None] = lambda provider, timeout: None,
                 probe_timeout: float = 5.0, shared: SharedBreakers | None = None) -> None:
        self.providers = providers
        self.shared = shared
        self.probe = probe
        self.probe_timeout = probe_timeout
        self.budget = budget
        self.deadline_at = time.monotonic() + budget
        self.errors: dict[str, str] = {}
        self.clipped = False

    def check_deadline(self) -> float:
        """Seconds left. Raises :class:`InferenceDeadlineExceeded` when none are."""
        left = self.deadline_at - time.monotonic()
        if left <= 0:
            raise InferenceDeadlineExceeded(self.budget, self.errors)
        return left

    def __iter__(self) -> Iterator[tuple[_Provider, httpx.Timeout]]:
        for provider in self.providers:
            left = self.check_deadline()
            held = self.shared.open_until(provider.name) if self.shared is not None else None
            if held is not None:  # another process (or this one) found it failing: skip it here too
                self.errors[provider.name] = (f"circuit open for every process, next try in "
                                              f"{max(0.0, held[0] - time.time()):.1f} s (last error: {held[1]})")
                continue
            if not provider.breaker.allow():
                wait = provider.breaker.retry_in()
                state = f"circuit open, next probe in {wait:.1f} s" if wait else "circuit half-open, probe in flight"
                self.errors[provider.name] = f"{state} (last error: {provider.last_error})"
                continue
            if provider.hung:  # it timed out last time: a short readiness GET first, not a whole timeout
                reason = self.probe(provider, min(self.probe_timeout, left))
                if reason is not None:
                    provider.breaker.record_failure(trip=True)
                    provider.last_error = f"readiness probe: {reason}"
                    self.errors[provider.name] = provider.last_error
                    continue
            self.clipped = left < provider.settings.timeout
            yield provider, httpx.Timeout(min(provider.settings.timeout, left),
                                          connect=min(provider.settings.connect_timeout, left))

    def failed(self, provider: _Provider, failure: ProviderFailure) -> None:
        """Count the failure; raise :class:`InferenceDeadlineExceeded` if it used up the deadline."""
        provider.breaker.record_failure(trip=failure.timed_out)
        provider.hung = failure.timed_out
        provider.last_error = failure.reason
        if self.shared is not None and provider.breaker.state is BreakerState.OPEN:
            self.shared.trip(provider.name, provider.breaker.retry_in(), failure.reason)
        self.errors[provider.name] = failure.reason
        logger.warning("inference provider %s failed (%s); trying the next one", provider.name, failure.reason)
        if (failure.timed_out and self.clipped) or time.monotonic() >= self.deadline_at:
            raise InferenceDeadlineExceeded(self.budget, self.errors)

    @contextlib.contextmanager
    def guard(self, provider: _Provider) -> Iterator[_Outcome]:
        """Run one attempt: fallback-worthy failures are recorded and swallowed (``ok`` stays False)."""
        outcome = _Outcome()
        try:
            yield outcome
        except httpx.TransportError as exc:
            self.failed(provider, transport_failure(exc))
        except ProviderFailure as exc:
            self.failed(provider, exc)
        except InferenceRequestError:
            provider.breaker.record_success()  # the server is up; the request was wrong
            raise
        except BaseException:
            provider.breaker.release()
            raise
        else:
            provider.breaker.record_success()
            provider.last_error = None
            provider.hung = False
            if self.shared is not None and self.shared.open_until(provider.name) is not None:
                self.shared.clear(provider.name)
            outcome.ok = True

    def exhausted(self) -> InferenceUnavailable:
        return InferenceUnavailable(self.errors)


class ChatClient:
    """Chat completions over the configured chain of OpenAI-compatible providers.

    Args:
        settings: the chain; default :class:`InferenceSettings` (SGLang :30000 then llama.cpp :8080).
        clock: monotonic seconds for the circuit breakers (inject a fake in tests).
        transport: an httpx transport shared by all providers (tests use it to count or fake connections).
        shared: open circuits shared with the other processes on the data dir (default: per process only).

    Raises:
        SovereigntyError: ``sovereign_mode`` is on and a provider is not local.
    """

    def __init__(self, settings: InferenceSettings | None = None, *, clock: Callable[[], float] = time.monotonic,
                 transport: httpx.BaseTransport | None = None, shared: SharedBreakers | None = None) -> None:
        self.settings = settings if settings is not None else InferenceSettings()
        self.shared = shared
        self.settings.refuse_non_local()
        self._providers = [
            _Provider(p, self._http_client(p, transport),
                      CircuitBreaker(self.settings.failure_threshold, self.settings.cooldown_seconds, clock), p.model)
            for p in self.settings.providers
        ]

    @staticmethod
    def _http_client(provider: ProviderSettings, transport: httpx.BaseTransport | None) -> httpx.Client:
        headers = {"User-Agent": "sovereign-mcp"}
        if provider.api_key is not None:
            headers["Authorization"] = f"Bearer {provider.api_key.get_secret_value()}"
        return httpx.Client(base_url=provider.base_url, headers=headers, transport=transport,
                            timeout=httpx.Timeout(provider.timeout, connect=provider.connect_timeout),
                            trust_env=not provider.is_local)

    def _attempts(self, deadline: float | None) -> _Attempts:
        budget = self.settings.deadline_seconds if deadline is None else deadline
        if budget <= 0:
            raise ValueError("deadline must be > 0 seconds")
        return _Attempts(self._providers, budget, self._health, self.settings.probe_timeout_seconds, self.shared)

    def _model(self, provider: _Provider, timeout: httpx.Timeout) -> str:
        """The configured model, else the first id of ``GET {base_url}/models`` (cached)."""
        if provider.model is None:
            response = provider.http.get("/models", timeout=timeout)
            try:
                check_status(provider.name, response)
            except InferenceRequestError as exc:
                raise InferenceRequestError(provider.name, exc.status_code, f"GET /models: {exc.message} "
                                            "(set this provider's model explicitly)") from None
            try:
                provider.model = first_model_id(response.json())
            except ValueError:
                raise ProviderFailure("GET /models answered non-JSON") from None
        return provider.model

    def complete(self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int | None = DEFAULT_MAX_TOKENS,
                 temperature: float | None = None, deadline: float | None = None,
                 params: Mapping[str, Any] | None = None) -> Completion:
        """One chat completion from the first provider able to answer.

        Args:
            messages: OpenAI chat messages; consecutive same-role messages are merged before sending.
            max_tokens: answer length cap, tokens (``None``: the server's default).
            temperature: sampling temperature (``None``: the server's default).
            deadline: seconds for the whole call over all providers (default ``deadline_seconds``).
            params: extra request fields (``stop``, ``top_p``, ``response_format``, ...).

        Raises:
            InferenceRequestError: a provider rejected the request (4xx other than 429); no fallback.
            InferenceDeadlineExceeded: the deadline ran out.
            InferenceUnavailable: every provider failed or has its circuit open (``errors`` names each).
            ValueError: a malformed message or a non-positive deadline.
        """
        merged = merge_consecutive_roles(messages)
        attempts = self._attempts(deadline)
        for provider, timeout in attempts:
            with attempts.guard(provider) as outcome:
                model = self._model(provider, timeout)
                body = chat_payload(model, merged, max_tokens=max_tokens, temperature=temperature, stream=False,
                                    params=dict(params or {}))
                response = provider.http.post("/chat/completions", json=body, timeout=timeout)
                check_status(provider.name, response)
                try:
                    data = response.json()
                except ValueError:
                    raise ProviderFailure("answer is not JSON") from None
                completion = parse_completion(data, provider.name, model)
            if outcome.ok:
                return completion
        raise attempts.exhausted()

    def stream(self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int | None = DEFAULT_MAX_TOKENS,
               temperature: float | None = None, deadline: float | None = None,
               params: Mapping[str, Any] | None = None) -> Iterator[str]:
        """Like :meth:`complete` but yields the answer's text deltas as they arrive (SSE, ``"stream": true``).

        Messages are checked now; the network is touched on the first ``next()``, from which the deadline
        counts. Raises the same errors as :meth:`complete`, from the iterator; additionally
        :class:`InferenceUnavailable` if a stream breaks after text was yielded (no fallback then).
        """
        merged = merge_consecutive_roles(messages)
        return self._stream(merged, max_tokens, temperature, deadline, dict(params or {}))

    def _stream(self, merged: list[dict[str, Any]], max_tokens: int | None, temperature: float | None,
                deadline: float | None, params: dict[str, Any]) -> Iterator[str]:
        attempts = self._attempts(deadline)
        for provider, timeout in attempts:
            with attempts.guard(provider) as outcome:
                model = self._model(provider, timeout)
                body = chat_payload(model, merged, max_tokens=max_tokens, temperature=temperature, stream=True,
                                    params=params)
                with provider.http.stream("POST", "/chat/completions", json=body, timeout=timeout) as response:
                    if not 200 <= response.status_code < 300:
                        response.read()
                    check_status(provider.name, response)
                    yield from self._deltas(provider, response, attempts)
            if outcome.ok:
                return
        raise attempts.exhausted()

    @staticmethod
    def _deltas(provider: _Provider, response: httpx.Response, attempts: _Attempts) -> Iterator[str]:
        sent = 0
        try:
            for delta in iter_sse_deltas(response.iter_lines()):
                attempts.check_deadline()
                if sent == 0:
                    provider.breaker.record_success()
                sent += 1
                yield delta
        except (httpx.TransportError, ProviderFailure) as exc:
            if sent == 0:
                raise
            failure = transport_failure(exc) if isinstance(exc, httpx.TransportError) else exc
            provider.breaker.record_failure()
            provider.last_error = f"stream broke after {sent} deltas: {failure.reason}"
            raise InferenceUnavailable({provider.name: provider.last_error}, "inference stream interrupted") from exc

    def _health(self, provider: _Provider, timeout: float) -> str | None:
        """``None`` when the provider reports ready, else why not (``HTTP 503: Loading model``, ...)."""
        try:
            response = provider.http.get(health_url(provider.settings), timeout=httpx.Timeout(
                timeout, connect=min(provider.settings.connect_timeout, timeout)))
        except httpx.TransportError as exc:
            return transport_failure(exc).reason
        if response.status_code == 200:
            return None
        return f"HTTP {response.status_code}: {server_message(response)}"

    def health(self, timeout: float = HEALTH_TIMEOUT, skip_kinds: Sequence[str] = ()) -> dict[str, str | None]:
        """Readiness of every provider (but those of ``skip_kinds``), in chain order: name -> ``None`` (ready)
        or the reason it is not. ``timeout``: seconds for each readiness GET (connect included)."""
        return {p.name: self._health(p, timeout) for p in self._providers if p.settings.kind not in skip_kinds}

    def wait_until_available(self, poll_seconds: float = 5.0, timeout: float | None = None) -> str:
        """Block until some provider reports ready, for queued jobs that should wait rather than fail.

        Polls each provider's readiness endpoint in chain order every ``poll_seconds`` (SGLang and llama.cpp
        ``/health``, Ollama ``/api/version``, else ``/models``). The first ready provider's circuit is closed
        so the next call reaches it at once.

        Args:
            poll_seconds: pause between rounds, seconds (> 0).
            timeout: give up after this many seconds; ``None`` waits forever.

        Returns:
            The name of the first provider found ready.

        Raises:
            InferenceUnavailable: ``timeout`` passed; ``errors`` holds each provider's last readiness error.
        """
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be > 0")
        started = time.monotonic()

        def left() -> float | None:
            return None if timeout is None else timeout - (time.monotonic() - started)

        while True:
            reasons: dict[str, str] = {}
            for provider in self._providers:
                remaining = left()
                reason = self._health(provider, HEALTH_TIMEOUT if remaining is None
                                      else max(0.05, min(HEALTH_TIMEOUT, remaining)))
                if reason is None:
                    provider.breaker.record_success()
                    provider.last_error = None
                    provider.hung = False
                    if self.shared is not None:
                        self.shared.clear(provider.name)
                    logger.info("inference provider %s is ready", provider.name)
                    return provider.name
                reasons[provider.name] = reason
            remaining = left()
            if remaining is not None and remaining <= 0:
                raise InferenceUnavailable(reasons, f"no inference provider became ready within {timeout:g} s")
            time.sleep(poll_seconds if remaining is None else min(poll_seconds, remaining))

    def status(self) -> list[ProviderStatus]:
        """Breaker state and last error of every provider, in chain order."""
        return [
            ProviderStatus(name=p.name, kind=p.settings.kind, base_url=p.settings.base_url, local=p.settings.is_local,
                           state=p.breaker.state, consecutive_failures=p.breaker.consecutive_failures,
                           retry_in_seconds=round(p.breaker.retry_in(), 3), last_error=p.last_error)
            for p in self._providers
        ]

    def close(self) -> None:
        """Close the providers' connection pools (and the shared breaker file)."""
        for provider in self._providers:
            provider.http.close()
        if self.shared is not None:
            self.shared.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
