"""File helpers shared by the loaders and the caches, standard library only (so the fast gate path can use
them): the Markdown walk, a fingerprint of a folder's files, the atomic write and the forgiving cache read."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

DEFAULT_EXTENSIONS = (".md", ".markdown", ".mdown", ".mdx")


def iter_markdown_files(root: Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> Iterator[Path]:
    """Markdown files under ``root`` in sorted path order, hidden files and folders skipped."""
    suffixes = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(suffixes):
                yield Path(dirpath) / name


def listing_digest(root: Path, extensions: Iterable[str]) -> str:
    """SHA-256 hex over the files :func:`iter_markdown_files` yields under ``root``: each one's path, inode,
    size in bytes and modification and status-change times in nanoseconds. Any added, removed, touched,
    rewritten or replaced file changes it (the status-change time moves on every write, even one that
    restores the old modification time). ``"missing"`` when ``root`` is not a folder."""
    if not root.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for path in iter_markdown_files(root, extensions):
        try:
            st = path.stat()
        except OSError:
            continue
        line = f"{path}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``: a crash never leaves a
    half-written cache file. Raises what ``write`` or the file system raise (``OSError``); the temporary file
    is removed."""
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_pickle(path: Path, what: str, log: logging.Logger) -> Any | None:
    """The object pickled in cache file ``path``, or ``None`` when there is none or it is unusable (corrupt,
    from an incompatible version: a warning naming ``what`` on the caller's ``log``, and the caller
    rebuilds). Never raises for a bad file: a cache is never fatal."""
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:
        log.warning("%s %s unusable (%s); rebuilding", what, path, exc)
        return None
