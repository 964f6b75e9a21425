"""Load knowledge-base entries from one or more roots (e.g. a cross-project KB, then a project KB).

Every ``*.md`` file under a root is one entry (see :mod:`sovereign_mcp.kb.models`). A later root
overrides an earlier root's entry with the same ``id`` (as the operator's ``podcast-studio/kb/``
refines ``sovereign-kb/``); two files with one ``id`` inside the same root is an error. A broken
file is reported as :class:`KBError` (file, field, message) and skipped; the rest load.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sovereign_mcp.corpus.loader import ArticleError, parse_front_matter
from sovereign_mcp.files import iter_markdown_files
from sovereign_mcp.kb.models import DATA_MODELS, KBEntry, KBError

log = logging.getLogger(__name__)

_YAML_BLOCK = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```[ \t]*$\n?", re.MULTILINE | re.DOTALL)
_ENTRY_KEYS = set(KBEntry.model_fields) - {"body", "data", "path"}
# libyaml's parser when PyYAML was built with it (8x faster on the 515-flag SGLang catalogue: 2.5 ms, not
# 16 ms), else the pure-Python one; both build the same safe types. python-frontmatter picks the same way.
YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(slots=True)
class KnowledgeBase:
    """Loaded entries by id (load order kept), plus the files that failed."""

    entries: dict[str, KBEntry] = field(default_factory=dict)
    errors: list[KBError] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)

    def in_scopes(self, scopes: Iterable[str], rules_only: bool = False) -> list[KBEntry]:
        """Entries whose scope is one of ``scopes``, sorted by id (stable)."""
        wanted = set(scopes)
        return sorted(
            (e for e in self.entries.values() if e.scope in wanted and (e.is_rule or not rules_only)),
            key=lambda e: e.id,
        )


def _errors_from(exc: ValidationError, path: Path, prefix: str = "") -> list[KBError]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(entry)"
        out.append(KBError(path=str(path), field=f"{prefix}{where}", message=err["msg"]))
    return out


def parse_entry(path: Path, text: str) -> KBEntry:
    """Parse and validate one entry file.

    Raises:
        ArticleError: malformed front matter or YAML block (message says which).
        ValidationError: a front-matter field or rule-data field is invalid.
    """
    meta, body = parse_front_matter(text)
    data: dict[str, Any] = {k: meta.pop(k) for k in list(meta) if k not in _ENTRY_KEYS}
    block = _YAML_BLOCK.search(body)
    if block:
        try:
            loaded = yaml.load(block.group(1), Loader=YAML_LOADER) or {}
        except yaml.YAMLError as exc:
            raise ArticleError(f"malformed YAML block: {' '.join(str(exc).split())[:200]}") from None
        if not isinstance(loaded, dict):
            raise ArticleError("the YAML block must be a key/value mapping")
        data.update(loaded)
        body = (body[: block.start()] + body[block.end() :]).strip()
    entry = KBEntry.model_validate({**meta, "body": body, "path": path})
    model = DATA_MODELS[entry.type]
    return entry.model_copy(update={"data": model.model_validate(data)})


def load_kb(roots: Iterable[Path]) -> KnowledgeBase:
    """Load every entry under ``roots`` (a missing root is one error, not an exception)."""
    kb = KnowledgeBase(roots=[str(r) for r in roots])
    for root in map(Path, kb.roots):
        if not root.is_dir():
            kb.errors.append(KBError(path=str(root), field="(root)", message="KB folder not found"))
            continue
        seen_here: dict[str, Path] = {}
        for path in iter_markdown_files(root, (".md",)):
            if path.name.lower() == "readme.md":
                continue
            try:
                entry = parse_entry(path, path.read_text(encoding="utf-8"))
            except OSError as exc:
                kb.errors.append(KBError(path=str(path), field="(file)", message=f"cannot read: {exc}"))
                continue
            except UnicodeDecodeError:
                kb.errors.append(KBError(path=str(path), field="(file)", message="not UTF-8"))
                continue
            except ArticleError as exc:
                where = "(yaml block)" if "YAML block" in str(exc) else "(front matter)"
                kb.errors.append(KBError(path=str(path), field=where, message=str(exc)))
                continue
            except ValidationError as exc:
                prefix = "" if exc.title == "KBEntry" else "data."
                kb.errors.extend(_errors_from(exc, path, prefix))
                continue
            if entry.id in seen_here:
                kb.errors.append(KBError(path=str(path), field="id",
                                         message=f"duplicate id {entry.id!r} (also {seen_here[entry.id]})"))
                continue
            seen_here[entry.id] = path
            kb.entries[entry.id] = entry
    for error in kb.errors:
        log.warning("kb: %s", error)
    return kb
