"""One ``sovereign-mcp serve`` per port and data dir: bind the port first, then claim the pid file.

A second ``serve`` on a busy port must not touch the running server's files (its pid file, read by
``index --signal``, and the prometheus multiprocess directory a ``--workers`` start empties), so
``cmd_serve`` calls :func:`refuse_if_running` and :func:`bind_listener` before it writes anything, and
hands the bound socket to uvicorn (``uvicorn.Server.run(sockets=...)``, ``Multiprocess(config, sockets=...)``,
as ``uvicorn.run`` does with its own ``Config.bind_socket``). :class:`PidFile` removes the file on every exit
of the process that wrote it, and only when it still holds that process's pid.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from sovereign_mcp.config import ConfigError


class AlreadyRunning(ConfigError):
    """The port is taken or the pid file names a live server; the CLI exits with 2 and this message."""


def running_pid(path: Path) -> int | None:
    """The pid in ``path`` when it names a live process that is a sovereign-mcp server, else ``None`` (no file,
    garbage, a dead process, or on Linux a reused pid whose ``/proc/<pid>/cmdline`` is some other program)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no procfs (macOS) or gone: trust kill(0)
        return pid
    return pid if b"sovereign" in cmdline.replace(b"-", b"_") else None


def refuse_if_running(path: Path) -> None:
    """Raise :class:`AlreadyRunning` when the pid file ``path`` names a live server (see :func:`running_pid`)."""
    pid = running_pid(path)
    if pid is not None:
        raise AlreadyRunning(f"already running (pid {pid}, from {path}): stop it first (kill -TERM {pid}), or "
                             f"give this server another --data-dir")


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` (IPv6 when ``host`` has a colon), ``SO_REUSEADDR`` and inheritable
    like uvicorn's ``Config.bind_socket``; uvicorn listens on it, and every connection it accepts has Nagle off.

    Raises:
        AlreadyRunning: the port is in use (EADDRINUSE).
        ConfigError: any other bind error (address not available here, permission denied below 1024).
    """
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets whose proto is
    # IPPROTO_TCP (CPython Lib/asyncio/base_events.py ``_set_nodelay``), and the proto travels with the socket
    # to ``--workers`` children (Lib/multiprocessing/reduction.py ``_reduce_socket``). With proto 0 every
    # response body waited for the client's delayed ACK, ~40 ms.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AlreadyRunning(f"port {port} on {host} is in use (another server is listening there): stop it "
                                 f"or choose another --port") from None
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror or exc}: check server.host/--host and "
                          f"server.port/--port") from None
    sock.set_inheritable(True)
    return sock


class PidFile:
    """Context manager: writes this process's pid to ``path`` on entry and removes the file on exit, also when
    leaving by an exception, ``SystemExit`` or SIGTERM (turned into ``SystemExit(0)`` while inside; uvicorn
    re-raises the SIGTERM it handled after a graceful shutdown, which would otherwise kill the process before
    the file is removed). Another process's file (a pid that is not ours) is never removed.

    Attributes:
        terminated: a SIGTERM ended the block; the caller should then leave with ``os._exit`` once its own
            cleanup is done, as SIGTERM's default action would, instead of waiting for threads still running
            (a tool call that timed out keeps its worker thread).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self.terminated = False
        self._previous: Any = None

    def __enter__(self) -> PidFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(str(self.pid))
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        raise SystemExit(0)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
        self.release()

    def release(self) -> None:
        """Remove the file when this process wrote it and it still holds its pid."""
        if os.getpid() != self.pid:  # a forked child leaving the block
            return
        try:
            if int(self.path.read_text().strip()) == self.pid:
                self.path.unlink()
        except (OSError, ValueError):
            pass

