"""The workspace file and its artifact folder under damage: foreign, missing, deleted,
truncated or full files, killed and failed registrations, damaged blobs, nested reads."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import boto3
import duckdb
import pytest

import mlops_nb as mnb


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _blobs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "blobs").rglob("*") if p.is_file())


def _wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# -- foreign, missing and mistyped files -------------------------------------------------


def test_foreign_duckdb_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE models (id INTEGER, title VARCHAR)")
    con.execute("INSERT INTO models VALUES (1, 'theirs')")
    con.close()
    before = _sha(path)
    with pytest.raises(mnb.NotAWorkspace, match=r"another application.*main\.models"):
        mnb.open(path)
    assert _sha(path) == before
    con = duckdb.connect(str(path), read_only=True)
    tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    con.close()
    assert tables == [("models",)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.duckdb"]  # no folders


def test_create_false_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(mnb.WorkspaceMissing, match="create=True") as err:
        mnb.open(tmp_path / "mlosp.duckdb", create=False)
    assert isinstance(err.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []


def test_a_new_workspace_is_announced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mlops_nb"):
        mnb.open(tmp_path / "new.duckdb").close()
    assert "created a new workspace" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mlops_nb"):
        mnb.open(tmp_path / "new.duckdb", create=False).close()  # exists: opens
        mnb.open(tmp_path / "quiet.duckdb", create=True).close()
    assert caplog.text == ""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mlops-nb")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=120,
        env={**os.environ, "MLOPS_NB_USER": "cli"},
    )  # fmt: skip


def test_cli_refuses_a_mistyped_workspace(tmp_path: Path) -> None:
    out = _cli("-w", "mlosp.duckdb", "models", cwd=tmp_path)
    assert out.returncode == 1
    assert "no workspace at" in out.stderr and "--create" in out.stderr
    assert list(tmp_path.iterdir()) == []
    out = _cli("--create", "-w", "mlops.duckdb", "models", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "mlops.duckdb").is_file()


def test_deleted_file_is_reported_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "gone.duckdb"
    ws = mnb.open(path)
    ws.model("m").register({"v": 1})
    path.unlink()  # while the connection lingers
    with pytest.raises(mnb.WorkspaceMissing, match="deleted or moved while open"):
        ws.model("m").version(1).stage  # noqa: B018
    time.sleep(0.3)  # past linger: the next operation would open the file again
    with pytest.raises(mnb.WorkspaceMissing, match="deleted or moved while open"):
        ws.models()
    assert not path.exists()
    ws.close()


def _damaged_copy(tmp_path: Path, how: str) -> Path:
    path = tmp_path / "good.duckdb"
    with mnb.open(path) as ws:
        for i in range(3):
            ws.model("m").register({"v": i}, metrics={"acc": 0.5})
    bad = tmp_path / f"{how}.duckdb"
    shutil.copy(path, bad)
    size = bad.stat().st_size
    with open(bad, "r+b") as fh:
        if how == "truncated":
            fh.truncate(size // 2)
        else:
            fh.seek(8192)
            fh.write(os.urandom(16384))
    return bad


@pytest.mark.parametrize("how", ["truncated", "damaged"])
def test_damaged_workspace_is_a_clear_error(tmp_path: Path, how: str) -> None:
    bad = _damaged_copy(tmp_path, how)
    with pytest.raises(mnb.WorkspaceCorrupt, match="restore it from a backup"), mnb.open(bad) as ws:
        ws.search()


_FULL = textwrap.dedent(
    """
    import os, resource, signal, sys
    import mlops_nb as mnb
    from mlops_nb.errors import WorkspaceFull
    path = sys.argv[1]
    ws = mnb.open(path, linger=0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Files may not grow past the database's size: the WAL of a big row cannot be written.
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path), hard))
    for obj in ({"big": 2}, {"v": 1}):  # new bytes, then the bytes of v1
        try:
            ws.model("m").register(obj, description="x" * 3_000_000)
        except WorkspaceFull as e:
            print("full:", e)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    print("versions:", len(ws.model("m").versions()))
    ws.close()
    """
)


def test_disk_full_is_a_clear_error_and_keeps_nothing(tmp_path: Path) -> None:
    # A full disk, made real with a file-size limit in a child process (no tmpfs mount here).
    path = tmp_path / "full.duckdb"
    with mnb.open(path) as ws:
        ws.model("m").register({"v": 1})
        blobs = _blobs(Path(ws.artifacts.uri))
    out = subprocess.run(
        [sys.executable, "-c", _FULL, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("full: writing to workspace") == 2 and "free space" in out.stdout
    assert "versions: 1" in out.stdout
    with mnb.open(path) as ws:
        assert ws.model("m").versions()["version"].tolist() == [1]
        # The failed versions' new blobs went; those v1 uses stayed.
        assert _blobs(Path(ws.artifacts.uri)) == blobs
        assert ws.model("m").version(1).load() == {"v": 1}


# -- killed and failed registrations -----------------------------------------------------

_SLOW_REGISTER = textwrap.dedent(
    """
    import sys
    import mlops_nb as mnb
    ws = mnb.open(sys.argv[1])
    print("open", flush=True)
    ws.model("big").register(sys.argv[2])
    """
)


def test_killed_register_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(staging))
    path = tmp_path / "ws.duckdb"
    mnb.open(path).close()
    big = tmp_path / "weights.bin"
    with open(big, "wb") as fh:
        for _ in range(64):
            fh.write(os.urandom(1 << 20))
    incoming = tmp_path / "ws-artifacts" / ".incoming"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_REGISTER, str(path), str(big)],
        env={**os.environ, "TMPDIR": str(staging)},
        stdout=subprocess.DEVNULL,
    )
    try:
        # Killed while it copies a blob into the store.
        _wait_for(lambda: any(incoming.iterdir()) or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("the registration finished before it could be killed")
    assert any(incoming.iterdir())
    with mnb.open(path) as ws:
        assert list(incoming.iterdir()) == []
        assert not any(p.name.startswith("mlops-nb-stage-") for p in staging.iterdir())
        assert not ws.model("big").exists()


def test_leftovers_of_live_processes_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "ws.duckdb"
    mnb.open(path).close()
    incoming = tmp_path / "ws-artifacts" / ".incoming"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        host = socket.gethostname().replace("-", "_")
        alive = incoming / f"{host}-{sleeper.pid}-abc"
        alive.write_bytes(b"in flight")
        other_host = incoming / "otherhost-1-abc"
        other_host.write_bytes(b"maybe in flight")
        mnb.open(path).close()
        assert alive.exists() and other_host.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    mnb.open(path).close()
    assert not alive.exists() and other_host.exists()


# -- damaged blobs are repaired by registering again -------------------------------------


def test_damaged_local_blob_is_repaired(ws: mnb.Workspace) -> None:
    v = ws.model("m").register({"weights": list(range(100))})
    entry = v.info()["manifest"]["files"][0]
    blob = Path(ws.artifacts.uri) / "blobs" / "sha256" / entry["sha256"][:2] / entry["sha256"]
    os.chmod(blob, stat.S_IRUSR | stat.S_IWUSR)
    blob.write_bytes(b"rot")
    with pytest.raises(mnb.IntegrityError):
        v.load()
    again = ws.model("m").register({"weights": list(range(100))})
    assert again.digest == v.digest
    assert v.load() == {"weights": list(range(100))}  # the earlier version too
    assert oct(blob.stat().st_mode & 0o777) == "0o444"


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("damage", ["other bytes", "same size"])
def test_damaged_s3_blob_is_repaired(tmp_path: Path, s3_endpoint: str, damage: str) -> None:
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    opts = {"endpoint_url": s3_endpoint}
    with mnb.open(tmp_path / "ws.duckdb", artifacts=f"s3://{bucket}/p", s3_options=opts) as ws:
        v = ws.model("m").register({"w": [1, 2, 3]})
        entry = v.info()["manifest"]["files"][0]
        key = f"p/blobs/sha256/{entry['sha256'][:2]}/{entry['sha256']}"
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        body = b"evil" if damage == "other bytes" else bytes(len(original))
        s3.put_object(Bucket=bucket, Key=key, Body=body)  # written by another tool
        with pytest.raises(mnb.IntegrityError):
            v.load()
        ws.model("m").register({"w": [1, 2, 3]})
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == original
        assert v.load() == {"w": [1, 2, 3]}


# -- a read nested in a write while another process waits --------------------------------

_WAITER = textwrap.dedent(
    """
    import sys
    import mlops_nb as mnb
    ws = mnb.open(sys.argv[1], busy_timeout=120, linger=0)
    print("waiting", flush=True)
    ws.model("other").register({"v": 1})
    print("done", flush=True)
    """
)


def test_nested_read_keeps_the_transaction(tmp_path: Path) -> None:
    path = tmp_path / "ws.duckdb"
    ws = mnb.open(path, linger=0)
    ws._store.max_hold = 0.05
    ws.model("m").register({"v": 1})
    waiter = None
    seen = []

    def write(con: duckdb.DuckDBPyConnection) -> None:
        nonlocal waiter
        con.execute("UPDATE versions SET description = 'first half' WHERE model = 'm'")
        waiter = subprocess.Popen(
            [sys.executable, "-c", _WAITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        marker = Path(f"{path}.waiting")
        _wait_for(marker.exists, timeout=120)  # the other process is knocking
        time.sleep(0.1)  # held past max_hold
        seen.append(ws.model("m").version(1).stage)  # a read through the public API
        con.execute("UPDATE versions SET label = '1.0.0' WHERE model = 'm'")

    try:
        ws._store.write(write)
        assert waiter is not None and waiter.stdout is not None
        out, _ = waiter.communicate(timeout=120)
        assert waiter.returncode == 0 and "done" in out
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    v = ws.model("m").version(1)
    assert (seen, v.info()["description"], v.label) == (["development"], "first half", "1.0.0")
    assert ws.model("other").exists()
    ws.close()


_UPLOAD_THEN_DIE = textwrap.dedent(
    """
    import os, sys
    import mlops_nb as mnb
    ws = mnb.open(sys.argv[1])
    # Dies between storing the files and recording the version: the first write of the
    # registration is the one that records it.
    ws._store.write = lambda fn: os._exit(9)
    ws.model("m").register({"never": "recorded"})
    """
)


def test_blobs_of_a_killed_registration_can_be_removed(tmp_path: Path) -> None:
    path = tmp_path / "ws.duckdb"
    with mnb.open(path) as ws:
        v = ws.model("m").register({"kept": True})
        root = Path(ws.artifacts.uri)
        before = _blobs(root)
    out = subprocess.run([sys.executable, "-c", _UPLOAD_THEN_DIE, str(path)], timeout=120)
    assert out.returncode == 9
    with mnb.open(path) as ws:
        assert ws.model("m").versions()["version"].tolist() == [1]
        orphans = sorted(set(_blobs(root)) - set(before))
        assert len(orphans) == 2  # model.pkl and its manifest
        assert ws.remove_orphan_blobs() == []  # younger than an hour: may be in flight
        assert ws.remove_orphan_blobs(older_than=0, dry_run=True) == orphans
        assert _blobs(root) != before
        assert ws.remove_orphan_blobs(older_than=0) == orphans
        assert _blobs(root) == before
        assert ws.model("m").version(v.number).load() == {"kept": True}


def test_query_errors_are_not_storage_errors(ws: mnb.Workspace, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.parquet"
    with pytest.raises(duckdb.IOException):
        ws._store.read(lambda con: con.execute(f"SELECT * FROM read_parquet('{missing}')"))
    assert ws.models().empty  # the connection is still usable
