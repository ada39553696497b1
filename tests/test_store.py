"""The DuckDB file: processes racing, a held lock, bad files, schema migrations."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import mlops_nb as mnb
from mlops_nb import schema

_WORKER = textwrap.dedent(
    """
    import sys
    import mlops_nb as mnb
    path, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ws = mnb.open(path, busy_timeout=120)
    for i in range(count):
        ws.model("churn").register({"worker": worker, "i": i}, metrics={"w": float(worker)})
    ws.close()
    """
)


def test_processes_racing_get_consecutive_numbers(tmp_path: Path) -> None:
    path = tmp_path / "race.duckdb"
    mnb.open(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(w), "25"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    with mnb.open(path) as ws:
        frame = ws.model("churn").versions()
        assert sorted(frame["version"]) == list(range(1, 101))
        assert frame["w"].value_counts().to_dict() == {0.0: 25, 1.0: 25, 2.0: 25, 3.0: 25}
        loaded = {tuple(sorted(ws.model("churn").version(n).load().items())) for n in (1, 50, 100)}
        assert len(loaded) == 3
        assert (ws.audit()["action"] == "register").sum() == 100


def test_locked_file_raises_busy_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    with mnb.open(path) as ws:
        ws.model("m").register({"v": 1})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time\ncon = duckdb.connect({str(path)!r})\n"
            "print('held', flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(mnb.WorkspaceBusy, match="busy_timeout") as err:
            mnb.open(path, busy_timeout=0.5)
        assert isinstance(err.value, TimeoutError)
        assert 0.5 <= time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.communicate()
    with mnb.open(path) as ws:
        assert ws.model("m").versions()["version"].tolist() == [1]


def test_waiting_writer_gets_in_when_the_other_releases(tmp_path: Path) -> None:
    path = tmp_path / "turns.duckdb"
    mnb.open(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time\ncon = duckdb.connect({str(path)!r})\n"
            "print('held', flush=True)\ntime.sleep(1.0)\ncon.close()\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with mnb.open(path, busy_timeout=20) as ws:
            assert ws.model("m").register({"v": 1}).number == 1
    finally:
        holder.kill()
        holder.communicate()


def test_linger_releases_the_file(tmp_path: Path) -> None:
    path = tmp_path / "linger.duckdb"
    ws = mnb.open(path, linger=0.05)
    ws.model("m").register({"v": 1})
    time.sleep(0.5)
    # Another process can now open the file for writing.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import duckdb; duckdb.connect({str(path)!r}).close(); print('ok')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "ok", out.stderr
    assert ws.model("m").version(1).load() == {"v": 1}
    ws.close()


def test_not_a_duckdb_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.duckdb"
    bad.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(mnb.NotAWorkspace, match="not a DuckDB database"):
        mnb.open(bad)
    assert bad.read_text().startswith("these are my notes")
    with pytest.raises(mnb.NotAWorkspace, match="does not exist"):
        mnb.open(tmp_path / "no" / "such" / "dir" / "x.duckdb")
    with pytest.raises(mnb.InvalidArgument):
        mnb.open(42)  # type: ignore[arg-type]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    mnb.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(mnb.SchemaTooNew, match="pip install -U mlops-nb"):
        mnb.open(path)


def test_migration_from_schema_1(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    schema.migrate(con, str(path), target=1)  # a file as release 1 of the schema wrote it
    con.execute("INSERT INTO models VALUES ('churn', NULL, NULL, now(), 'old')")
    manifest = {"format": 1, "files": [], "flavor": "python"}
    for number, acc in ((1, 0.8), (2, 0.93)):
        con.execute(
            "INSERT INTO versions VALUES ('churn', ?, NULL, 'development', 'python', NULL, NULL, "
            "NULL, NULL, NULL, ?, '{}', '{}', [], NULL, NULL, '/nowhere', 'sha256:x', ?, now(), "
            "'old')",
            [number, json.dumps({"accuracy": acc}), json.dumps(manifest)],
        )
    assert schema.current_version(con) == 1
    con.close()
    with mnb.open(path) as ws:
        assert ws._store.read(schema.current_version) == schema.SCHEMA_VERSION
        assert ws.search(metrics="accuracy > 0.9")["version"].tolist() == [2]
        v = ws.model("churn").version(1).approve()
        assert v.approvals()["approver"].tolist() == ["tester"]


def test_failed_transaction_leaves_nothing(ws: mnb.Workspace) -> None:
    def half(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("INSERT INTO models (name, created_at, created_by) VALUES ('x', now(), 'a')")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ws._store.write(half)
    assert ws.models().empty
