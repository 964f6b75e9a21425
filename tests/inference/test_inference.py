"""Tests for sovereign_mcp.inference: fallback chain, circuit breakers, deadlines, streaming, sovereignty.

Every server here is a real HTTP server on 127.0.0.1 (tests/fakes/fake_llm.py) or a closed loopback port; the
only non-loopback host names (api.example.com, gpu.lan) never reach the network: sovereign mode refuses the
first before any request, and a test transport answers the second with the error a failed DNS lookup gives.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from sovereign_mcp.inference import (
    InferenceDeadlineExceeded,
    InferenceRequestError,
    InferenceSettings,
    InferenceUnavailable,
    ProviderSettings,
    SovereigntyError,
    is_local_host,
)
from sovereign_mcp.inference.breaker import BreakerState, CircuitBreaker
from sovereign_mcp.inference.client import ChatClient
from sovereign_mcp.inference.messages import merge_consecutive_roles
from sovereign_mcp.inference.shared import SharedBreakers
from tests.fakes.fake_llm import ROLES_MESSAGE, FakeLLM, free_port

HELLO = [{"role": "user", "content": "Say hello."}]


class FakeClock:
    """Monotonic seconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingTransport(httpx.BaseTransport):
    """Real loopback HTTP, counting requests per ``host:port`` (to a closed port: one connection attempt each).

    Hosts in ``fail`` get ``httpx.ConnectError(message)`` without touching the network (simulated DNS failure).
    """

    def __init__(self, fail: dict[str, str] | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls: Counter[str] = Counter()
        self.fail = fail or {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls[f"{request.url.host}:{request.url.port}"] += 1
        if request.url.host in self.fail:
            raise httpx.ConnectError(self.fail[request.url.host], request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def make_fake() -> Iterator[Callable[..., FakeLLM]]:
    """Build (and start, unless ``mode="down"``) fakes that are all stopped after the test."""
    created: list[FakeLLM] = []

    def make(name: str, **options: Any) -> FakeLLM:
        fake = FakeLLM(name, **options)
        created.append(fake)
        if fake.mode != "down":
            fake.start()
        return fake

    yield make
    for fake in created:
        fake.stop()


def provider(name: str, base_url: str, kind: str = "llamacpp", **options: Any) -> ProviderSettings:
    options.setdefault("model", "m")
    options.setdefault("timeout", 5.0)
    return ProviderSettings(name=name, base_url=base_url, kind=kind, **options)


def chain(*providers: ProviderSettings, **options: Any) -> InferenceSettings:
    return InferenceSettings(providers=list(providers), **options)


def dead_url() -> str:
    """A loopback base URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def state_of(client: ChatClient, name: str) -> Any:
    return next(s for s in client.status() if s.name == name)


# --- settings and sovereignty ------------------------------------------------------------------


def test_default_chain_is_sglang_then_llamacpp_in_sovereign_mode() -> None:
    s = InferenceSettings()
    assert [(p.name, p.kind, p.base_url) for p in s.providers] == [
        ("sglang", "sglang", "http://127.0.0.1:30000/v1"),
        ("llamacpp", "llamacpp", "http://127.0.0.1:8080/v1"),
    ]
    assert s.sovereign_mode is True
    assert (s.failure_threshold, s.cooldown_seconds, s.deadline_seconds) == (3, 30.0, 600.0)
    assert all(p.is_local for p in s.providers)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "ollama.localhost", "[::1]", "10.0.0.7",
                                  "192.168.1.20", "172.16.4.2", "[fd00::5]", "169.254.3.3"])
def test_local_hosts_are_accepted(host: str) -> None:
    assert is_local_host(host)
    InferenceSettings(providers=[ProviderSettings(name="p", base_url=f"http://{host}:8080/v1")])


@pytest.mark.parametrize("host", ["api.example.com", "8.8.8.8", "100.64.0.1", "[2001:4860::1]", "gpu.lan"])
def test_non_local_hosts_are_not_local(host: str) -> None:
    assert not is_local_host(host)


def test_sovereign_mode_refuses_a_cloud_provider_with_a_clear_error() -> None:
    with pytest.raises(ValidationError) as info:
        InferenceSettings(providers=[
            ProviderSettings(name="sglang", base_url="http://127.0.0.1:30000/v1", kind="sglang"),
            ProviderSettings(name="cloud", base_url="https://api.example.com/v1", kind="openai"),
        ])
    message = str(info.value)
    assert "sovereign_mode refuses provider 'cloud'" in message
    assert "'api.example.com' is not loopback, private or localhost" in message


def test_chat_client_rechecks_sovereignty_of_unvalidated_settings() -> None:
    cloud = ProviderSettings(name="cloud", base_url="https://api.example.com/v1")
    with pytest.raises(SovereigntyError, match="'cloud'"):
        ChatClient(InferenceSettings.model_construct(providers=[cloud], sovereign_mode=True, failure_threshold=3,
                                                     cooldown_seconds=30.0, deadline_seconds=600.0))


def test_explicit_local_allows_a_lan_name_in_sovereign_mode() -> None:
    s = InferenceSettings(providers=[ProviderSettings(name="spark", base_url="http://gpu.lan:30000/v1", local=True)])
    assert s.providers[0].is_local


def test_cloud_provider_allowed_without_sovereign_mode_and_local_answers_first(
        make_fake: Callable[..., FakeLLM]) -> None:
    local = make_fake("llamacpp")
    transport = CountingTransport()
    settings = chain(provider("llamacpp", local.base_url),
                     ProviderSettings(name="cloud", base_url="https://api.example.com/v1", model="gpt",
                                      api_key="sk-test"),
                     sovereign_mode=False)
    with ChatClient(settings, transport=transport) as client:
        assert [s.local for s in client.status()] == [True, False]
        assert client.complete(HELLO).provider == "llamacpp"
    assert transport.calls["api.example.com:443"] == 0
    assert sum(transport.calls.values()) == 1


def test_settings_reject_duplicate_names_and_bad_urls() -> None:
    with pytest.raises(ValidationError, match="repeated: a"):
        chain(provider("a", "http://127.0.0.1:1/v1"), provider("a", "http://127.0.0.1:2/v1"))
    with pytest.raises(ValidationError, match="http:// or https://"):
        ProviderSettings(name="x", base_url="127.0.0.1:8080/v1")


# --- fallback ----------------------------------------------------------------------------------


def test_dead_sglang_falls_back_to_llamacpp(make_fake: Callable[..., FakeLLM]) -> None:
    llama = make_fake("llamacpp")
    settings = chain(provider("sglang", dead_url(), kind="sglang"), provider("llamacpp", llama.base_url))
    with ChatClient(settings) as client:
        answer = client.complete(HELLO, max_tokens=64, temperature=0.2)
        assert (answer.text, answer.provider, answer.model) == ("Hello from llamacpp.", "llamacpp", "m")
        assert answer.usage is not None and answer.usage.completion_tokens == 4
        assert state_of(client, "sglang").last_error == "connection refused"
    [request] = llama.chat_requests
    assert request.body["messages"] == HELLO
    assert (request.body["max_tokens"], request.body["temperature"], request.body["stream"]) == (64, 0.2, False)


def test_server_going_down_and_coming_back_on_the_same_port(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang")
    llama = make_fake("llamacpp")
    with ChatClient(chain(provider("sglang", sglang.base_url, "sglang"), provider("llamacpp", llama.base_url))) as c:
        assert c.complete(HELLO).provider == "sglang"
        sglang.set_mode("down")
        assert c.complete(HELLO).provider == "llamacpp"
        sglang.set_mode("healthy")
        assert c.complete(HELLO).provider == "sglang"
    assert len(sglang.chat_requests) == 2


@pytest.mark.parametrize(("mode", "status"), [("429", "HTTP 429"), ("503", "HTTP 503: Loading model")])
def test_rate_limit_and_unavailable_fall_back(make_fake: Callable[..., FakeLLM], mode: str, status: str) -> None:
    sglang = make_fake("sglang", mode=mode)
    llama = make_fake("llamacpp")
    with ChatClient(chain(provider("sglang", sglang.base_url, "sglang"), provider("llamacpp", llama.base_url))) as c:
        assert c.complete(HELLO).provider == "llamacpp"
        assert state_of(c, "sglang").last_error.startswith(status)
    assert len(sglang.chat_requests) == 1
    assert len(llama.chat_requests) == 1


def test_http_400_raises_with_the_server_message_and_does_not_fall_back(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", strict_roles=True)
    llama = make_fake("llamacpp")
    with ChatClient(chain(provider("sglang", sglang.base_url, "sglang"), provider("llamacpp", llama.base_url))) as c:
        with pytest.raises(InferenceRequestError) as info:  # an assistant turn first: merging cannot fix it
            c.complete([{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Hello?"}])
        assert (info.value.provider, info.value.status_code, info.value.message) == ("sglang", 400, ROLES_MESSAGE)
        assert "Conversation roles must alternate user/assistant/user/assistant" in str(info.value)
        assert state_of(c, "sglang").state == BreakerState.CLOSED  # the server is up: not a failure
        assert state_of(c, "sglang").consecutive_failures == 0
    assert llama.requests == []


def test_timeout_falls_back(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", mode="slow", slow_seconds=5.0)
    llama = make_fake("llamacpp")
    settings = chain(provider("sglang", sglang.base_url, "sglang", timeout=0.3), provider("llamacpp", llama.base_url))
    started = time.monotonic()
    with ChatClient(settings) as client:
        assert client.complete(HELLO).provider == "llamacpp"
        assert "timed out" in state_of(client, "sglang").last_error
    assert time.monotonic() - started < 2.0
    assert len(sglang.chat_requests) == 1


def test_a_hung_provider_costs_one_timeout_then_only_a_short_readiness_probe(
        make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", mode="slow", slow_seconds=5.0)  # accepts, never answers (health included)
    llama = make_fake("llamacpp")
    clock = FakeClock()
    settings = chain(provider("sglang", sglang.base_url, "sglang", timeout=0.5), provider("llamacpp", llama.base_url),
                     failure_threshold=3, cooldown_seconds=10, probe_timeout_seconds=0.2)
    with ChatClient(settings, clock=clock) as client:
        started = time.monotonic()
        assert client.complete(HELLO).provider == "llamacpp"  # one whole timeout (0.5 s)...
        assert state_of(client, "sglang").state == BreakerState.OPEN  # ...opens the circuit at once, not after 3
        assert client.complete(HELLO).provider == "llamacpp"  # skipped: no request at all
        clock.advance(10)
        assert client.complete(HELLO).provider == "llamacpp"  # half-open: a 0.2 s readiness GET, not a 0.5 s call
        elapsed = time.monotonic() - started
        assert [r.path for r in sglang.requests] == ["/v1/chat/completions", "/health"]
        assert state_of(client, "sglang").last_error.startswith("readiness probe: ")
        assert elapsed < 0.5 + 0.2 + 0.6
        sglang.set_mode("healthy")
        clock.advance(10)
        assert client.complete(HELLO).provider == "sglang"  # the probe answers, then the real call goes out
        assert [r.path for r in sglang.requests][-2:] == ["/health", "/v1/chat/completions"]
        assert state_of(client, "sglang").state == BreakerState.CLOSED


def test_an_open_circuit_is_shared_by_every_process_on_the_data_dir(make_fake: Callable[..., FakeLLM],
                                                                     tmp_path: Path) -> None:
    llama = make_fake("llamacpp")
    dead = dead_url()
    settings = chain(provider("sglang", dead, "sglang"), provider("llamacpp", llama.base_url), failure_threshold=2,
                     cooldown_seconds=0.5)
    file = tmp_path / "inference-breakers.sqlite3"
    transport = CountingTransport()
    dead_key = dead.removeprefix("http://").removesuffix("/v1")
    with ChatClient(settings, shared=SharedBreakers(file)) as first:
        first.complete(HELLO)
        first.complete(HELLO)  # the second failure opens it: written for everyone
    with ChatClient(settings, transport=transport, shared=SharedBreakers(file)) as second:  # another process
        assert second.complete(HELLO).provider == "llamacpp"
        assert transport.calls.get(dead_key, 0) == 0  # it never paid for the dead provider
        assert state_of(second, "sglang").state == BreakerState.CLOSED  # its own breaker saw nothing
        time.sleep(0.6)  # the shared window ends: the next call may try it again
        second.complete(HELLO)
        assert transport.calls.get(dead_key, 0) == 1
    assert SharedBreakers(file).open_until("llamacpp") is None


def test_dns_failure_falls_back() -> None:
    transport = CountingTransport(fail={"gpu.lan": "[Errno -2] Name or service not known"})
    with FakeLLM("llamacpp") as llama:
        settings = chain(provider("spark", "http://gpu.lan:30000/v1", "sglang", local=True),
                         provider("llamacpp", llama.base_url))
        with ChatClient(settings, transport=transport) as client:
            assert client.complete(HELLO).provider == "llamacpp"
            assert state_of(client, "spark").last_error.startswith("DNS failure")
    assert transport.calls["gpu.lan:30000"] == 1


def test_consecutive_same_role_messages_are_merged_for_strict_servers(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", strict_roles=True)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First part."},
        {"role": "user", "content": "Second part."},
        {"role": "assistant", "content": "Noted."},
        {"role": "assistant", "content": "Go on."},
        {"role": "user", "content": "Done?"},
    ]
    with ChatClient(chain(provider("sglang", sglang.base_url, "sglang"))) as client:
        assert client.complete(messages).provider == "sglang"
    [request] = sglang.chat_requests
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First part.\n\nSecond part."},
        {"role": "assistant", "content": "Noted.\n\nGo on."},
        {"role": "user", "content": "Done?"},
    ]
    assert len(messages) == 6  # the caller's list is untouched


def test_merge_keeps_tool_messages_and_joins_content_parts() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "tool_call_id": "1", "content": "x"},
        {"role": "tool", "tool_call_id": "2", "content": "y"},
    ]
    assert merge_consecutive_roles(messages) == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        messages[2], messages[3], messages[4],
    ]
    with pytest.raises(ValueError, match="message 0"):
        merge_consecutive_roles([{"content": "no role"}])


def test_model_is_read_from_v1_models_once_and_api_key_is_sent(make_fake: Callable[..., FakeLLM]) -> None:
    llama = make_fake("llamacpp", model="llama-3.2-3b-q5_k_m")
    settings = chain(provider("llamacpp", llama.base_url, model=None, api_key="local-secret"))
    with ChatClient(settings) as client:
        assert client.complete(HELLO).model == "llama-3.2-3b-q5_k_m"
        client.complete(HELLO)
    assert [(r.method, r.path) for r in llama.requests] == [
        ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/chat/completions")]
    assert all(r.body["model"] == "llama-3.2-3b-q5_k_m" for r in llama.chat_requests)
    assert llama.requests[1].headers["authorization"] == "Bearer local-secret"


# --- circuit breaker -----------------------------------------------------------------------------


def test_breaker_opens_skips_then_half_opens_and_closes(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", mode="503")
    llama = make_fake("llamacpp")
    clock = FakeClock()
    settings = chain(provider("sglang", sglang.base_url, "sglang"), provider("llamacpp", llama.base_url),
                     failure_threshold=3, cooldown_seconds=30)
    with ChatClient(settings, clock=clock) as client:
        for _ in range(3):
            assert client.complete(HELLO).provider == "llamacpp"
        assert len(sglang.requests) == 3
        assert state_of(client, "sglang").state == BreakerState.OPEN

        for _ in range(3):  # open: not even contacted
            assert client.complete(HELLO).provider == "llamacpp"
        clock.advance(29.9)
        assert client.complete(HELLO).provider == "llamacpp"
        assert len(sglang.requests) == 3
        assert state_of(client, "sglang").retry_in_seconds == pytest.approx(0.1)

        clock.advance(0.1)
        assert state_of(client, "sglang").state == BreakerState.HALF_OPEN
        sglang.set_mode("healthy")
        answer = client.complete(HELLO)  # the single probe succeeds
        assert answer.provider == "sglang"
        assert len(sglang.requests) == 4
        status = state_of(client, "sglang")
        assert (status.state, status.consecutive_failures, status.last_error) == (BreakerState.CLOSED, 0, None)
    assert len(llama.chat_requests) == 7


def test_failed_half_open_probe_reopens_the_circuit(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", mode="503")
    llama = make_fake("llamacpp")
    clock = FakeClock()
    settings = chain(provider("sglang", sglang.base_url, "sglang"), provider("llamacpp", llama.base_url),
                     failure_threshold=2, cooldown_seconds=10)
    with ChatClient(settings, clock=clock) as client:
        client.complete(HELLO)
        client.complete(HELLO)
        clock.advance(10)
        client.complete(HELLO)  # probe fails -> open again
        assert len(sglang.requests) == 3
        assert state_of(client, "sglang").state == BreakerState.OPEN
        client.complete(HELLO)
        assert len(sglang.requests) == 3


def test_open_circuit_makes_no_connection_attempt_to_a_dead_port(make_fake: Callable[..., FakeLLM]) -> None:
    llama = make_fake("llamacpp")
    dead = dead_url()
    transport = CountingTransport()
    settings = chain(provider("sglang", dead, "sglang"), provider("llamacpp", llama.base_url), failure_threshold=3)
    dead_key = dead.removeprefix("http://").removesuffix("/v1")
    with ChatClient(settings, clock=FakeClock(), transport=transport) as client:
        for _ in range(6):
            assert client.complete(HELLO).provider == "llamacpp"
    assert transport.calls[dead_key] == 3


def test_breaker_grants_a_single_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5, clock=clock)
    breaker.record_failure()
    assert (breaker.state, breaker.allow(), breaker.retry_in()) == (BreakerState.OPEN, False, 5.0)
    clock.advance(5)
    assert breaker.allow() is True
    assert breaker.allow() is False  # another caller while the probe runs
    breaker.release()
    assert breaker.allow() is True
    breaker.record_success()
    assert (breaker.state, breaker.allow()) == (BreakerState.CLOSED, True)


# --- blackout and deadline ---------------------------------------------------------------------


def test_total_blackout_names_every_provider() -> None:
    settings = chain(provider("sglang", dead_url(), "sglang"), provider("llamacpp", dead_url()), failure_threshold=1)
    with ChatClient(settings, clock=FakeClock()) as client:
        with pytest.raises(InferenceUnavailable) as info:
            client.complete(HELLO)
        assert info.value.errors == {"sglang": "connection refused", "llamacpp": "connection refused"}
        assert str(info.value).startswith("no inference provider available: sglang: connection refused; llamacpp:")

        with pytest.raises(InferenceUnavailable) as again:  # now both circuits are open
            client.complete(HELLO)
        assert list(again.value.errors) == ["sglang", "llamacpp"]
        assert all(e.startswith("circuit open") and "connection refused" in e for e in again.value.errors.values())


def test_deadline_exceeded_raises_and_stops_the_chain(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", mode="slow", slow_seconds=5.0)
    llama = make_fake("llamacpp")
    settings = chain(provider("sglang", sglang.base_url, "sglang", timeout=5.0), provider("llamacpp", llama.base_url))
    started = time.monotonic()
    with ChatClient(settings) as client:
        with pytest.raises(InferenceDeadlineExceeded) as info:
            client.complete(HELLO, deadline=0.4)
        with pytest.raises(ValueError, match="deadline"):
            client.complete(HELLO, deadline=0)
    assert time.monotonic() - started < 2.0
    assert info.value.deadline == 0.4
    assert "inference deadline of 0.4 s exceeded" in str(info.value) and "sglang" in info.value.errors
    assert isinstance(info.value, InferenceUnavailable)
    assert llama.requests == []


# --- streaming ---------------------------------------------------------------------------------


def test_stream_yields_deltas_in_order(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", chunks=["Hel", "lo", ", ", "wor", "ld", "!"])
    with ChatClient(chain(provider("sglang", sglang.base_url, "sglang"))) as client:
        assert list(client.stream(HELLO)) == ["Hel", "lo", ", ", "wor", "ld", "!"]
    [request] = sglang.chat_requests
    assert request.body["stream"] is True


def test_stream_falls_back_before_the_first_delta(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", mode="503")
    llama = make_fake("llamacpp", chunks=["local ", "answer"])
    settings = chain(provider("dead", dead_url()), provider("sglang", sglang.base_url, "sglang"),
                     provider("llamacpp", llama.base_url))
    with ChatClient(settings) as client:
        assert "".join(client.stream(HELLO)) == "local answer"
        assert [s.consecutive_failures for s in client.status()] == [1, 1, 0]


def test_stream_400_raises_and_early_exit_keeps_the_provider_healthy(make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", strict_roles=True)
    with ChatClient(chain(provider("sglang", sglang.base_url, "sglang"))) as client:
        with pytest.raises(InferenceRequestError, match="roles must alternate"):
            list(client.stream([{"role": "assistant", "content": "x"}]))
        deltas = client.stream(HELLO)
        assert next(deltas) == "Hello"
        deltas.close()  # the caller stops reading
        assert state_of(client, "sglang").state == BreakerState.CLOSED


class _BrokenStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "partial"}}]}\n\n'
        raise httpx.ReadError("connection reset by peer")


def test_stream_broken_after_text_raises_without_fallback() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:  # in-memory: no socket at all
        seen.append(request.url.host)
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=_BrokenStream())

    settings = chain(provider("sglang", "http://127.0.0.2:30000/v1", "sglang"),
                     provider("llamacpp", "http://127.0.0.3:8080/v1"))
    with ChatClient(settings, transport=httpx.MockTransport(handler)) as client:
        deltas = client.stream(HELLO)
        assert next(deltas) == "partial"
        with pytest.raises(InferenceUnavailable, match="stream interrupted: sglang: stream broke after 1 deltas"):
            next(deltas)
        assert state_of(client, "sglang").consecutive_failures == 1
    assert seen == ["127.0.0.2"]


# --- waiting for a provider to come back --------------------------------------------------------


def test_wait_until_available_returns_when_a_provider_comes_back(make_fake: Callable[..., FakeLLM]) -> None:
    llama = make_fake("llamacpp", mode="down")
    settings = chain(provider("sglang", dead_url(), "sglang"), provider("llamacpp", llama.base_url))
    with ChatClient(settings) as client:
        llama.start_later(0.5)
        started = time.monotonic()
        assert client.wait_until_available(poll_seconds=0.1, timeout=5) == "llamacpp"
        assert 0.4 < time.monotonic() - started < 3
        assert client.complete(HELLO).provider == "llamacpp"
    assert llama.requests[0].path == "/health"


def test_wait_until_available_waits_for_loading_model_and_closes_the_circuit(
        make_fake: Callable[..., FakeLLM]) -> None:
    sglang = make_fake("sglang", mode="down")
    settings = chain(provider("sglang", sglang.base_url, "sglang"), failure_threshold=1, cooldown_seconds=300)
    with ChatClient(settings, clock=FakeClock()) as client:
        with pytest.raises(InferenceUnavailable):
            client.complete(HELLO)
        assert state_of(client, "sglang").state == BreakerState.OPEN
        sglang.set_mode("503")  # process up, model still loading
        threading.Timer(0.4, sglang.set_mode, args=("healthy",)).start()
        assert client.wait_until_available(poll_seconds=0.1, timeout=5) == "sglang"
        health = [r for r in sglang.requests if r.path == "/health"]
        assert len(health) >= 2  # saw 503 "Loading model" first
        assert client.complete(HELLO).provider == "sglang"  # circuit closed without waiting the cooldown


@pytest.mark.parametrize(("kind", "path"), [("ollama", "/api/version"), ("openai", "/v1/models"),
                                            ("llamacpp", "/health")])
def test_readiness_endpoint_per_kind(make_fake: Callable[..., FakeLLM], kind: str, path: str) -> None:
    fake = make_fake(kind)
    with ChatClient(chain(provider(kind, fake.base_url, kind))) as client:
        assert client.health() == {kind: None}
    assert [r.path for r in fake.requests] == [path]


def test_wait_until_available_times_out_cleanly() -> None:
    settings = chain(provider("sglang", dead_url(), "sglang"), provider("llamacpp", dead_url()))
    with ChatClient(settings) as client:
        started = time.monotonic()
        with pytest.raises(InferenceUnavailable) as info:
            client.wait_until_available(poll_seconds=0.1, timeout=0.5)
        assert 0.45 < time.monotonic() - started < 1.5
    assert info.value.errors == {"sglang": "connection refused", "llamacpp": "connection refused"}
    assert "no inference provider became ready within 0.5 s" in str(info.value)
