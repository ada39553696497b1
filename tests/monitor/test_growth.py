"""A log that grows: spool ingest by stat, merged files, compaction, crashes, pruning."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mlops_nb as mnb
from mlops_nb.monitor import compact, logstore


@pytest.fixture
def mon(ws: mnb.Workspace) -> mnb.Monitor:
    ws.model("churn").register({"v": 1})
    ws.model("churn").register({"v": 2})
    return ws.monitor("churn")


def _spool(
    root: Path, files: int, rows: int = 5, version: int = 1, day: str = "2026-11-20"
) -> list[Path]:
    """Spool files as a model server writes them (logstore.write), ``rows`` rows each."""
    start = pd.Timestamp(day, tz="UTC")
    for i in range(files):
        stamps = pd.date_range(start + pd.Timedelta(minutes=i), periods=rows, freq="s")
        table = pa.table({
            "id": [f"v{version}-{i}-{j}" for j in range(rows)],
            "timestamp": pa.array(stamps.as_unit("us")),
            "prediction": pa.array(np.arange(rows) % 2),
            "feature.age": pa.array(np.arange(rows, dtype=np.float64) + i),
        })  # fmt: skip
        logstore.write(root, "churn", version, table)
    return sorted(root.rglob("*.parquet"))


def _log_files(ws: mnb.Workspace) -> list[Path]:
    return sorted(Path(ws.logs_root).rglob("*.parquet"))


def _rows(mon: mnb.Monitor) -> list[tuple[str, int, float]]:
    frame = mon.predictions()
    return sorted(zip(frame["id"], frame["version"], frame["feature.age"], strict=True))


def test_ingest_merges_spool_files_and_skips_known_ones_by_stat(
    tmp_path: Path, ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    spool = tmp_path / "spool"
    files = _spool(spool, 40) + _spool(spool, 3, version=2)
    out = mon.ingest(spool)
    assert out["added"].all() and len(out) == 43 and out["rows"].sum() == 215
    assert len(_log_files(ws)) == 2  # one per version and day, not one per spool file
    assert len(mon.predictions()) == 215 and len(mon.predictions(version=2)) == 15
    # A known file is not opened again: damaging it behind an unchanged size and mtime
    # goes unnoticed, which proves ingest never read it.
    victim = files[0]
    st = victim.stat()
    victim.write_bytes(b"x" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = mon.ingest(spool)
    assert not again["added"].any() and again["rows"].sum() == 215
    # A copy of an ingested file under a new name is recognised by its content.
    copy = files[1].with_name("copy.parquet")
    copy.write_bytes(files[1].read_bytes())
    third = mon.ingest(spool)
    assert not third["added"].any() and len(mon.predictions()) == 215


@pytest.mark.parametrize("after", ["delete", "archive"])
def test_ingest_removes_or_archives_what_it_added(
    tmp_path: Path, mon: mnb.Monitor, after: str
) -> None:
    spool = tmp_path / "spool"
    _spool(spool, 4)
    assert mon.ingest(spool, after=after)["added"].all()
    assert list(spool.rglob("*.parquet")) == (
        [] if after == "delete" else list((spool / ".archive").rglob("*.parquet"))
    )
    if after == "archive":
        assert len(list((spool / ".archive").rglob("*.parquet"))) == 4
    assert mon.ingest(spool).empty
    assert len(mon.predictions()) == 20


def test_a_bad_spool_file_adds_nothing_and_keeps_the_spool(
    tmp_path: Path, ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    spool = tmp_path / "spool"
    files = _spool(spool, 3)
    (files[0].parent / "zz.parquet").write_bytes(b"not parquet")
    with pytest.raises(mnb.InvalidArgument, match="not a readable Parquet file"):
        mon.ingest(spool, after="delete")
    assert mon.predictions().empty and _log_files(ws) == []
    assert all(f.exists() for f in files)
    bad = pa.table({"id": ["a"], "timestamp": pa.array(pd.DatetimeIndex(["2026-11-20"], tz="UTC").as_unit("us")),
                    "feature.age": ["old"]})  # fmt: skip
    (files[0].parent / "zz.parquet").unlink()
    pq.write_table(bad, files[0].parent / "zz.parquet")
    mon.log(pd.DataFrame({"age": [1.0]}), [1], version=1)
    with pytest.raises(mnb.InvalidArgument, match="'age' was logged as number"):
        mon.ingest(spool, after="delete")
    assert len(mon.predictions()) == 1


def test_log_labels_ingests_the_workspace_spool_first(ws: mnb.Workspace, mon: mnb.Monitor) -> None:
    _spool(ws.spool_root, 2)
    assert mon.log_labels(["v1-0-0", "v1-1-4"], [1, 0]) == 2
    labels = mon.predictions().set_index("id")["label"]
    assert labels["v1-0-0"] == "1" and labels["v1-1-4"] == "0"
    with pytest.raises(mnb.InvalidArgument, match="ingest the spool that holds them"):
        mon.log_labels(["ghost"], [1])


def test_one_log_call_over_3000_days_is_one_file_and_windows_prune_files(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    stamps = pd.date_range("2018-01-01", periods=3000, freq="D", tz="UTC")
    mon.log(
        pd.DataFrame({"age": np.arange(3000.0)}), np.arange(3000) % 2, version=1, timestamps=stamps
    )
    assert len(_log_files(ws)) == 1
    assert len(mon.predictions(("2020-01-01", "2020-01-11"))) == 10
    now = pd.Timestamp.now(tz="UTC")
    mon.log(pd.DataFrame({"age": [1.0]}), [1], version=1, timestamps=[now])
    selected = mon.window_sql("last 24h")
    assert selected is not None
    # Only the file that can hold rows of the last day is read.
    assert selected[0].count(".parquet'") == 1


def test_large_calls_are_written_in_chunks_all_or_nothing(
    ws: mnb.Workspace, mon: mnb.Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logstore, "CHUNK_ROWS", 1000)
    mon.log(pd.DataFrame({"age": np.arange(2500.0)}), np.zeros(2500, dtype=int), version=1)
    assert sorted(mon.files()["rows"]) == [500, 1000, 1000]
    plan = pd.Series([1] * 2000 + ["x"] * 500, dtype=object)  # the last chunk's kind differs
    with pytest.raises(mnb.InvalidArgument, match="'plan' was logged as number"):
        mon.log(
            pd.DataFrame({"age": np.arange(2500.0), "plan": plan}),
            np.zeros(2500, dtype=int),
            version=1,
        )
    assert len(_log_files(ws)) == 3 and len(mon.predictions()) == 2500
    # The refused call's chunks were written before the check refused one: none is left,
    # staged or placed.
    assert sorted(p for p in Path(ws.logs_root).rglob("*") if p.is_file()) == _log_files(ws)


def _small_logs(mon: mnb.Monitor, calls: int) -> None:
    for i in range(calls):
        mon.log(pd.DataFrame({"age": [float(i), i + 0.5]}), [i % 2, 1], version=1 + i % 2,
                timestamps=["2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z"])  # fmt: skip


def test_compaction_merges_small_files_and_can_run_again(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    _small_logs(mon, 12)
    before = _rows(mon)
    assert len(_log_files(ws)) == 12
    done = mon.compact()
    assert (done.partitions, done.files_before, done.files_after) == (2, 12, 2)
    assert repr(done) == "<Compaction 2 partitions: 12 files -> 2, 0 leftovers removed>"
    assert len(_log_files(ws)) == 2 and _rows(mon) == before
    assert mon.compact().files_before == 0 and _rows(mon) == before


def test_log_compacts_a_crowded_day_on_its_own(ws: mnb.Workspace, mon: mnb.Monitor) -> None:
    for i in range(compact.AUTO_FILES + 3):
        mon.log(
            pd.DataFrame({"age": [float(i)]}), [1], version=1, timestamps=["2026-11-20T10:00:00Z"]
        )
    assert len(_log_files(ws)) < compact.AUTO_FILES
    assert len(mon.predictions()) == compact.AUTO_FILES + 3


def test_a_failure_between_write_and_swap_changes_nothing(
    ws: mnb.Workspace, mon: mnb.Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _small_logs(mon, 6)
    before, files = _rows(mon), _log_files(ws)

    def fail(stage: str) -> None:
        if stage == "written":
            raise OSError("disk full")

    monkeypatch.setattr(compact, "_hook", fail)
    with pytest.raises(OSError, match="disk full"):
        mon.compact()
    assert _log_files(ws) == files and _rows(mon) == before


@pytest.mark.parametrize("stage", ["written", "swapped"])
def test_a_crash_mid_compaction_loses_and_duplicates_nothing(
    ws: mnb.Workspace, mon: mnb.Monitor, stage: str
) -> None:
    _small_logs(mon, 6)
    before = _rows(mon)
    ws.close()
    script = textwrap.dedent(f"""
        import os, mlops_nb as mnb
        from mlops_nb.monitor import compact
        compact._hook = lambda stage: os._exit(9) if stage == {stage!r} else None
        mnb.open({str(ws._store.path)!r}).monitor("churn").compact()
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=120, check=False)
    assert done.returncode == 9
    again = mnb.open(ws._store.path)
    try:
        mon2 = again.monitor("churn")
        assert _rows(mon2) == before  # readers see each row once at every moment
        result = mon2.compact(sweep_after=0)
        assert result.swept > 0
        assert _rows(mon2) == before
        listed = set(mon2.files()["path"])
        assert {str(p) for p in _log_files(again)} == listed
    finally:
        again.close()
