"""Locations of the data shipped with the project (the sample ``corpus/`` and the ``kb/``)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """Return the shipped folder ``name``: inside a wheel it is ``sovereign_mcp/_data/<name>``,
    in a source checkout (editable install) it is ``<repo>/<name>``."""
    bundled = _PACKAGE / "_data" / name
    return bundled if bundled.is_dir() else _PACKAGE.parent / name


def default_corpus_dir() -> Path:
    """The embedded sample of published articles served when no ``--corpus`` is given."""
    return shipped_dir("corpus")


def default_kb_dir() -> Path:
    """The shipped knowledge base (quality-gate rules, prompt guidance, SGLang diagnoses)."""
    return shipped_dir("kb")
