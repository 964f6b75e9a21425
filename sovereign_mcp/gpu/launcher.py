"""Start and stop a plain server process as a detached process group (standard library only).

For services that are not systemd units or containers, use as the manager's commands::

    start_command = "python -m sovereign_mcp.gpu.launcher start --pidfile /run/x/sglang.pid --log /var/log/x.log
                     -- python -m sglang.launch_server --port 30000 ..."
    stop_command  = "python -m sovereign_mcp.gpu.launcher stop --pidfile /run/x/sglang.pid"

``start`` spawns the command in a new session (its own process group), writes the group id to the pid
file and returns at once. ``stop`` sends SIGTERM to the whole group, waits ``--grace`` seconds, then
SIGKILL, and returns only when no process of the group is left: SGLang workers reparented to PID 1 keep
their memory after the parent is killed (SGLang kills its own tree with ``kill_process_tree`` in
``python/sglang/srt/utils.py``; llama-swap ``proxy/process.go`` stops the group the same way).
Zombies (exited, not yet reaped) hold no memory and count as gone.

Exit codes: 0 done (also "already running" / "not running"), 1 failure (message on stderr), 2 usage.
This file imports nothing from the package so it can also be run by path.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PROC = Path("/proc")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) process ids in process group ``pgid``.

    Reads ``/proc/<pid>/stat`` on Linux; elsewhere falls back to ``killpg(pgid, 0)`` (``[pgid]`` or ``[]``).
    """
    if not PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
        return [pgid]
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields[0] = state, fields[1] = ppid, fields[2] = pgrp (proc(5))
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def read_pidfile(path: Path) -> int | None:
    """The process group id stored in ``path``; ``None`` when missing or unreadable."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start(pidfile: Path, command: list[str], log: Path | None, cwd: Path | None) -> int:
    """Spawn ``command`` detached; idempotent while its group is alive. Returns an exit code."""
    pgid = read_pidfile(pidfile)
    if pgid is not None and group_members(pgid):
        print(f"already running (process group {pgid})")
        return 0
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, start_new_session=True, close_fds=True)
    except OSError as exc:
        print(f"cannot start {command[0]}: {exc}", file=sys.stderr)
        return 1
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pidfile)
    print(f"started process group {proc.pid}")
    return 0


def _wait_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def stop(pidfile: Path, grace: float, kill_wait: float) -> int:
    """SIGTERM the group, SIGKILL after ``grace`` s, wait until it is gone. Returns an exit code."""
    pgid = read_pidfile(pidfile)
    if pgid is None or not group_members(pgid):
        pidfile.unlink(missing_ok=True)
        print("not running")
        return 0
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            print(f"cannot signal process group {pgid}: {exc}", file=sys.stderr)
            return 1
        if _wait_gone(pgid, wait):
            pidfile.unlink(missing_ok=True)
            print(f"stopped process group {pgid} ({signal.Signals(sig).name})")
            return 0
    print(f"process group {pgid} still alive after SIGKILL: {group_members(pgid)}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovereign_mcp.gpu.launcher", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_start = sub.add_parser("start", help="spawn COMMAND detached and record its process group")
    p_start.add_argument("--pidfile", type=Path, required=True)
    p_start.add_argument("--log", type=Path, help="append the service's output here (default: discard)")
    p_start.add_argument("--cwd", type=Path)
    p_start.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p_stop = sub.add_parser("stop", help="stop the recorded process group")
    p_stop.add_argument("--pidfile", type=Path, required=True)
    p_stop.add_argument("--grace", type=float, default=30.0, help="seconds between SIGTERM and SIGKILL")
    p_stop.add_argument("--kill-wait", type=float, default=10.0, help="seconds to wait after SIGKILL")
    p_status = sub.add_parser("status", help="exit 0 when the group is alive, 3 when not")
    p_status.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.action == "start":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("start needs a command after --")
        return start(args.pidfile, command, args.log, args.cwd)
    if args.action == "stop":
        return stop(args.pidfile, args.grace, args.kill_wait)
    pgid = read_pidfile(args.pidfile)
    alive = pgid is not None and bool(group_members(pgid))
    print("running" if alive else "not running")
    return 0 if alive else 3


if __name__ == "__main__":
    sys.exit(main())
