"""Parse an SGLang launch command into flags, environment and container image.

Accepted shapes (one or several lines, backslash continuations joined):

* ``python -m sglang.launch_server --model-path M --attention-backend triton ...`` (optionally
  prefixed by ``KEY=VALUE`` assignments, ``env``, ``sudo``, ``exec``);
* ``docker run [options] IMAGE [python3 -m sglang.launch_server ...]`` (``-e KEY=VALUE`` goes to the
  environment, the other docker options are kept as flags, e.g. ``--rm`` and ``--restart``);
* a systemd snippet: ``ExecStart=...`` plus ``Environment=KEY=VALUE`` lines; shell ``export K=V``.

Tokenising is ``shlex`` (POSIX rules, ``#`` comments). Nothing here raises on odd input: problems
are collected in :attr:`LaunchSpec.problems`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_UNIT_DIRECTIVE = re.compile(r"^[A-Z][A-Za-z]*=")  # systemd "Key=value" (systemd.syntax(7))
# docker run options that take no value (docs.docker.com/reference/cli/docker/container/run/)
DOCKER_BOOLEAN = {"--rm", "-d", "--detach", "-i", "--interactive", "-t", "--tty", "-it", "-ti", "--privileged",
                  "--init", "--read-only", "--no-healthcheck", "-P", "--publish-all", "--oom-kill-disable"}
_LAUNCHERS = ("sglang.launch_server", "sglang/launch_server.py", "launch_server.py")


@dataclass(slots=True)
class LaunchSpec:
    """What a launch command sets. ``flags`` maps ``--flag`` to its value (``None`` for a bare
    switch); ``docker_flags`` holds the container options; ``image`` is the container image."""

    kind: str = "unknown"  # python | docker | sglang | unknown
    flags: dict[str, str | None] = field(default_factory=dict)
    docker_flags: dict[str, str | None] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def all_flags(self) -> dict[str, str | None]:
        """SGLang and docker options together (rules may test either)."""
        return {**self.docker_flags, **self.flags}


def _tokens(line: str, spec: LaunchSpec) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError as exc:  # unbalanced quotes: fall back to whitespace
        spec.problems.append(f"could not tokenise the command ({exc}); read it word by word")
        return line.split()


def parse_env_lines(text: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs from lines (``export`` and ``Environment=`` prefixes allowed)."""
    env: dict[str, str] = {}
    spec = LaunchSpec()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Environment="):
            line = line[len("Environment="):]
        for token in _tokens(line, spec):
            if token == "export":
                continue
            if _ASSIGN.match(token):
                key, value = token.split("=", 1)
                env[key] = value
    return env


def _parse_flags(tokens: list[str], into: dict[str, str | None]) -> None:
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--") and len(token) > 2:
            if "=" in token:
                name, value = token.split("=", 1)
                into[name] = value
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                into[token] = tokens[i + 1]
                i += 1
            else:
                into[token] = None
        i += 1


def _parse_docker(tokens: list[str], spec: LaunchSpec) -> list[str]:
    """Consume ``docker run`` options; return the container command after the image."""
    i = tokens.index("run") + 1
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-"):
            spec.image = token
            return tokens[i + 1 :]
        name, _, inline = token.partition("=")
        if name in DOCKER_BOOLEAN or (inline == "" and "=" not in token and i + 1 >= len(tokens)):
            spec.docker_flags[name] = None
            i += 1
            continue
        value = inline if "=" in token else tokens[i + 1] if i + 1 < len(tokens) else ""
        i += 1 if "=" in token else 2
        if name in ("-e", "--env") and "=" in value:
            key, val = value.split("=", 1)
            spec.env[key] = val
        else:
            spec.docker_flags[name] = value
    spec.problems.append("docker run without an image name")
    return []


def parse_launch(text: str) -> LaunchSpec:
    """Parse ``text`` (see module doc). Never raises; unrecognised input gives ``kind="unknown"``."""
    spec = LaunchSpec()
    joined = re.sub(r"\\\r?\n", " ", text)
    command_lines = []
    lines = [raw.strip() for raw in joined.splitlines()]
    unit = any(line.startswith("ExecStart=") for line in lines)
    for line in lines:
        if not line or line.startswith(("#", ";", "[")):
            continue
        if line.startswith("Environment=") or line.startswith("export "):
            spec.env.update(parse_env_lines(line))
        elif line.startswith("ExecStart="):
            command_lines.append(line[len("ExecStart="):].lstrip("-@+!:"))
        elif unit and _UNIT_DIRECTIVE.match(line):
            continue  # other unit directives (Description=, ExecStopPost=, Restart=...) are not the command
        elif "=" in line.split(" ", 1)[0] and not line.startswith("-") and " " not in line:
            spec.env.update(parse_env_lines(line))
        else:
            command_lines.append(line)
    tokens = [t for line in command_lines for t in _tokens(line, spec)]
    while tokens and (tokens[0] in ("env", "sudo", "exec", "nohup") or _ASSIGN.match(tokens[0])):
        head = tokens.pop(0)
        if _ASSIGN.match(head):
            key, value = head.split("=", 1)
            spec.env[key] = value
    if len(tokens) >= 2 and tokens[0].endswith("docker") and "run" in tokens[:3]:
        spec.kind = "docker"
        tokens = _parse_docker(tokens, spec)
    launcher = next((i for i, t in enumerate(tokens) if t.endswith(_LAUNCHERS)), None)
    if launcher is not None:
        spec.kind = "python" if spec.kind == "unknown" else spec.kind
        _parse_flags(tokens[launcher + 1 :], spec.flags)
    elif any(t.startswith("--") for t in tokens):
        if spec.kind == "unknown":
            spec.kind = "sglang"
        _parse_flags(tokens, spec.flags)
    elif tokens and spec.kind == "unknown":
        spec.problems.append("no sglang.launch_server command and no --flags found")
    return spec
