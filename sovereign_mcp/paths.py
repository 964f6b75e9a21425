"""Locations: the data shipped with the project (the sample ``corpus/`` and the ``kb/``), the default config
file, and the user cache folder (platformdirs; standard library otherwise, so any command can ask)."""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP_NAME = "sovereign-mcp"
ENV_PREFIX = "SOVEREIGN_MCP_"  # settings from the environment: SOVEREIGN_MCP_<KEY>, "__" between levels
LOCAL_CONFIG = Path("sovereign-mcp.toml")
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


def default_config_file() -> Path | None:
    """The TOML file read when no ``--config`` is given: ``./sovereign-mcp.toml``, else
    ``<user config dir>/sovereign-mcp/config.toml`` (platformdirs), else ``None``."""
    if LOCAL_CONFIG.is_file():
        return LOCAL_CONFIG
    user = Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"
    return user if user.is_file() else None


def user_cache_dir() -> Path:
    """``<user cache dir>/sovereign-mcp`` (platformdirs: ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux): caches
    that do not depend on the settings, such as the gate command's compiled plans."""
    return Path(platformdirs.user_cache_dir(APP_NAME))
