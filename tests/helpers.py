"""Shared test helpers: locating the real corpora and running the real server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sovereign_mcp.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = REPO.parent / "shared" / "corpora"


SETTINGS_PREFIX = "SOVEREIGN_MCP_"


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without ``SOVEREIGN_MCP_*`` settings (a developer's own must not leak into a
    test's server), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTINGS_PREFIX)}
    env.update(extra)
    return env


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a server or CLI subprocess: :func:`clean_environ` with the user config and data dirs
    under ``home`` (so no user config file is read), unbuffered output, and ``extra`` on top."""
    return clean_environ(**{"XDG_CONFIG_HOME": str(home / "xdg-config"), "XDG_DATA_HOME": str(home / "xdg-data"),
                            "XDG_CACHE_HOME": str(home / "xdg-cache"), "PYTHONUNBUFFERED": "1", **extra})


def isolate(mp: pytest.MonkeyPatch, tmp: Path, chdir: bool = True) -> None:
    """For in-process settings: no ``SOVEREIGN_MCP_*`` variables, no user config file (XDG_CONFIG_HOME under
    ``tmp``), a user cache under ``tmp`` (XDG_CACHE_HOME: the gate command's plans) and, with ``chdir``, no
    ``./sovereign-mcp.toml`` (the working directory becomes ``tmp``)."""
    for name in list(os.environ):
        if name.upper().startswith(SETTINGS_PREFIX):
            mp.delenv(name)
    mp.setenv("XDG_CONFIG_HOME", str(tmp / "xdg-config"))
    mp.setenv("XDG_CACHE_HOME", str(tmp / "xdg-cache"))
    if chdir:
        mp.chdir(tmp)


def isolated_settings(tmp: Path, **overrides: Any) -> Settings:
    """:func:`sovereign_mcp.config.load_settings` under :func:`isolate` (restored afterwards), with
    ``overrides`` as the command line would give them."""
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp)
        return load_settings(None, **overrides)


_HANDED_OUT: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default range starts here


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and will stay free until the test binds it.

    Picked below the kernel's ephemeral range (``net.ipv4.ip_local_port_range``), so neither an outgoing
    connection's source port nor another ``bind(0)`` can take it in the meantime (with ``bind(0)`` a stand-in
    started later sometimes found its port taken), and never handed out twice in one test process.
    """
    floor = min(_ephemeral_floor(), 65_000)
    low = max(1024, floor - 20_000)
    for _ in range(1000):
        port = random.randrange(low, floor)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {low}..{floor}")


def spawn_server(*args: str, timeout: float = 90.0, env: dict[str, str] | None = None, log: Path | None = None,
                 cwd: Path | None = None, inherit_env: bool = True) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m sovereign_mcp serve`` on a free loopback port and wait for ``/health``.

    Returns the process (stop it with :func:`stop_server`) and its base URL. ``env`` adds environment
    variables (e.g. ``SOVEREIGN_MCP_PAYMENTS__ENABLED=false``) to this process's, or replaces them when
    ``inherit_env`` is false. The server's stdout and stderr go to ``log``
    (default: a temporary file), never to a pipe nobody reads, which would block a server that logs a lot.

    Raises:
        RuntimeError: the server exited before it was ready (its output is in the message).
        TimeoutError: not ready within ``timeout`` s (the process is killed).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "sovereign_mcp", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--no-watch", "--log-level", "warning", *args]
    if log is None:
        log = Path(tempfile.mkstemp(prefix="sovereign-mcp-server-", suffix=".log")[1])
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                env={**(os.environ if inherit_env else {}), "PYTHONUNBUFFERED": "1", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"server not ready on {url} after {timeout} s: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    """SIGTERM ``proc`` and return its exit code.

    Raises:
        AssertionError: it did not stop by itself within ``timeout`` s (it is then killed).
    """
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"server did not stop within {timeout:g} s of SIGTERM") from None


@contextlib.contextmanager
def running_server(*args: str, timeout: float = 90.0, env: dict[str, str] | None = None,
                   log: Path | None = None, cwd: Path | None = None) -> Iterator[str]:
    """:func:`spawn_server` as a context manager; yields the base URL.

    The process gets SIGTERM on exit and must stop by itself within 15 s (clean shutdown).
    """
    proc, url = spawn_server(*args, timeout=timeout, env=env, log=log, cwd=cwd)
    try:
        yield url
    finally:
        stop_server(proc)


def operator_token(data_dir: Path, database_url: str | None = None) -> str:
    """A new operator bearer token in the store of a server with this ``data_dir`` (or ``database_url``),
    for ``fastmcp.Client(url, auth=token)`` or an ``Authorization: Bearer`` header."""
    from sovereign_mcp.auth.tokens import OperatorTokenStore

    store = OperatorTokenStore.for_settings(data_dir, database_url)
    try:
        return store.create(label="tests")[0]
    finally:
        store.close()


async def mcp_challenge(url: str, tool: str, arguments: dict[str, Any],
                        headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The in-band ``payment_required`` object that a paid ``tools/call`` gets on ``{url}/mcp`` (a real
    ``fastmcp.Client`` over HTTP); asserts the result is one, with the same JSON as its text content."""
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    async with Client(StreamableHttpTransport(f"{url}/mcp", headers=headers or {}), timeout=30) as client:
        result = await client.call_tool(tool, arguments, raise_on_error=False)
    assert result.is_error and "payment_required" in (result.structured_content or {}), result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content["payment_required"]
