"""Load published articles from Markdown folders (Hugo, Jekyll, Astro and plain notes).

Front matter: YAML between ``---`` lines or TOML between ``+++`` lines (python-frontmatter; TOML is
parsed with the standard library's ``tomllib``). Recognised keys, by site generator convention:
``title``; ``date`` / ``publishDate`` / ``pubDate``; ``slug``, else the last segment of ``url`` /
``permalink``; ``tags``, ``categories`` and ``keywords``; ``description`` / ``summary`` /
``excerpt``; ``draft: true`` or Jekyll's ``published: false``.

Without front matter the title is the first ``# `` heading, the slug the file name (less a Jekyll
``YYYY-MM-DD-`` prefix; ``index.md`` takes its folder's name), and the date comes from the path
(``2014-05-12-...`` or ``.../2014/05/12/...``) or, failing that, the file's modification time.
"""

from __future__ import annotations

import logging
import re
import sys
import tomllib
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import yaml
from frontmatter.default_handlers import BaseHandler, YAMLHandler

from sovereign_mcp.corpus.models import Article, Corpus, CorpusWarning, heading_slug
from sovereign_mcp.files import DEFAULT_EXTENSIONS, iter_markdown_files

log = logging.getLogger(__name__)

_PATH_DATE = re.compile(r"(?<!\d)(\d{4})[-/](\d{2})[-/](\d{2})(?!\d)")
_JEKYLL_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}-")


class TomllibHandler(BaseHandler):
    """python-frontmatter handler for ``+++`` TOML front matter using the stdlib ``tomllib``
    (the library's own TOMLHandler needs the unmaintained ``toml`` package)."""

    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: object) -> Any:
        return tomllib.loads(fm)

    def export(self, metadata: dict[str, object], **kwargs: object) -> str:  # pragma: no cover
        raise NotImplementedError("sovereign-mcp only reads TOML front matter")


class ArticleError(ValueError):
    """A file that cannot become an article; the message says why."""


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split ``text`` into ``(front_matter, body)``.

    Raises:
        ArticleError: the front matter is not valid YAML/TOML or not a mapping.
    """
    stripped = text.lstrip("\ufeff")
    if stripped.startswith("+++"):
        handler: BaseHandler = TomllibHandler()
    elif stripped.startswith("---"):
        handler = YAMLHandler()
    else:
        return {}, stripped
    try:
        raw_meta, body = handler.split(stripped)
        metadata = handler.load(raw_meta) if raw_meta.strip() else {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise ArticleError(f"malformed front matter: {detail[:200]}") from None
    body = body.strip("\n")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ArticleError("front matter is not a key/value mapping")
    return dict(metadata), body


def to_datetime(value: Any) -> datetime | None:
    """Front-matter date (datetime, date, or ISO-8601 string) as an aware datetime, else ``None``."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime.combine(value, time.min)
    elif isinstance(value, str) and value.strip():
        raw = value.strip().replace(" ", "T", 1)
        try:
            result = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            match = _PATH_DATE.search(value)
            if not match:
                return None
            result = datetime(*(int(g) for g in match.groups()))
    else:
        return None
    return result if result.tzinfo else result.replace(tzinfo=UTC)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(",") if "," in value else value.split()
        return [p.strip() for p in parts if p.strip()]
    if isinstance(value, Iterable):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [str(value)]


