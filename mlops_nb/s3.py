"""Blobs in S3 (or any S3-compatible store) through boto3, and plain file copies to and from it.

Endpoint, region and credentials come from boto3's own configuration: ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, a profile,
or ``client_kwargs``.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .artifacts import ArtifactStore, sha256_file
from .errors import ArtifactMissing, InvalidArgument, StorageError
from .staging import staging


class S3Store(ArtifactStore):
    """Blobs in ``s3://bucket/prefix`` through boto3.

    Endpoint, region and credentials come from the usual boto3 configuration
    (environment, ``~/.aws``), or from ``client_kwargs`` such as ``endpoint_url``.
    """

    def __init__(self, uri: str, client_kwargs: dict[str, Any] | None = None) -> None:
        import boto3
        from botocore.config import Config

        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidArgument(f"expected s3://bucket/prefix, got {uri!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = uri.rstrip("/")
        kwargs = dict(client_kwargs or {})
        kwargs.setdefault(
            "config",
            Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30
            ),
        )
        self.client = boto3.client("s3", **kwargs)
        self._check_bucket()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _explain(self, e: Exception, action: str) -> StorageError:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(e, NoCredentialsError):
            return StorageError(
                f"no AWS credentials found for {self.uri}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, or pass credentials in s3 options"
            )
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchBucket"}:
                return StorageError(
                    f"S3 bucket {self.bucket!r} does not exist: create it or fix the "
                    f"address {self.uri!r}"
                )
            if code in {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                return StorageError(
                    f"S3 refused the credentials for {self.uri} while trying to {action} "
                    f"({code}): check the access key, secret and bucket policy"
                )
        return StorageError(f"S3 error while trying to {action} at {self.uri}: {e}")

    def _check_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise self._explain(e, "open the bucket") from e

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) in {"404", "NoSuchKey"}:
                return False
            raise self._explain(e, f"look up {key}") from e
        except Exception as e:
            raise self._explain(e, f"look up {key}") from e

    def _upload(self, src: Path, key: str) -> None:
        try:
            # S3 keeps the sha256 (whole-object for single-part uploads), so a later check
            # of an existing blob needs a HEAD, not a download.
            self.client.upload_file(
                str(src), self.bucket, self._key(key), ExtraArgs={"ChecksumAlgorithm": "SHA256"}
            )
        except Exception as e:
            raise self._explain(e, f"upload {key}") from e

    def _intact(self, key: str, hexdigest: str, size: int) -> bool:
        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED"
            )
        except Exception as e:
            raise self._explain(e, f"check {key}") from e
        if int(head.get("ContentLength", -1)) != size:
            return False
        stored = head.get("ChecksumSHA256")
        if (
            stored
            and "-" not in str(stored)
            and head.get("ChecksumType", "FULL_OBJECT") != ("COMPOSITE")
        ):
            return bool(base64.b64decode(stored).hex() == hexdigest)
        # No whole-object checksum (a multipart upload, or written by another tool): read it.
        with staging() as tmp:
            copy = tmp / "blob"
            self._download(key, copy)
            return sha256_file(copy) == hexdigest

    def _delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            raise self._explain(e, f"delete {key}") from e

    def _listing(self) -> dict[str, float]:
        out = {}
        now = time.time()
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key("blobs/sha256/")
            )
            for page in pages:
                for item in page.get("Contents", []):
                    age = now - item["LastModified"].timestamp()
                    out[str(item["Key"]).rsplit("/", 1)[-1]] = age
        except Exception as e:
            raise self._explain(e, "list blobs") from e
        return out

    def _download(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(dest))
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey"}:
                raise ArtifactMissing(
                    f"artifact blob {key!r} is missing from {self.uri}; restore it or "
                    "register the model again"
                ) from e
            raise self._explain(e, f"download {key}") from e
        except Exception as e:
            raise self._explain(e, f"download {key}") from e


def upload(
    files: dict[str, Path], uri: str, client_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """Copy each local file to ``<uri>/<key>``; returns the addresses, in order.

    Raises :class:`StorageError` saying what to fix (bucket, credentials, endpoint).
    """
    store = S3Store(uri, client_kwargs)
    for key, path in files.items():
        store._upload(path, key)
    return [f"{store.uri}/{key}" for key in files]


def download(uri: str, dest: Path, client_kwargs: dict[str, Any] | None = None) -> Path:
    """Copy the object at ``s3://bucket/key`` to the local file ``dest``."""
    folder, _, name = uri.rstrip("/").rpartition("/")
    if not name or folder in ("s3:", "s3:/"):
        raise InvalidArgument(f"expected s3://bucket/key of a file, got {uri!r}")
    store = S3Store(folder, client_kwargs)
    try:
        store._download(name, dest)
    except ArtifactMissing as e:
        raise StorageError(f"nothing at {uri}: check the bucket and key") from e
    return dest
