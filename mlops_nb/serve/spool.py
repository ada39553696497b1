"""Where payload tables go: a local folder or ``s3://bucket/prefix``, in one layout.

Both write :mod:`mlops_nb.monitor.logstore`'s layout
(``model=<name>/version=<n>/date=<YYYY-MM-DD>/<uuid>.parquet``); the S3 spool stages
each file locally with the same code and uploads it under the prefix, so replicas on
several machines log to one place and ``Monitor.ingest("s3://...")`` reads it back.

>>> open_spool("/tmp/spool")
<LocalSpool /tmp/spool>
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import pyarrow as pa

from ..errors import InvalidArgument
from ..monitor import logstore


class Spool(Protocol):
    def write(self, model: str, version: int, table: pa.Table, token: str) -> int:
        """Write ``table``; returns the number of files written. Raises on failure. The
        same ``token`` names the same files: a retry replaces what a failed write left."""
        ...


class LocalSpool:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def write(self, model: str, version: int, table: pa.Table, token: str) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return len(logstore.write(self.root, model, version, table, token))

    def __repr__(self) -> str:
        return f"<LocalSpool {self.root}>"


class S3Spool:
    def __init__(self, uri: str, s3_options: dict[str, Any] | None = None) -> None:
        import boto3
        from botocore.config import Config

        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidArgument(f"expected s3://bucket/prefix, got {uri!r}")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        kwargs = dict(s3_options or {})
        # Failures are retried by the payload log with backoff: fail fast here.
        kwargs.setdefault(
            "config",
            Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5,
                   read_timeout=30),
        )  # fmt: skip
        self.client = boto3.client("s3", **kwargs)

    def write(self, model: str, version: int, table: pa.Table, token: str) -> int:
        with tempfile.TemporaryDirectory(prefix="mlops-nb-spool-") as tmp:
            root = Path(tmp)
            # An upload that landed but whose answer was lost is put again under its key.
            segments = logstore.write(root, model, version, table, token)
            for seg in segments:
                relative = Path(seg.path).relative_to(root).as_posix()
                key = f"{self.prefix}/{relative}" if self.prefix else relative
                self.client.upload_file(seg.path, self.bucket, key)
        return len(segments)

    def __repr__(self) -> str:
        return f"<S3Spool {self.uri}>"


def open_spool(uri: str, s3_options: dict[str, Any] | None = None) -> LocalSpool | S3Spool:
    if uri.startswith("s3://"):
        return S3Spool(uri, s3_options)
    if "://" in uri:
        raise InvalidArgument(f"spool {uri!r}: use a local folder or s3://bucket/prefix")
    return LocalSpool(uri)
