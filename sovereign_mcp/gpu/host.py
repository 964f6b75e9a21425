"""Facts about this host read from ``/proc``: free memory (``MemAvailable``) and process identity.

On the GB10's unified memory ``nvidia-smi`` reports ``[N/A]`` for memory, so free memory comes from
``MemAvailable`` in ``/proc/meminfo`` (proc(5): values in kB, meaning KiB). A process is identified by
``pid:starttime`` (field 22 of ``/proc/<pid>/stat``, proc(5)), so a reused pid is not taken for the
process that held a lease before it.
"""

from __future__ import annotations

import os
from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def read_mem_available_gb(path: Path = MEMINFO) -> float:
    """``MemAvailable`` from a ``/proc/meminfo``-format file, GB (10^9 bytes; the file gives kB = KiB).

    Raises:
        OSError: unreadable file. ValueError: no parsable ``MemAvailable`` line.
    """
    for line in path.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) < 2:
                raise ValueError(f"no value on the MemAvailable line of {path}")
            return int(parts[1]) * 1024 / 1e9
    raise ValueError(f"no MemAvailable line in {path}")


def mem_available_gb(path: Path = MEMINFO) -> float | None:
    """:func:`read_mem_available_gb` rounded to 0.01 GB, or ``None`` when the file cannot be read or parsed."""
    try:
        return round(read_mem_available_gb(path), 2)
    except (OSError, ValueError):
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (index 0 = state, 19 = starttime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def owner_token() -> str:
    """``pid:starttime`` of this process (starttime guards against pid reuse, e.g. after a reboot)."""
    pid = os.getpid()
    fields = _proc_stat(pid)
    return f"{pid}:{fields[19] if fields and len(fields) > 19 else ''}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by an :func:`owner_token` still runs (a zombie counts as gone).

    Without ``/proc`` only the pid is checked (``kill(pid, 0)``).
    """
    pid_text, _, start = owner.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if Path("/proc/self/stat").exists():
        fields = _proc_stat(pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return not start or (len(fields) > 19 and fields[19] == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_of(owner: str) -> int:
    """The pid in an :func:`owner_token` (0 if it has none)."""
    try:
        return int(owner.partition(":")[0])
    except ValueError:
        return 0
