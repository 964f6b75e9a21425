"""Tests for sovereign_mcp.gpu: one GPU service at a time, cooldown, memory guard, readiness, leases, locks.

Most tests drive small real processes (tests/fakes/fake_services.py) through the real launcher and HTTP
readiness checks on 127.0.0.1; a few use a simulated world (commands and probes in memory, fake clock)
where exact timing matters (a 60 s cooldown across a restart, a 120 s memory wait).
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import random
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from sovereign_mcp.gpu.config import GPUServiceSettings, GPUSettings
from sovereign_mcp.gpu.launcher import group_members, read_pidfile
from sovereign_mcp.gpu.manager import (
    CommandResult,
    GPUEvent,
    GPUServiceManager,
    Lease,
    MemoryGuardError,
    Readiness,
    ServiceBusyError,
    ServiceStartError,
    ServiceStopError,
    UnknownServiceError,
    find_overlaps,
    http_probe,
    read_mem_available_gb,
)
from tests.fakes.fake_services import FakeStack, Sampler, child_acquire
from tests.helpers import free_port


def write_meminfo(path: Path, available_gb: float) -> Path:
    """A /proc/meminfo look-alike whose MemAvailable is ``available_gb`` GB."""
    path.write_text(f"MemTotal:       125000000 kB\nMemFree:          1000000 kB\n"
                    f"MemAvailable:   {int(available_gb * 1e9 / 1024)} kB\nCached:          2000000 kB\n")
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[FakeStack]:
    fakes = FakeStack(tmp_path / "fakes")
    fakes.root.mkdir()
    yield fakes
    fakes.cleanup()


def fake_settings(stack: FakeStack, tmp_path: Path, specs: dict[str, dict[str, object]],
                  **gpu: object) -> GPUSettings:
    """GPUSettings over fake services ``{name: {fake options..., "service": {settings overrides}}}``."""
    services = []
    for name, spec in specs.items():
        spec = dict(spec)
        overrides = spec.pop("service", {})
        stack.add(name, free_port(), **spec)
        services.append(GPUServiceSettings(**stack.settings(name, **overrides)))  # type: ignore[arg-type]
    meminfo = tmp_path / "meminfo"
    if not meminfo.exists():
        write_meminfo(meminfo, 100.0)
    options: dict[str, object] = {"services": services, "memory_margin_gb": 1.0, "memory_wait_seconds": 0.0,
                                  "meminfo_path": meminfo, "poll_interval": 0.02, "http_timeout": 1.0,
                                  "busy_timeout_seconds": 20.0}
    options.update(gpu)
    return GPUSettings(**options)  # type: ignore[arg-type]


def names(events: list[GPUEvent], service: str | None = None) -> list[str]:
    return [e.event for e in events if service is None or e.service == service]


def first(events: list[GPUEvent], service: str, event: str, after: int = 0) -> GPUEvent:
    return next(e for e in events if e.service == service and e.event == event and e.id > after)


def lock_is_free(manager: GPUServiceManager) -> bool:
    fd = os.open(manager.lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


# -- a simulated world for exact timing -------------------------------------------------------------
class Sim:
    """Commands ``start X`` / ``stop X`` toggle X; X answers 200 while up (after ``warm[X]`` 503s)."""

    def __init__(self, fake_time: bool = True) -> None:
        self.up: set[str] = set()
        self.fail: dict[str, int] = {}
        self.warm: dict[str, int] = {}
        self.commands: list[str] = []
        self.polls: dict[str, int] = {}
        self.now = 1_700_000_000.0
        self.slept: list[float] = []
        self.fake_time = fake_time
        self.urls: dict[str, str] = {}

    def runner(self, command: str, timeout: float) -> CommandResult:
        self.commands.append(command)
        name = command.split()[-1].removesuffix(".service")
        if command in self.fail:
            return CommandResult(self.fail[command], "simulated failure")
        if " start " in f" {command} ":
            self.up.add(name)
            self.polls[name] = 0
        elif " stop " in f" {command} ":
            self.up.discard(name)
        return CommandResult(0, "")

    def probe(self, url: str, timeout: float) -> Readiness:
        name = self.urls[url]
        if name not in self.up:
            return Readiness(None, "connection refused")
        self.polls[name] = self.polls.get(name, 0) + 1
        if self.polls[name] <= self.warm.get(name, 0):
            return Readiness(503, "HTTP 503 (warming up)")
        return Readiness(200, "HTTP 200")

    def clock(self) -> float:
        return self.now if self.fake_time else time.time()

    def sleep(self, seconds: float) -> None:
        if self.fake_time:
            self.slept.append(seconds)
            self.now += seconds
        else:
            time.sleep(seconds)

    def manager(self, settings: GPUSettings, data_dir: Path) -> GPUServiceManager:
        self.urls = {s.readiness_url: s.name for s in settings.services}
        return GPUServiceManager(settings, data_dir, clock=self.clock, sleep=self.sleep, runner=self.runner,
                                 probe=self.probe)


def sim_settings(tmp_path: Path, available_gb: float = 100.0, **gpu: object) -> GPUSettings:
    services = [GPUServiceSettings(name=n, start_command=f"start {n}", stop_command=f"stop {n}",
                                   readiness_url=f"http://127.0.0.1:9/{n}", memory_gb=gb, cooldown_seconds=cd)
                for n, gb, cd in (("a", 10.0, 60.0), ("b", 20.0, 60.0))]
    options: dict[str, object] = {"services": services, "meminfo_path": write_meminfo(tmp_path / "meminfo",
                                                                                      available_gb),
                                  "poll_interval": 1.0}
    options.update(gpu)
    return GPUSettings(**options)  # type: ignore[arg-type]


# -- configuration ---------------------------------------------------------------------------------
def test_settings_defaults_and_validation(tmp_path: Path) -> None:
    gpu = GPUSettings()
    by_name = {s.name: s for s in gpu.services}
    assert by_name["sglang-mistral4"].readiness_url == "http://127.0.0.1:30000/health"
    assert [by_name[n].memory_gb for n in ("sglang-mistral4", "voxtral-tts", "comfyui-flux")] == [94.0, 111.0, 14.0]
    assert by_name["voxtral-tts"].readiness_url.endswith(":8001/v1/audio/voices")
    assert by_name["comfyui-flux"].readiness_url.endswith(":8188/system_stats")
    assert all(s.cooldown_seconds == 60 and s.ready_timeout == 300 for s in gpu.services)
    assert (gpu.memory_margin_gb, gpu.memory_wait_seconds, gpu.meminfo_path) == (4.0, 120.0, Path("/proc/meminfo"))
    assert gpu.resolved_state_path(tmp_path) == tmp_path / "gpu" / "state.sqlite3"
    assert GPUSettings(state_path=Path("x/s.db")).resolved_state_path(tmp_path) == tmp_path / "x" / "s.db"
    one = by_name["comfyui-flux"].model_dump()
    with pytest.raises(ValidationError, match="duplicate GPU service name"):
        GPUSettings(services=[one, one])
    with pytest.raises(ValidationError, match="empty command"):
        GPUServiceSettings(**{**one, "stop_command": "   "})
    with pytest.raises(ValidationError, match="http"):
        GPUServiceSettings(**{**one, "readiness_url": "127.0.0.1:8188"})
    assert read_mem_available_gb(write_meminfo(tmp_path / "m", 42.0)) == pytest.approx(42.0, abs=0.01)
    with pytest.raises(UnknownServiceError, match="unknown GPU service 'nope'"):
        GPUServiceManager(gpu, tmp_path).acquire("nope")


# -- real processes ----------------------------------------------------------------------------------
def test_readiness_waits_through_503_and_leases_are_shared(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {"warmup": 5}})
    seen: list[int | None] = []

    def probe(url: str, timeout: float) -> Readiness:
        answer = http_probe(url, timeout)
        seen.append(answer.status)
        return answer

    manager = GPUServiceManager(settings, tmp_path / "data", probe=probe)
    with manager.acquire("a", job_id="job-1") as first_lease:
        assert isinstance(first_lease, Lease) and first_lease.service == "a"
        assert seen.count(503) == 5 and seen[-1] == 200
        assert seen.index(503) < seen.index(200)
        assert len(stack.alive()) == 1
        with manager.acquire("a", job_id="job-2"):  # shared: no second start
            status = manager.status()
            assert status.active == ["a"] and status.services[0].leases == 2
            assert sorted(status.services[0].jobs) == ["job-1", "job-2"]  # type: ignore[type-var]
    assert first_lease.released
    events = manager.events()
    assert names(events) == ["memory_ok", "start_requested", "ready", "lease_granted", "lease_granted",
                             "lease_released", "lease_released"]
    assert manager.status().services[0].state == "running" and manager.status().leases == []


def test_never_two_services_under_concurrent_jobs(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {}, "b": {}, "c": {}})
    manager = GPUServiceManager(settings, tmp_path / "data")
    rng = random.Random(7)
    plans = [[rng.choice("abc") for _ in range(3)] for _ in range(5)]
    errors: list[BaseException] = []
    done: list[str] = []

    def job(index: int) -> None:
        try:
            for step, wanted in enumerate(plans[index]):
                with manager.acquire(wanted, job_id=f"job{index}-{step}") as lease:
                    alive = stack.alive()
                    assert len(alive) == 1, alive
                    assert manager.status().active == [wanted]
                    time.sleep(0.03)
                    done.append(lease.service)
        except BaseException as exc:
            errors.append(exc)

    with Sampler(stack) as sampler:
        threads = [threading.Thread(target=job, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert len(done) == 15
    events = manager.events()
    assert find_overlaps(events) == []
    assert names(events).count("lease_granted") == names(events).count("lease_released") == 15
    switches = names(events).count("start_requested")
    assert switches >= 3 and names(events).count("stopped") >= switches - 1
    # the processes themselves: recorded lifetimes never overlap, and sampling never saw two alive
    assert stack.overlapping() == []
    assert len(stack.intervals()) == switches
    assert sampler.samples > 20 and sampler.max_alive == 1 and sampler.seen


def test_cooldown_is_waited_and_survives_restart(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {"service": {"cooldown_seconds": 0.3}},
                                               "b": {"service": {"cooldown_seconds": 0.3}}})
    data = tmp_path / "data"
    manager = GPUServiceManager(settings, data)
    with manager.acquire("a"):
        pass
    with manager.acquire("b"):
        pass
    events = manager.events()
    stopped_a = first(events, "a", "stopped")
    start_b = first(events, "b", "start_requested")
    assert start_b.ts - stopped_a.ts >= 0.3
    assert first(events, "b", "cooldown_wait").id < start_b.id
    assert manager.stop("b") is True

    restarted = GPUServiceManager(settings, data)  # nothing in memory: the stop time comes from the database
    mark = restarted.events()[-1].id
    with restarted.acquire("a"):
        pass
    every = restarted.events()
    stopped_b = first(every, "b", "stopped")
    start_a = first(every, "a", "start_requested", after=mark)
    assert stopped_b.id == mark and start_a.ts - stopped_b.ts >= 0.3
    assert "cooldown_wait" in names(restarted.events(since_id=mark))
    assert stack.overlapping() == []


def test_memory_guard_refuses_when_memory_is_short(stack: FakeStack, tmp_path: Path) -> None:
    write_meminfo(tmp_path / "meminfo", 5.0)
    settings = fake_settings(stack, tmp_path, {"a": {}}, memory_wait_seconds=0.2)
    manager = GPUServiceManager(settings, tmp_path / "data")
    began = time.monotonic()
    with pytest.raises(MemoryGuardError) as info:
        manager.acquire("a")
    assert time.monotonic() - began >= 0.2
    message = str(info.value)
    assert "MemAvailable 5.0 GB" in message and "need 11.0 GB (10 GB + 1 GB margin)" in message
    assert info.value.available_gb == pytest.approx(5.0, abs=0.01) and info.value.required_gb == 11.0
    assert names(manager.events()) == ["memory_wait", "failed"]
    assert stack.intervals() == [] and manager.status().services[0].state == "stopped"
    assert lock_is_free(manager) and manager.status().waiting == 0


def test_memory_guard_starts_once_memory_comes_back(stack: FakeStack, tmp_path: Path) -> None:
    meminfo = write_meminfo(tmp_path / "meminfo", 5.0)
    settings = fake_settings(stack, tmp_path, {"a": {}}, memory_wait_seconds=10.0)
    manager = GPUServiceManager(settings, tmp_path / "data")
    timer = threading.Timer(0.4, write_meminfo, args=(meminfo, 50.0))
    began = time.monotonic()
    timer.start()
    with manager.acquire("a"):
        assert time.monotonic() - began >= 0.4
    timer.join()
    events = manager.events()
    assert names(events)[:4] == ["memory_wait", "memory_ok", "start_requested", "ready"]
    assert "MemAvailable 50.0 GB" in first(events, "a", "memory_ok").detail


def test_service_that_never_becomes_ready_is_stopped(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {"never_ready": True, "service": {"ready_timeout": 0.6}},
                                               "b": {}})
    manager = GPUServiceManager(settings, tmp_path / "data")
    with pytest.raises(ServiceStartError) as info:
        manager.acquire("a", job_id="doomed")
    assert info.value.last_http_status == 503 and "HTTP 503" in info.value.last_status
    assert "not ready within 0.6 s" in str(info.value) and "stopped again" in str(info.value)
    assert stack.alive() == [] and not stack.services["a"].pidfile.exists()
    status = manager.status()
    assert status.services[0].state == "failed" and "not ready" in status.services[0].detail
    assert status.leases == [] and status.waiting == 0 and lock_is_free(manager)
    assert names(manager.events(service="a")) == ["memory_ok", "start_requested", "failed", "stop_requested",
                                                  "stopped"]
    with manager.acquire("b"):  # the pool is usable again
        assert len(stack.alive()) == 1
    assert find_overlaps(manager.events()) == [] and stack.overlapping() == []


def test_state_survives_a_new_manager(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {}, "b": {}})
    data = tmp_path / "data"
    with GPUServiceManager(settings, data).acquire("a"):
        pass
    again = GPUServiceManager(settings, data)
    status = again.status()
    assert [s.state for s in status.services] == ["running", "stopped"] and status.active == ["a"]
    with again.acquire("a"):  # healthy: granted at once, not restarted
        pass
    assert names(again.events()).count("start_requested") == 1 and len(stack.intervals()) == 1
    with again.acquire("b"):
        pass
    assert names(again.events(service="a"))[-2:] == ["stop_requested", "stopped"]
    assert stack.overlapping() == []


def test_service_started_behind_the_managers_back_is_stopped(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {}, "b": {}})
    manager = GPUServiceManager(settings, tmp_path / "data")
    subprocess.run(shlex.split(stack.start_command("a")), check=True, capture_output=True)  # recorded stopped
    deadline = time.monotonic() + 10
    while not http_probe(stack.services["a"].url, 1.0).reachable and time.monotonic() < deadline:
        time.sleep(0.02)
    with manager.acquire("b"):
        assert len(stack.alive()) == 1
    stop = first(manager.events(), "a", "stop_requested")
    assert "though recorded stopped" in stop.detail
    assert first(manager.events(), "a", "stopped").id < first(manager.events(), "b", "start_requested").id
    assert stack.overlapping() == []


def test_file_lock_excludes_a_manager_in_another_process(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {"warmup": 25}, "b": {}})
    data = tmp_path / "data"
    manager = GPUServiceManager(settings, data)
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Event()
    child = ctx.Process(target=child_acquire, args=(settings.model_dump_json(), str(data), "a", 0.4, done))
    child.start()
    try:
        deadline = time.monotonic() + 20
        while "start_requested" not in names(manager.events()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "ready" not in names(manager.events())  # the child is in the middle of its switch
        assert not lock_is_free(manager)  # ... and holds the file lock
        with manager.acquire("b", job_id="parent", timeout=20):
            assert done.is_set()  # only after the child's lease was released
            assert len(stack.alive()) == 1
    finally:
        child.join(20)
    assert child.exitcode == 0
    events = manager.events()
    start_a, start_b = first(events, "a", "start_requested"), first(events, "b", "start_requested")
    assert start_a.pid == child.pid and start_b.pid == os.getpid()
    released_a = first(events, "a", "lease_released")
    assert released_a.pid == child.pid
    order = [first(events, "a", "ready").id, released_a.id, first(events, "a", "stop_requested").id,
             first(events, "a", "stopped").id, start_b.id]
    assert order == sorted(order)
    assert find_overlaps(events) == [] and stack.overlapping() == []


def test_lease_of_a_dead_process_is_dropped(stack: FakeStack, tmp_path: Path) -> None:
    settings = fake_settings(stack, tmp_path, {"a": {}, "b": {}})
    data = tmp_path / "data"
    manager = GPUServiceManager(settings, data)
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Event()
    child = ctx.Process(target=child_acquire, args=(settings.model_dump_json(), str(data), "a", 60.0, done))
    child.start()
    try:
        deadline = time.monotonic() + 20
        while not manager.status().leases and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [lease.pid for lease in manager.status().leases] == [child.pid]
        with pytest.raises(ServiceBusyError, match="held by 1 lease"):
            manager.acquire("b", timeout=0.2)
        child.kill()
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
    with manager.acquire("b"):
        pass
    assert f"owner process {child.pid} is gone" in first(manager.events(), "a", "lease_released").detail
    assert not done.is_set() and stack.overlapping() == []


def test_launcher_kills_the_whole_process_group(stack: FakeStack, tmp_path: Path) -> None:
    stack.add("stubborn", free_port(), ignore_term=True, child=True)
    subprocess.run(shlex.split(stack.start_command("stubborn")), check=True, capture_output=True)
    pgid = read_pidfile(stack.services["stubborn"].pidfile)
    assert pgid is not None
    deadline = time.monotonic() + 10
    while len(group_members(pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(group_members(pgid)) == 2  # the server and its worker
    began = time.monotonic()
    result = subprocess.run(shlex.split(stack.stop_command("stubborn", grace=0.3)), capture_output=True, text=True)
    assert result.returncode == 0 and "SIGKILL" in result.stdout
    assert 0.3 <= time.monotonic() - began < 5
    assert group_members(pgid) == [] and not stack.services["stubborn"].pidfile.exists()


# -- simulated world: exact timings and failure paths ---------------------------------------------
def test_cooldown_counts_from_the_persisted_stop_time(tmp_path: Path) -> None:
    sim = Sim()
    settings = sim_settings(tmp_path)
    with sim.manager(settings, tmp_path).acquire("a"):
        pass
    with sim.manager(settings, tmp_path).acquire("b"):  # a stops now; b waits the full 60 s
        pass
    assert sum(sim.slept) == pytest.approx(60.0)
    sim.slept.clear()
    assert sim.manager(settings, tmp_path).stop("b") is True
    sim.now += 10  # "the server restarted" 10 s after the stop
    with sim.manager(settings, tmp_path).acquire("a"):
        pass
    assert sum(sim.slept) == pytest.approx(50.0)
    assert sim.commands == ["start a", "stop a", "start b", "stop b", "start a"]
    assert sim.manager(settings, tmp_path).stop("a") is True
    sim.slept.clear()
    sim.now -= 3600  # wall clock set back an hour: the wait is still capped at the cooldown
    with sim.manager(settings, tmp_path).acquire("b"):
        pass
    assert sum(sim.slept) == pytest.approx(60.0)


def test_a_stop_command_that_waits_counts_towards_the_cooldown(tmp_path: Path) -> None:
    """``systemctl stop`` on the shipped units blocks for ExecStopPost=/bin/sleep 60 after the process is
    gone: the cooldown runs from the moment the readiness URL went away, so that minute is not waited twice."""
    sim = Sim()
    gone = threading.Event()
    plain_probe, plain_runner = sim.probe, sim.runner

    def probe(url: str, timeout: float) -> Readiness:
        answer = plain_probe(url, timeout)
        if sim.urls[url] == "a" and answer.status is None and sim.commands[-1:] == ["stop a"]:
            gone.set()
        return answer

    def runner(command: str, timeout: float) -> CommandResult:
        result = plain_runner(command, timeout)
        if command == "stop a":  # the process exits at once, then the unit's ExecStopPost sleeps 45 s
            assert gone.wait(10)
            sim.now += 45
        return result

    sim.probe, sim.runner = probe, runner  # type: ignore[method-assign]
    settings = sim_settings(tmp_path)
    with sim.manager(settings, tmp_path).acquire("a"):
        pass
    with sim.manager(settings, tmp_path).acquire("b"):
        pass
    assert sum(sim.slept) == pytest.approx(15.0)  # 60 s cooldown - 45 s already spent inside the stop command
    events = sim.manager(settings, tmp_path).events()
    stopped = next(e for e in events if e.event == "stopped")
    assert stopped.ts == pytest.approx(1_700_000_000.0) and "gone 0.00 s after the stop request" in stopped.detail


def test_memory_guard_with_the_operators_figures(tmp_path: Path) -> None:
    sim = Sim()
    settings = GPUSettings(meminfo_path=write_meminfo(tmp_path / "meminfo", 30.0))
    manager = sim.manager(settings, tmp_path)
    with pytest.raises(MemoryGuardError) as info:
        manager.acquire("voxtral-tts", job_id="podcast")
    assert "MemAvailable 30.0 GB, need 115.0 GB (111 GB + 4 GB margin) after waiting 120.0 s" in str(info.value)
    assert sim.commands == [] and sum(sim.slept) == pytest.approx(120.0)
    with manager.acquire("comfyui-flux", job_id="hero-image"):  # 14 + 4 GB fits
        pass
    assert sim.commands == ["systemctl start comfyui-flux.service"]


def test_readiness_timeout_and_failed_start_command(tmp_path: Path) -> None:
    sim = Sim()
    sim.warm["a"] = 10**9
    settings = sim_settings(tmp_path)
    for service in settings.services:  # the start sequence, not the breaker (tests/gpu/test_gpu_upkeep.py)
        service.start_backoff_seconds = 0.0
    manager = sim.manager(settings, tmp_path)
    with pytest.raises(ServiceStartError, match=r"not ready within 300 s \(last answer .*HTTP 503"):
        manager.acquire("a")
    assert sim.commands == ["start a", "stop a"] and sim.up == set()
    assert manager.status().services[0].state == "failed"
    sim.fail["start b"] = 3
    with pytest.raises(ServiceStartError, match="start command exited with 3: simulated failure") as info:
        manager.acquire("b")
    assert info.value.last_status == "exit 3"
    # the failed service is stopped again (idempotent) before the next one: 'failed' may still hold memory
    sim.warm.clear()
    sim.fail.clear()
    with manager.acquire("a"):
        pass
    assert sim.commands == ["start a", "stop a", "stop a", "start b", "stop b", "stop b", "start a"]
    assert [s.state for s in manager.status().services] == ["running", "stopped"]


def test_stop_failure_blocks_the_next_start(tmp_path: Path) -> None:
    sim = Sim()
    settings = sim_settings(tmp_path)
    manager = sim.manager(settings, tmp_path)
    with manager.acquire("a"):
        pass
    sim.fail["stop a"] = 1
    with pytest.raises(ServiceStopError, match="stop command exited with 1"):
        manager.acquire("b")
    assert "start b" not in sim.commands and manager.status().services[0].state == "failed"
    assert lock_is_free(manager)
    sim.fail.clear()
    with manager.acquire("b"):
        pass
    assert sim.commands[-2:] == ["stop a", "start b"]


def test_unhealthy_running_service_is_restarted(tmp_path: Path) -> None:
    sim = Sim()
    settings = sim_settings(tmp_path)
    manager = sim.manager(settings, tmp_path)
    with manager.acquire("a"):
        pass
    sim.up.discard("a")  # crashed while recorded running
    with manager.acquire("a"):
        pass
    assert sim.commands == ["start a", "stop a", "start a"]
    assert "recorded running but connection refused" in first(manager.events(), "a", "stop_requested").detail


def test_waiting_job_is_served_first_and_busy_timeout(tmp_path: Path) -> None:
    sim = Sim(fake_time=False)
    settings = sim_settings(tmp_path, poll_interval=0.01)
    settings.services[0].cooldown_seconds = settings.services[1].cooldown_seconds = 0
    manager = sim.manager(settings, tmp_path)
    held = manager.acquire("a", job_id="article")
    got: list[Lease] = []
    waiter = threading.Thread(target=lambda: got.append(manager.acquire("b", job_id="podcast", timeout=10)))
    waiter.start()
    deadline = time.monotonic() + 5
    while manager.status().waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    # a's service is running, but the podcast job asked first: a newcomer for a must queue behind it
    with pytest.raises(ServiceBusyError, match="queued behind earlier jobs for b"):
        manager.acquire("a", job_id="late-article", timeout=0.1)
    assert not got
    held.release()
    waiter.join(10)
    assert got and got[0].service == "b"
    got[0].release()
    assert find_overlaps(manager.events()) == []


def test_find_overlaps_reports_a_violation() -> None:
    def ev(i: int, service: str, event: str) -> GPUEvent:
        return GPUEvent(id=i, ts=float(i), service=service, event=event, pid=1)

    good = [ev(1, "a", "start_requested"), ev(2, "a", "ready"), ev(3, "a", "stopped"), ev(4, "b", "start_requested")]
    assert find_overlaps(good) == []
    bad = [ev(1, "a", "start_requested"), ev(2, "b", "start_requested")]
    assert find_overlaps(bad) == ["event 2: b start requested while ['a'] up"]