def _first(meta: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if meta.get(key) not in (None, ""):
            return meta[key]
    return None


def _slug_for(meta: dict[str, Any], rel: Path) -> str:
    explicit = _first(meta, "slug")
    if explicit:
        return heading_slug(str(explicit)) or str(explicit)
    url = _first(meta, "url", "permalink")
    if isinstance(url, str):
        segments = [s for s in url.split("?")[0].split("/") if s and ":" not in s]
        if segments:
            last = re.sub(r"\.html?$", "", segments[-1])
            return heading_slug(last) or last
    stem = rel.stem
    if stem.lower() in ("index", "_index") and rel.parent.name:
        stem = rel.parent.name
    return heading_slug(_JEKYLL_PREFIX.sub("", stem)) or stem


def _public_url(meta: dict[str, Any], slug: str, base_url: str | None) -> str:
    url = _first(meta, "url", "permalink")
    path = str(url) if isinstance(url, str) else f"/{slug}/"
    if path.startswith(("http://", "https://")):
        return path
    path = "/" + path.lstrip("/")
    return f"{base_url}{path}" if base_url else path


def _date_for(meta: dict[str, Any], rel: Path, path: Path) -> datetime:
    found = to_datetime(_first(meta, "date", "publishDate", "pubDate", "published_at"))
    if found:
        return found
    match = _PATH_DATE.search(rel.as_posix())
    if match:
        try:
            return datetime(*(int(g) for g in match.groups()), tzinfo=UTC)
        except ValueError:
            pass
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def _json_safe(value: Any, in_list: bool = False) -> Any:
    """``value`` with dates as ISO strings and other non-JSON values as strings. Keys and short
    strings in lists (tags, categories...) repeat across articles, so they are interned to keep one
    copy of each in memory and in the index cache."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {sys.intern(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, in_list=True) for v in value]
    if type(value) is str and in_list and len(value) <= 100:
        return sys.intern(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def load_article(
    path: Path, root: Path, raw: bytes, *, base_url: str | None = None, min_passage_chars: int = 200
) -> Article | None:
    """Turn one file's bytes into an :class:`Article`; ``None`` for a draft.

    Raises:
        ArticleError: not UTF-8, or malformed front matter.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArticleError(f"not UTF-8 (invalid byte at offset {exc.start}); re-save it as UTF-8") from None
    meta, body = parse_front_matter(text)
    if meta.get("draft") is True or meta.get("published") is False:
        return None
    rel = path.relative_to(root)
    from sovereign_mcp.corpus.passages import split_article_compact  # markdown-it: only when articles are parsed

    h1_title, sections, passages = split_article_compact(body, min_passage_chars)
    title = str(_first(meta, "title") or h1_title or rel.stem.replace("-", " ").replace("_", " "))
    slug = _slug_for(meta, rel)
    tags = list(dict.fromkeys(_as_list(meta.get("tags")) + _as_list(meta.get("categories"))))
    tags += [k for k in _as_list(meta.get("keywords")) if k not in tags]
    if not meta and rel.parent != Path("."):
        tags = list(rel.parent.parts)  # notes without front matter: the topic folder is the tag
    return Article(
        slug=slug,
        title=title.strip(),
        date=_date_for(meta, rel, path),
        url=_public_url(meta, slug, base_url),
        tags=tuple(sys.intern(t) for t in tags),
        description=str(_first(meta, "description", "summary", "excerpt") or "").strip(),
        body=body,
        source=rel.as_posix(),
        root=sys.intern(str(root)),
        front_matter=_json_safe(meta),
        sections=sections,
        passages=passages,
    )


def resolve_roots(paths: Iterable[Path]) -> list[Path]:
    """Absolute corpus roots, in the order given.

    Raises:
        FileNotFoundError: a root does not exist or is not a folder.
    """
    roots = [Path(p).expanduser().resolve() for p in paths]
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"corpus folder not found: {root} (check --corpus / corpus.paths)")
    return roots


def read_corpus_files(roots: Iterable[Path], extensions: Iterable[str] = DEFAULT_EXTENSIONS):
    """Yield ``(root, path, raw_bytes_or_OSError)`` for every Markdown file, roots in order."""
    for root in roots:
        for path in iter_markdown_files(root, extensions):
            try:
                yield root, path, path.read_bytes()
            except OSError as exc:
                yield root, path, exc


def load_corpus(
    roots: Iterable[Path],
    *,
    base_url: str | None = None,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    min_passage_chars: int = 200,
    now: datetime | None = None,
    files: Iterable[tuple[Path, Path, bytes | OSError]] | None = None,
) -> Corpus:
    """Load every published article under ``roots``.

    Drafts and posts dated after ``now`` are left out (counted, not warned). Each unreadable,
    non-UTF-8 or malformed file and each duplicate slug (the later file is dropped) adds one
    :class:`CorpusWarning` naming the file; the rest still load. ``files`` lets a caller that already
    read the bytes (to hash them) pass them in.

    Raises:
        FileNotFoundError: a root folder does not exist.
    """
    roots = [Path(r).expanduser().resolve() for r in roots]
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"corpus folder not found: {root}")
    now = now or datetime.now(UTC)
    corpus = Corpus(articles=[], warnings=[], roots=[str(r) for r in roots])
    by_slug: dict[str, Article] = {}
    for root, path, raw in files if files is not None else read_corpus_files(roots, extensions):
        shown = str(path)
        if isinstance(raw, OSError):
            corpus.warnings.append(CorpusWarning(shown, f"cannot read: {raw.strerror or raw}"))
            continue
        try:
            article = load_article(path, root, raw, base_url=base_url, min_passage_chars=min_passage_chars)
        except ArticleError as exc:
            corpus.warnings.append(CorpusWarning(shown, str(exc)))
            continue
        if article is None:
            corpus.skipped_drafts += 1
            continue
        if article.date > now:
            corpus.skipped_future += 1
            if corpus.next_publish_at is None or article.date < corpus.next_publish_at:
                corpus.next_publish_at = article.date
            continue
        if article.slug in by_slug:
            first = by_slug[article.slug].path
            corpus.warnings.append(
                CorpusWarning(shown, f"duplicate slug {article.slug!r} (already used by {first}); skipped")
            )
            continue
        by_slug[article.slug] = article
        corpus.articles.append(article)
    for warning in corpus.warnings:
        log.warning("corpus: %s", warning)
    return corpus
