"""Small real processes standing in for SGLang / Voxtral / ComfyUI in the GPU manager tests.

``python tests/fakes/fake_services.py serve --name N --port P --warmup K --record FILE`` is a tiny HTTP server on
127.0.0.1:P answering 503 to its first K requests and 200 afterwards (``--never-ready``: always 503). It
appends ``start``/``stop`` lines (name, pid, unix time) to FILE when it begins and when it gets SIGTERM,
so a test can prove from the processes themselves that no two were ever alive together.

The manager starts and stops these through the real launcher (``sovereign_mcp/gpu/launcher.py``, run by
path): ``start`` spawns them detached in their own process group and writes a pid file, ``stop`` kills
the group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import signal
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve()
LAUNCHER = HERE.parents[2] / "sovereign_mcp" / "gpu" / "launcher.py"


# -- the fake service process ---------------------------------------------------------------------
def _record(path: Path, event: str, name: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{event} {name} {os.getpid()} {time.time():.6f}\n")
        fh.flush()


def serve(args: argparse.Namespace) -> None:
    record = Path(args.record)
    _record(record, "start", args.name)

    def on_term(signum: int, frame: object) -> None:
        if args.ignore_term:
            return
        _record(record, "stop", args.name)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if args.child:  # a worker in the same process group, like SGLang's scheduler processes
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    time.sleep(args.delay)
    count = 0
    lock = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        """Minimal HTTP/1.1 (one request per connection); http.server would add ~0.1 s to every start."""

        def handle(self) -> None:
            nonlocal count
            if not self.rfile.readline(65537):
                return
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            with lock:
                count += 1
                ready = not args.never_ready and count > args.warmup
            body = json.dumps({"status": "ok" if ready else "loading", "name": args.name}).encode()
            head = (f"HTTP/1.1 {'200 OK' if ready else '503 Service Unavailable'}\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            self.wfile.write(head.encode() + body)

    class Server(socketserver.TCPServer):
        allow_reuse_address = True

    Server(("127.0.0.1", args.port), Handler).serve_forever(poll_interval=0.05)


# -- helpers for the tests ------------------------------------------------------------------------
@dataclass
class FakeService:
    """One fake service: its port, pid file and launch options."""

    name: str
    port: int
    pidfile: Path
    warmup: int = 2
    never_ready: bool = False
    delay: float = 0.0
    ignore_term: bool = False
    child: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


@dataclass
class FakeStack:
    """Fake services sharing one record file under ``root``."""

    root: Path
    services: dict[str, FakeService] = field(default_factory=dict)

    @property
    def record(self) -> Path:
        return self.root / "record.log"

    def add(self, name: str, port: int, **options: object) -> FakeService:
        service = FakeService(name=name, port=port, pidfile=self.root / f"{name}.pid", **options)  # type: ignore[arg-type]
        self.services[name] = service
        return service

    def start_command(self, name: str) -> str:
        s = self.services[name]
        serve_args = [sys.executable, str(HERE), "serve", "--name", name, "--port", str(s.port),
                      "--warmup", str(s.warmup), "--delay", str(s.delay), "--record", str(self.record)]
        serve_args += ["--never-ready"] * s.never_ready + ["--ignore-term"] * s.ignore_term + ["--child"] * s.child
        argv = [sys.executable, str(LAUNCHER), "start", "--pidfile", str(s.pidfile),
                "--log", str(self.root / f"{name}.log"), "--", *serve_args]
        return shlex.join(argv)

    def stop_command(self, name: str, grace: float = 5.0) -> str:
        s = self.services[name]
        return shlex.join([sys.executable, str(LAUNCHER), "stop", "--pidfile", str(s.pidfile),
                           "--grace", str(grace), "--kill-wait", "5"])

    def settings(self, name: str, **overrides: object) -> dict[str, object]:
        """Keyword arguments for ``GPUServiceSettings`` (small memory, no cooldown, short timeouts)."""
        base: dict[str, object] = {
            "name": name, "kind": "other", "start_command": self.start_command(name),
            "stop_command": self.stop_command(name), "readiness_url": self.services[name].url,
            "memory_gb": 10.0, "ready_timeout": 10.0, "cooldown_seconds": 0.0, "stop_timeout": 5.0,
            "command_timeout": 20.0,
        }
        base.update(overrides)
        return base

    def alive(self) -> list[int]:
        """Pids of live (non-zombie) fake service processes of this stack."""
        found = []
        marker = str(self.record)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2:][:1] in ("Z", "X"):
                continue
            args = [a.decode(errors="replace") for a in argv]
            if len(args) > 2 and args[1] == str(HERE) and args[2] == "serve" and marker in args:
                found.append(int(entry.name))
        return found

    def intervals(self) -> list[tuple[float, float, str, int]]:
        """``(start, stop, name, pid)`` per fake process from the record file (stop = inf while alive)."""
        starts: dict[int, tuple[float, str]] = {}
        stops: dict[int, float] = {}
        if self.record.exists():
            for line in self.record.read_text().splitlines():
                event, name, pid, ts = line.split()
                if event == "start":
                    starts[int(pid)] = (float(ts), name)
                else:
                    stops[int(pid)] = float(ts)
        return sorted((ts, stops.get(pid, float("inf")), name, pid) for pid, (ts, name) in starts.items())

    def overlapping(self) -> list[str]:
        """Pairs of fake processes whose recorded lifetimes overlap (empty = never two alive)."""
        spans = self.intervals()
        return [f"{a[2]}({a[3]}) {a[0]:.3f}-{a[1]:.3f} overlaps {b[2]}({b[3]}) {b[0]:.3f}-{b[1]:.3f}"
                for a, b in itertools.pairwise(spans) if b[0] < a[1]]

    def cleanup(self) -> None:
        """Stop every fake of this stack (SIGKILL to their process groups)."""
        for service in self.services.values():
            subprocess.run(shlex.split(self.stop_command(service.name, grace=0.5)), capture_output=True,
                           check=False, timeout=30)
        for pid in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Sampler:
    """Samples the number of live fake processes every ``interval`` seconds in a background thread."""

    def __init__(self, stack: FakeStack, interval: float = 0.01) -> None:
        self.stack = stack
        self.interval = interval
        self.max_alive = 0
        self.samples = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            alive = self.stack.alive()
            self.samples += 1
            self.seen.update(alive)
            self.max_alive = max(self.max_alive, len(alive))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- a second manager in another process (multiprocessing target) --------------------------------
def child_acquire(settings_json: str, data_dir: str, name: str, hold: float, done: object) -> None:
    """Acquire ``name`` with a fresh manager in this (child) process, hold it ``hold`` s, release."""
    from sovereign_mcp.gpu.config import GPUSettings
    from sovereign_mcp.gpu.manager import GPUServiceManager

    manager = GPUServiceManager(GPUSettings.model_validate_json(settings_json), Path(data_dir))
    with manager.acquire(name, job_id=f"child-{os.getpid()}"):
        time.sleep(hold)
    done.set()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--record", required=True)
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--child", action="store_true")
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
