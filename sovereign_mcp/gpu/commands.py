"""Running a GPU service's start and stop commands (no shell, bounded time, output kept as a tail)."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of one start or stop command: exit code (124 = timed out, 127 = not found) and output tail."""

    returncode: int
    output: str = ""


Runner = Callable[[str, float], CommandResult]
"""``runner(command, timeout_seconds) -> CommandResult``."""


def run_command(command: str, timeout: float) -> CommandResult:
    """Run ``command`` without a shell (split by :func:`shlex.split`), at most ``timeout`` seconds.

    Output goes to a temporary file, not a pipe: a start command that leaves a daemon behind holding
    the pipe would otherwise block until the daemon exits. Never raises for a failing command.
    """
    argv = shlex.split(command)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
            code = proc.returncode
        except FileNotFoundError:
            return CommandResult(127, f"command not found: {argv[0]}")
        except PermissionError as exc:
            return CommandResult(126, f"cannot run {argv[0]}: {exc}")
        except subprocess.TimeoutExpired:
            code = 124
        out.seek(0)
        text = out.read()[-4000:].decode("utf-8", errors="replace").strip()
    if code == 124 and not text:
        text = f"timed out after {timeout:g} s"
    return CommandResult(code, text)


def tail(text: str, limit: int = 500) -> str:
    """``text`` on one line (whitespace runs collapsed), at most its last ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else "..." + text[-limit:]
