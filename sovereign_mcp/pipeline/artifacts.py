"""Artifact files of pipeline jobs: written atomically under ``<data_dir>/artifacts/<job_id>/``, recorded with
their sha256 and MIME type, fenced like every other step result (see :mod:`sovereign_mcp.pipeline.store`)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from sovereign_mcp.pipeline.models import ARTIFACT_MIME, ArtifactOut
from sovereign_mcp.pipeline.records import NAME_RE, ArtifactNotFound, StaleClaim, StoreBase


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no half-written artifacts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class ArtifactRecords(StoreBase):
    """Artifact files and their records."""

    def add_artifact(self, job_id: str, name: str, data: bytes | Path, step: str, *,
                     epoch: int | None = None) -> ArtifactOut:
        """Store ``data`` (bytes, or a finished file to move in) as artifact ``name`` with its sha256.

        With ``epoch``, the claim is checked before the file is written and again with the record, so a worker
        that lost the queue neither replaces its successor's file nor its record.

        Raises:
            ValueError: a name that is not a plain file name.
            StaleClaim: the step no longer runs under ``epoch``.
        """
        if not NAME_RE.match(name):
            raise ValueError(f"bad artifact name {name!r}")
        stale = StaleClaim(f"step {step} of job {job_id} is no longer claimed by worker epoch {epoch}")
        if epoch is not None:
            with self._tx() as cur:
                if self._fenced(cur, job_id, step, epoch, f"artifact {name}"):
                    raise stale
        path = self.job_dir(job_id) / name
        if isinstance(data, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
            data.replace(path)
        else:
            write_atomic(path, data)
        digest = sha256_file(path)
        size = path.stat().st_size
        mime = ARTIFACT_MIME.get(path.suffix.lower(), "application/octet-stream")
        now = self._clock()
        with self._tx() as cur:
            if self._fenced(cur, job_id, step, epoch, f"artifact {name}"):
                raise stale
            cur.execute("INSERT INTO pipeline_artifacts (job_id, name, path, sha256, bytes, mime, step, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, name) DO UPDATE SET "
                        "path = excluded.path, sha256 = excluded.sha256, bytes = excluded.bytes, "
                        "mime = excluded.mime, step = excluded.step, created_at = excluded.created_at",
                        [job_id, name, str(path.relative_to(self.artifacts_root)), digest, size, mime, step, now])
        return ArtifactOut(name=name, uri="", mime_type=mime, bytes=size, sha256=digest, step=step, created_at=now)

    def artifact(self, job_id: str, name: str) -> tuple[Path, str, str]:
        """``(path, mime type, sha256)`` of one artifact.

        Raises:
            ArtifactNotFound: unknown job or name, or the file is gone.
        """
        with self._tx(write=False) as cur:
            cur.execute("SELECT path, mime, sha256 FROM pipeline_artifacts WHERE job_id = ? AND name = ?",
                        [job_id, name])
            row = cur.fetchone()
        if row is None:
            raise ArtifactNotFound(f"job {job_id!r} has no artifact {name!r}")
        path = (self.artifacts_root / row[0]).resolve()
        if not path.is_relative_to(self.artifacts_root.resolve()) or not path.is_file():
            raise ArtifactNotFound(f"artifact {name!r} of job {job_id!r} is missing on disk")
        return path, row[1], row[2]
