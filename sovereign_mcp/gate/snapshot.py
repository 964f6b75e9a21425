"""The compiled gate of ``sovereign-mcp gate``, cached between runs so the command starts without pydantic.

Loading the settings (pydantic-settings) and validating the KB (pydantic) cost about 200 ms before the first
character is checked; the checks themselves are plain Python (:mod:`sovereign_mcp.gate.checks`). After a
full run the command stores a :class:`GateSnapshot` (both kinds' :class:`~sovereign_mcp.gate.plan.Plan`, the
known facts, the rule titles) in ``<user cache dir>/sovereign-mcp/gate/<key>.pkl``. The next run with the
same inputs loads it with the standard library, pyahocorasick and this package's plain modules only.

The key (:func:`snapshot_key`) covers everything the effective settings are made from: the working folder,
the config file found (its path and bytes), every ``SOVEREIGN_MCP_*`` variable, ``HOME`` and ``XDG_*``, the
command's flags, the Python and package versions, the package's own source files and the site-packages folder
(any package installed or removed there). A snapshot is used only
while every KB and corpus folder it was built from lists the same files (path, inode, size, modification and
status-change times: :func:`sovereign_mcp.files.listing_digest`) and no future-dated post has fallen due.
Anything else, an unreadable or corrupt file included, means a full run, which writes a fresh snapshot. The
file is a pickle in the user's own cache folder, like the index cache in the data folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ahocorasick

from sovereign_mcp import __version__
from sovereign_mcp.files import listing_digest, load_pickle, write_atomically
from sovereign_mcp.gate.facts import KnownFacts
from sovereign_mcp.gate.plan import Plan
from sovereign_mcp.paths import ENV_PREFIX, default_config_file, user_cache_dir

FORMAT_VERSION = 1
KEEP = 8  # snapshots kept (one per working folder / environment / flags in use); the oldest go first
_PACKAGE = Path(__file__).resolve().parents[1]
_SITE = Path(ahocorasick.__file__).resolve().parent  # the site-packages the compiled automata come from

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GateSnapshot:
    """A compiled gate and what it was built from.

    ``sources``: :func:`source_digests` of the KB and corpus roots; ``plans``: kind
    (``article`` | ``podcast``) -> its plan; ``titles``: rule id -> entry title (for SARIF);
    ``expires_at``: epoch seconds when a future-dated post is published (``None``: no such post).
    """

    key: str
    sources: list[tuple[str, tuple[str, ...], str]]
    plans: dict[str, Plan]
    facts: KnownFacts
    titles: dict[str, str]
    expires_at: float | None = None

    def is_current(self, now: float | None = None) -> bool:
        """Whether every source folder still lists the same files and no scheduled post has fallen due."""
        if self.expires_at is not None and self.expires_at <= (time.time() if now is None else now):
            return False
        return all(listing_digest(Path(root), exts) == digest for root, exts, digest in self.sources)


def source_digests(kb_paths: Iterable[Path], corpus_paths: Iterable[Path],
                   corpus_extensions: Iterable[str]) -> list[tuple[str, tuple[str, ...], str]]:
    """``(folder, extensions, listing digest)`` of every KB root (``.md``) and corpus root, each folder as
    configured, made absolute with its symlinks kept (re-pointing a link is a change): the
    :attr:`GateSnapshot.sources` that :meth:`GateSnapshot.is_current` checks again."""
    roots = [(Path(p).expanduser().absolute(), (".md",)) for p in kb_paths]
    roots += [(Path(p).expanduser().absolute(), tuple(corpus_extensions)) for p in corpus_paths]
    return [(str(root), exts, listing_digest(root, exts)) for root, exts in roots]


def snapshot_key(config: Path | None, overrides: Mapping[str, Any]) -> str | None:
    """SHA-256 hex naming the snapshot for these settings inputs (see the module), or ``None`` when the
    ``config`` file cannot be read or the working folder is gone (the full run then reports or handles it)."""
    digest = hashlib.sha256()

    def part(*values: object) -> None:
        digest.update("\0".join(map(str, values)).encode("utf-8", "surrogateescape") + b"\n")

    try:
        cwd = os.getcwd()
    except OSError:  # the working folder was removed: relative paths mean nothing, take the full path
        return None
    part("v", FORMAT_VERSION, __version__, sys.version, sys.prefix, cwd)
    part("code", listing_digest(_PACKAGE, (".py",)))
    part("deps", _SITE.stat().st_mtime_ns)  # installing or removing a package changes its folder's entries
    path = config if config is not None else default_config_file()
    if path is not None:
        try:
            part("config", Path(path).resolve(), hashlib.sha256(Path(path).read_bytes()).hexdigest())
        except OSError:
            return None
    for name, value in sorted(os.environ.items()):
        upper = name.upper()
        if upper.startswith((ENV_PREFIX, "XDG_")) or upper == "HOME":
            part("env", name, value)
    for name, value in sorted(overrides.items()):
        part("flag", name, repr(value))
    return digest.hexdigest()


def snapshot_dir() -> Path:
    """``<user cache dir>/sovereign-mcp/gate``."""
    return user_cache_dir() / "gate"


def load_snapshot(key: str) -> GateSnapshot | None:
    """The current snapshot stored under ``key``, or ``None`` (none, stale, corrupt: never raises; a corrupt
    file is a warning)."""
    path = snapshot_dir() / f"{key}.pkl"
    if not path.is_file():  # none yet, or no usable cache folder: quietly a full run
        return None
    snapshot = load_pickle(path, "gate plan cache", log)
    if not isinstance(snapshot, GateSnapshot) or snapshot.key != key or not snapshot.is_current():
        return None
    return snapshot


def save_snapshot(snapshot: GateSnapshot) -> None:
    """Store ``snapshot`` atomically under its key and keep the :data:`KEEP` newest. A cache that cannot be
    written is logged at debug level and skipped (the next run is a full run again)."""
    folder = snapshot_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / f"{snapshot.key}.pkl",
                         lambda fh: pickle.dump(snapshot, fh, protocol=pickle.HIGHEST_PROTOCOL))
        stored = sorted(folder.glob("*.pkl"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in stored[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("could not write gate plan cache in %s: %s", folder, exc)
