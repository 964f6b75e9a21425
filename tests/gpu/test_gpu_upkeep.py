"""GPU manager upkeep (issue 16): the per-service start breaker shared across managers on one data dir, the
idle stop, the readiness probe's own timeouts, and ``sovereign-mcp gpu events`` with its overlap check.

Real stand-ins (tests/fakes/fake_services.py) are started and stopped through the launcher's start/stop
commands; the manager's wall clock is the real one shifted by an offset the test moves forward, so
backoff windows and idle times pass without waiting for them.
"""

from __future__ import annotations

import json
import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sovereign_mcp import cli
from sovereign_mcp.gpu import GPUSettings, default_services
from sovereign_mcp.gpu.errors import ServiceStartError, ServiceUnavailableError
from sovereign_mcp.gpu.manager import GPUServiceManager
from sovereign_mcp.gpu.readiness import http_probe
from sovereign_mcp.gpu.records import find_overlaps
from sovereign_mcp.gpu.state import backoff_seconds
from tests.fakes.fake_services import FakeStack
from tests.gpu.test_gpu_manager import Sim, fake_settings, names, sim_settings


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[FakeStack]:
    fakes = FakeStack(tmp_path / "fakes")
    fakes.root.mkdir()
    yield fakes
    fakes.cleanup()


