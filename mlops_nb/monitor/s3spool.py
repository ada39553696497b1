"""Spool files in ``s3://bucket/prefix`` (written by model servers), copied down for ingest.

Servers on several machines spool to one bucket in the same layout as a local spool
(see :mod:`.logstore`); :meth:`Monitor.ingest` with an ``s3://`` address lists the
model's files under the prefix and downloads them into a temporary folder, keeping their
relative paths, then ingests that folder. Files ingested before are recognised by their
content and added once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import InvalidArgument, StorageError


@contextmanager
def downloaded(uri: str, model: str, s3_options: dict[str, Any] | None = None) -> Iterator[Path]:
    """A temporary local copy of ``model``'s spool files under ``uri``."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidArgument(f"expected s3://bucket/prefix, got {uri!r}")
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    base = f"{prefix}/model={model}/" if prefix else f"model={model}/"
    client = boto3.client("s3", **(s3_options or {}))
    with tempfile.TemporaryDirectory(prefix="mlops-nb-ingest-") as tmp:
        root = Path(tmp)
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if not key.endswith(".parquet"):
                        continue
                    local = root / key[len(prefix) :].lstrip("/")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, key, str(local))
        except (BotoCoreError, ClientError) as e:
            raise StorageError(
                f"cannot read spool {uri}: {e}; check the bucket name, the endpoint and the "
                "credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the workspace's "
                "s3_options)"
            ) from e
        yield root
