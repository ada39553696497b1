"""Content-addressed, immutable artifact storage: a local folder or S3.

Each file is stored once under its sha256 (``blobs/sha256/ab/abcdef...``). A version's
files are described by a manifest (path, sha256, size and role of each file); the
version digest is the sha256 of the manifest's canonical JSON, which is stored as a blob
too, so an artifact store on its own says what every version contains.

Fetching verifies every byte against the manifest before a caller sees the file: a
tampered or truncated blob raises :class:`~mlops_nb.errors.IntegrityError`. Storing a
blob whose key exists checks the stored bytes first and rewrites a damaged copy, so
registering again repairs what an earlier fetch reported.

Files in flight (``.incoming/`` of a local store, ``mlops-nb-stage-*`` staging folders)
are named after the host and process that wrote them; a store sweeps those of processes
that are gone (killed mid-registration) when it is opened.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "w.txt").write_text("weights")
7
>>> store = open_store(str(root / "artifacts"))
>>> manifest = store.put_files({"w.txt": root / "w.txt"}, roles={"w.txt": "model"})
>>> manifest["files"][0]["size"], manifest_digest(manifest)[:7]
(7, 'sha256:')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import ArtifactError, ArtifactMissing, IntegrityError, InvalidArgument, StorageError
from .staging import owner_tag, staging, sweep

MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON document that digests are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The version digest: ``sha256:<hex>`` of the manifest's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(manifest)).hexdigest()


def _blob_key(hexdigest: str) -> str:
    return f"blobs/sha256/{hexdigest[:2]}/{hexdigest}"


class ArtifactStore:
    """Shared logic; subclasses move bytes to and from one place."""

    uri: str

    # -- transport, per backend ----------------------------------------------------------
    def _exists(self, key: str) -> bool:
        raise NotImplementedError

    def _upload(self, src: Path, key: str) -> None:
        raise NotImplementedError

    def _download(self, key: str, dest: Path) -> None:
        raise NotImplementedError

    def _intact(self, key: str, hexdigest: str, size: int) -> bool:
        """Whether the blob stored under ``key`` has exactly these bytes."""
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError

    # -- content addressing --------------------------------------------------------------
    def put_blob(self, path: Path) -> tuple[str, int, bool]:
        """Store one file; returns (hex sha256, size, whether the key was written).

        An existing blob is kept when its bytes match and rewritten when they do not (a
        damaged copy is repaired, not reused).
        """
        digest = sha256_file(path)
        size = path.stat().st_size
        key = _blob_key(digest)
        if self._exists(key) and self._intact(key, digest, size):
            return digest, size, False
        self._upload(path, key)
        return digest, size, True

    def put_files(
        self,
        files: dict[str, Path],
        roles: dict[str, str],
        extra: dict[str, Any] | None = None,
        written: list[str] | None = None,
        scratch: Path | None = None,
    ) -> dict[str, Any]:
        """Store files under their relative names; returns the manifest (also stored).

        The hex digests of blobs this call wrote are appended to ``written``, so a caller
        whose next step fails can :meth:`discard` them. ``scratch`` is a folder the
        manifest file may be written in (default: a staging folder of its own).
        """
        entries = []
        for rel in sorted(files):
            src = Path(files[rel])
            if not src.is_file():
                raise ArtifactMissing(f"artifact file {str(src)!r} does not exist")
            digest, size, new = self.put_blob(src)
            if new and written is not None:
                written.append(digest)
            entries.append({"path": rel, "sha256": digest, "size": size, "role": roles[rel]})
        manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "files": entries, **(extra or {})}
        with contextlib.ExitStack() as stack:
            folder = scratch if scratch is not None else stack.enter_context(staging())
            mpath = folder / ".manifest.json"
            mpath.write_bytes(canonical_json(manifest))
            digest, _, new = self.put_blob(mpath)
            mpath.unlink()
            if new and written is not None:
                written.append(digest)
        return manifest

    def _listing(self) -> dict[str, float]:
        """Every stored blob: hex digest -> age in seconds."""
        raise NotImplementedError

    def orphans(self, used: set[str], older_than: float) -> list[str]:
        """Blobs not in ``used`` (hex digests) stored more than ``older_than`` seconds ago:
        the files of registrations that were killed before they were recorded. The age
        keeps the blobs of a registration still in progress."""
        return sorted(h for h, age in self._listing().items() if h not in used and age > older_than)

    def discard(self, hexdigests: list[str]) -> None:
        """Delete blobs (by hex sha256) that no version refers to; best effort."""
        for hexdigest in hexdigests:
            with contextlib.suppress(ArtifactError, OSError):
                self._delete(_blob_key(hexdigest))

    def fetch(
        self,
        manifest: dict[str, Any],
        digest: str,
        dest: Path,
        roles: set[str] | None = None,
    ) -> dict[str, Path]:
        """Download the manifest's files (optionally only some roles) into ``dest``,
        verifying the manifest against ``digest`` and every file against the manifest.
        Nothing is left in ``dest`` when a check fails."""
        if manifest_digest(manifest) != digest:
            raise IntegrityError(
                f"manifest does not match the recorded digest {digest}: the registry row "
                "was altered; re-register the model"
            )
        out: dict[str, Path] = {}
        dest.mkdir(parents=True, exist_ok=True)
        try:
            for entry in manifest["files"]:
                if roles is not None and entry["role"] not in roles:
                    continue
                target = dest / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                self._download(_blob_key(entry["sha256"]), target)
                actual = sha256_file(target)
                size = target.stat().st_size
                if actual != entry["sha256"] or size != entry["size"]:
                    raise IntegrityError(
                        f"artifact file {entry['path']!r} in {self.uri} is corrupt: expected "
                        f"sha256 {entry['sha256']} ({entry['size']} bytes), found {actual} "
                        f"({size} bytes). The stored blob was modified or truncated; restore "
                        "it from a backup or register the model again"
                    )
                out[entry["path"]] = target
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


class LocalStore(ArtifactStore):
    """Blobs in a local folder, written atomically and made read-only."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self._incoming = self.root / ".incoming"
        try:
            self._incoming.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create artifact folder {self.uri!r}: {e}") from e
        sweep(self._incoming)

    def _exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def _intact(self, key: str, hexdigest: str, size: int) -> bool:
        path = self.root / key
        try:
            return path.stat().st_size == size and sha256_file(path) == hexdigest
        except OSError:
            return False

    def _delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def _listing(self) -> dict[str, float]:
        now = time.time()
        out = {}
        for path in (self.root / "blobs" / "sha256").glob("*/*"):
            with contextlib.suppress(OSError):
                out[path.name] = now - path.stat().st_mtime
        return out

    def _upload(self, src: Path, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # One in-flight folder, so opening the store sweeps a killed writer's files cheaply.
        fd, tmp = tempfile.mkstemp(dir=self._incoming, prefix=owner_tag())
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _download(self, key: str, dest: Path) -> None:
        src = self.root / key
        if not src.is_file():
            raise ArtifactMissing(
                f"artifact blob {key!r} is missing from {self.uri}; restore the folder "
                "from a backup or register the model again"
            )
        shutil.copyfile(src, dest)


def open_store(uri: str, s3_options: dict[str, Any] | None = None) -> ArtifactStore:
    """An artifact store for a local path or an ``s3://`` URI."""
    if uri.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(uri, s3_options)
    if "://" in uri:
        raise InvalidArgument(
            f"unsupported artifact location {uri!r}: use a local folder or s3://bucket/prefix"
        )
    return LocalStore(uri)