class ShiftedClock:
    """``time.time()`` plus ``offset`` seconds (moved forward by the test)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


def process_starts(stack: FakeStack, name: str) -> int:
    """How many fake processes called ``name`` were started (from the stand-ins' own record file)."""
    return sum(1 for span in stack.intervals() if span[2] == name)


# -- start breaker ----------------------------------------------------------------------------------
def test_never_ready_service_is_started_once_per_breaker_window_across_managers(stack: FakeStack,
                                                                               tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"llm": {"never_ready": True, "service": {
        "ready_timeout": 0.5, "start_backoff_seconds": 30.0, "start_backoff_max_seconds": 100.0}}})
    clock = ShiftedClock()
    first = GPUServiceManager(settings, tmp_path / "data", clock=clock)
    second = GPUServiceManager(settings, tmp_path / "data", clock=clock)  # another worker on the same data dir
    outcomes: dict[str, BaseException] = {}

    def job(manager: GPUServiceManager, key: str) -> None:
        try:
            manager.acquire("llm", job_id=key).release()
        except BaseException as exc:  # recorded for the assertions below
            outcomes[key] = exc

    threads = [threading.Thread(target=job, args=(m, k)) for m, k in ((first, "one"), (second, "two"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(type(e).__name__ for e in outcomes.values()) == ["ServiceStartError", "ServiceUnavailableError"]
    refused = next(e for e in outcomes.values() if isinstance(e, ServiceUnavailableError))
    assert "not ready within 0.5 s" in refused.reason and refused.service == "llm"
    assert process_starts(stack, "llm") == 1 and names(first.events()).count("start_requested") == 1

    retry_at = second.start_blocked("llm")
    assert retry_at is not None and retry_at == first.start_blocked("llm") == refused.retry_at
    assert 29.0 < retry_at - clock() <= 30.0
    with pytest.raises(ServiceUnavailableError, match=r"llm is not started again for \d+ s .*1 failed start"):
        second.acquire("llm", job_id="three")
    assert process_starts(stack, "llm") == 1 and stack.alive() == []

    clock.offset += 31.0  # the window is over: one more start is allowed, and fails again
    assert second.start_blocked("llm") is None
    with pytest.raises(ServiceStartError, match=r"60 s backoff after 2 failed start\(s\)"):
        second.acquire("llm", job_id="four")
    assert process_starts(stack, "llm") == 2
    blocked = first.start_blocked("llm")
    assert blocked is not None and 59.0 < blocked - clock() <= 60.0
    failed = [e for e in first.events(service="llm") if e.event == "failed"]
    assert "no new start before" in failed[-1].detail
    assert find_overlaps(first.events()) == [] and stack.overlapping() == []


def test_breaker_backoff_doubles_caps_and_closes_on_ready(tmp_path: Path) -> None:
    sim = Sim()
    sim.warm["a"] = 10**9  # never ready
    settings = sim_settings(tmp_path)
    settings.services[0].start_backoff_seconds = 30.0
    settings.services[0].start_backoff_max_seconds = 100.0
    config = settings.services[0]
    assert [backoff_seconds(config, n) for n in (1, 2, 3, 4, 500)] == [30.0, 60.0, 100.0, 100.0, 100.0]
    manager = sim.manager(settings, tmp_path)
    for failures in (1, 2, 3):
        with pytest.raises(ServiceStartError):
            manager.acquire("a")
        retry_at = manager.start_blocked("a")
        assert retry_at is not None and retry_at - sim.now == pytest.approx(min(100.0, 30.0 * 2 ** (failures - 1)))
        with pytest.raises(ServiceUnavailableError):
            manager.acquire("a")
        sim.now = retry_at
    assert sim.commands.count("start a") == 3
    sim.warm.clear()
    with manager.acquire("a"):
        assert manager.start_blocked("a") is None
    ready = [e for e in manager.events(service="a") if e.event == "ready"]
    assert "start breaker closed after 3 failed start(s)" in ready[-1].detail
    sim.warm["a"] = 10**9
    sim.up.discard("a")  # crashed: the next start fails, and the backoff starts from 30 s again
    with pytest.raises(ServiceStartError, match=r"30 s backoff after 1 failed start"):
        manager.acquire("a")
    assert manager.start_blocked("b") is None


def test_breaker_off_with_zero_backoff(tmp_path: Path) -> None:
    sim = Sim()
    sim.warm["a"] = 10**9
    settings = sim_settings(tmp_path)
    settings.services[0].start_backoff_seconds = 0.0
    manager = sim.manager(settings, tmp_path)
    for _ in range(2):
        with pytest.raises(ServiceStartError):
            manager.acquire("a")
        assert manager.start_blocked("a") is None
    assert sim.commands.count("start a") == 2


# -- idle stop --------------------------------------------------------------------------------------
def test_idle_service_is_stopped_after_its_idle_seconds(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"tts": {"service": {"idle_stop_seconds": 300.0}}, "llm": {}})
    clock = ShiftedClock()
    manager = GPUServiceManager(settings, tmp_path / "data", clock=clock)
    with manager.acquire("tts", job_id="turns"):
        assert manager.stop_idle(now=clock() + 3600) == []  # leased: never idle
    assert manager.stop_idle(now=clock() + 299) == []
    assert len(stack.alive()) == 1 and manager.status().services[0].state == "running"
    clock.offset += 301
    assert manager.stop_idle() == ["tts"]
    assert stack.alive() == [] and manager.status().services[0].state == "stopped"
    stop = [e for e in manager.events(service="tts") if e.event == "stop_requested"][-1]
    assert stop.detail.startswith("idle for 30") and "idle_stop_seconds = 300" in stop.detail
    assert names(manager.events(service="tts"))[-2:] == ["stop_requested", "stopped"]

    with manager.acquire("llm"):  # no idle_stop_seconds: kept however long it idles
        pass
    assert manager.stop_idle(now=clock() + 10**6) == [] and len(stack.alive()) == 1
    assert find_overlaps(manager.events()) == [] and stack.overlapping() == []


def test_idle_stop_defaults_and_config_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    by_kind = {s.kind: s for s in default_services()}
    assert by_kind["sglang"].idle_stop_seconds is None
    assert by_kind["voxtral"].idle_stop_seconds == by_kind["comfyui"].idle_stop_seconds == 300.0
    assert (by_kind["sglang"].start_backoff_seconds, by_kind["sglang"].start_backoff_max_seconds) == (600.0, 3600.0)
    config = tmp_path / "c.toml"
    config.write_text("")
    assert cli.main(["config", "show", "--config", str(config), "--data-dir", str(tmp_path / "data")]) == 0
    shown = {s["name"]: s for s in tomllib.loads(capsys.readouterr().out)["gpu"]["services"]}
    assert shown["voxtral-tts"]["idle_stop_seconds"] == shown["comfyui-flux"]["idle_stop_seconds"] == 300.0
    assert "idle_stop_seconds" not in shown["sglang-mistral4"]  # unset = never (TOML has no null)


# -- readiness probe timeouts -----------------------------------------------------------------------
def test_probe_of_a_service_that_accepts_but_never_answers(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        answer = http_probe(f"http://127.0.0.1:{listener.getsockname()[1]}/health", 0.3, connect_timeout=0.1)
    finally:
        listener.close()
    assert not answer.reachable and answer.detail == "no answer within 0.3 s"
    assert GPUSettings().probe_connect_timeout < GPUSettings().http_timeout


# -- sovereign-mcp gpu events -----------------------------------------------------------------------
def events_cli(tmp_path: Path, *extra: str) -> int:
    config = tmp_path / "empty.toml"
    config.write_text("")
    return cli.main(["gpu", "events", "--config", str(config), "--data-dir", str(tmp_path / "data"), *extra])


def test_gpu_events_reports_a_forced_overlap(stack: FakeStack, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    both = fake_settings(stack, tmp_path, {"a": {}, "b": {}})
    only_a = both.model_copy(update={"services": [both.services[0]]})
    only_b = both.model_copy(update={"services": [both.services[1]]})
    with GPUServiceManager(only_a, tmp_path / "data").acquire("a"):
        pass
    assert events_cli(tmp_path) == 0
    captured = capsys.readouterr()
    assert " a " in captured.out and "start_requested" in captured.out and "overlap" not in captured.err

    # a second manager configured without "a" does not know to stop it: two services up at once
    with GPUServiceManager(only_b, tmp_path / "data").acquire("b"):
        pass
    assert len(stack.alive()) == 2
    assert events_cli(tmp_path) == 1
    err = capsys.readouterr().err
    assert "overlap: event" in err and "b start requested while ['a'] up" in err

    assert events_cli(tmp_path, "--json", "--service", "b") == 1
    data = json.loads(capsys.readouterr().out)
    assert {e["service"] for e in data["events"]} == {"b"} and len(data["overlaps"]) == 1
    assert "start_requested" in [e["event"] for e in data["events"]]

    assert events_cli(tmp_path, "--since", "2099-01-01T00:00:00+00:00") == 0  # window after the overlap
    assert "no GPU events in that window" in capsys.readouterr().err
    assert events_cli(tmp_path, "--since", "3600", "--json") == 1
    assert len(json.loads(capsys.readouterr().out)["overlaps"]) == 1
    assert events_cli(tmp_path, "--since", "yesterday") == 2
    assert "--since 'yesterday': give an ISO 8601 time" in capsys.readouterr().err
