"""Integrity of stored artifacts: local folder and S3 (moto's server on 127.0.0.1)."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import boto3
import pytest

import mlops_nb as mnb
from mlops_nb.artifacts import open_store


def _blob(ws: mnb.Workspace, v: mnb.ModelVersion, role: str = "model") -> Path:
    entry = next(f for f in v.info()["manifest"]["files"] if f["role"] == role)
    root = Path(ws.artifacts.uri)
    return root / "blobs" / "sha256" / entry["sha256"][:2] / entry["sha256"]


def _overwrite(path: Path, data: bytes) -> None:
    os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
    path.write_bytes(data)


def test_blobs_are_content_addressed_and_read_only(ws: mnb.Workspace) -> None:
    a = ws.model("m").register({"same": True})
    b = ws.model("n").register({"same": True})
    assert _blob(ws, a) == _blob(ws, b)  # stored once
    assert a.digest == b.digest
    assert oct(_blob(ws, a).stat().st_mode & 0o777) == "0o444"
    assert Path(ws.artifacts.uri).name == "mlops-artifacts"


@pytest.mark.parametrize("damage", ["tamper", "truncate", "delete"])
def test_damaged_artifact_loads_nothing(ws: mnb.Workspace, damage: str) -> None:
    v = ws.model("m").register({"weights": list(range(1000))})
    blob = _blob(ws, v)
    original = blob.read_bytes()
    if damage == "tamper":
        _overwrite(blob, original[:-1] + bytes([original[-1] ^ 1]))
        error, match = mnb.IntegrityError, "corrupt"
    elif damage == "truncate":
        _overwrite(blob, original[: len(original) // 2])
        error, match = mnb.IntegrityError, "truncated"
    else:
        blob.unlink()
        error, match = mnb.ArtifactMissing, "missing"
    with pytest.raises(error, match=match):
        ws.model("m").version(1).load()


def test_altered_manifest_row_is_caught(ws: mnb.Workspace) -> None:
    v = ws.model("m").register({"w": 1})
    ws._store.write(
        lambda con: con.execute(
            'UPDATE versions SET manifest = json_merge_patch(manifest, \'{"flavor": "files"}\')'
        )
    )
    with pytest.raises(mnb.IntegrityError, match="manifest does not match"):
        v.refresh().load()


def test_reference_data_is_verified_too(ws: mnb.Workspace) -> None:
    import pandas as pd

    v = ws.model("m").register({"w": 1}, reference_data=pd.DataFrame({"x": range(100)}))
    _overwrite(_blob(ws, v, "reference"), b"PAR1 not really")
    with pytest.raises(mnb.IntegrityError):
        v.reference_data()
    assert v.load() == {"w": 1}  # the model files are intact


def _bucket(endpoint: str) -> str:
    name = f"models-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


@pytest.mark.usefixtures("s3_env")
def test_s3_round_trip_and_integrity(tmp_path: Path, s3_endpoint: str) -> None:
    bucket = _bucket(s3_endpoint)
    opts = {"endpoint_url": s3_endpoint}
    with mnb.open(tmp_path / "ws.duckdb", artifacts=f"s3://{bucket}/team/a", s3_options=opts) as ws:
        v = ws.model("m").register({"w": [1, 2, 3]}, metrics={"accuracy": 0.9})
        assert v.info()["artifact_uri"] == f"s3://{bucket}/team/a"
        assert v.load() == {"w": [1, 2, 3]}
        s3 = boto3.client("s3", endpoint_url=s3_endpoint)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert all(k.startswith("team/a/blobs/sha256/") for k in keys)
        assert len(keys) == 2  # model.pkl and the manifest
        entry = v.info()["manifest"]["files"][0]
        key = f"team/a/blobs/sha256/{entry['sha256'][:2]}/{entry['sha256']}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"evil")
        with pytest.raises(mnb.IntegrityError):
            ws.model("m").version(1).load()
        s3.delete_object(Bucket=bucket, Key=key)
        with pytest.raises(mnb.ArtifactMissing):
            ws.model("m").version(1).load()


@pytest.mark.usefixtures("s3_env")
def test_s3_missing_bucket_is_clear(tmp_path: Path, s3_endpoint: str) -> None:
    with pytest.raises(mnb.StorageError, match="bucket 'no-such-bucket' does not exist"):
        mnb.open(
            tmp_path / "ws.duckdb",
            artifacts="s3://no-such-bucket/x",
            s3_options={"endpoint_url": s3_endpoint},
        )


@pytest.mark.usefixtures("s3_env")
def test_s3_refused_credentials_are_clear(s3_strict_endpoint: str) -> None:
    with pytest.raises(mnb.StorageError, match="refused the credentials"):
        open_store("s3://bucket/x", {"endpoint_url": s3_strict_endpoint})


def test_unsupported_uri(tmp_path: Path) -> None:
    with pytest.raises(mnb.InvalidArgument, match="s3://bucket/prefix"):
        mnb.open(tmp_path / "ws.duckdb", artifacts="gs://bucket/x")
