"""Non-blocking ``flock(2)`` on a file, the host-wide mutex of the GPU manager and the pipeline worker.

The kernel releases the lock when the holding process dies, so a crash never leaves it taken. The file's
content names the holder for operators (``cat <data_dir>/gpu/state.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def try_lock(path: Path, holder: str) -> int | None:
    """Take an exclusive ``flock`` on ``path`` (created if missing) without waiting.

    Returns the open file descriptor to pass to :func:`unlock`, or ``None`` when another open file holds
    the lock. ``holder`` (e.g. ``"switching to voxtral-tts for job 1f3a"``) is written after the pid.

    Raises:
        OSError: the file cannot be opened or written.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} {holder}\n".encode())
    return fd


def unlock(fd: int) -> None:
    """Release a lock from :func:`try_lock` and close its descriptor (errors while unlocking are ignored)."""
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
