"""Payload logging: what the server spools is what ``Monitor.ingest`` reads back.

The spool must never fail a request: a broken spool or a full buffer drops rows, and
/metrics counts them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

import mlops_nb as mnb
from mlops_nb.serve.spec import ServeSpec

from .conftest import Fleet, Server, churn_model, register_doubler, sample


def spool_rows(spool: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in spool.rglob("*.parquet"))


def payload_counts(server: Server) -> tuple[float, float]:
    """(rows written, rows dropped for any reason)."""
    families = server.metrics()
    dropped = sum(
        s.value for s in families["mlops_payloads_dropped"].samples
        if s.name == "mlops_payloads_dropped"
    )  # fmt: skip
    return sample(families, "mlops_payloads_logged", "mlops_payloads_logged"), dropped


def wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(0.05)


def one_row(
    X: pd.DataFrame, i: int, request_id: str | None = None, age_as: str = "INT64"
) -> dict[str, Any]:
    row = X.iloc[i]
    age = float(row["age"]) if age_as == "FP64" else int(row["age"])
    body: dict[str, Any] = {
        "inputs": [
            {"name": "age", "shape": [1], "datatype": age_as, "data": [age]},
            {"name": "plan", "shape": [1], "datatype": "BYTES", "data": [row["plan"]]},
            {"name": "score", "shape": [1], "datatype": "FP64", "data": [float(row["score"])]},
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


@pytest.fixture
def churn_v(ws: mnb.Workspace) -> tuple[mnb.ModelVersion, Any, pd.DataFrame]:
    pipe, X = churn_model()
    return ws.model("churn").register(pipe, input_example=X[:5]), pipe, X


def test_spool_after_shutdown_holds_every_prediction(
    ws: mnb.Workspace, churn_v: Any, start: Any, tmp_path: Path
) -> None:
    version, pipe, X = churn_v
    spool = tmp_path / "spool"
    # Neither the row count nor the timer flushes: only the graceful shutdown does.
    server = start(ServeSpec.of(version, spool=str(spool), flush_rows=10_000, flush_seconds=600))
    sent: dict[str, int] = {}  # prediction id -> row of X
    for i in range(5):
        # A client may send whole numbers as FP64: the log still types age as int64.
        age_as = "FP64" if i == 4 else "INT64"
        r = server.infer(one_row(X, i, request_id=f"req-{i}" if i % 2 else None, age_as=age_as))
        assert r.status_code == 200, r.text
        (pid,) = r.json()["parameters"]["prediction_ids"]
        sent[pid] = i
    records = X.iloc[5:9].to_dict(orient="records")
    records[0]["age"] = float(records[0]["age"])
    r = server.infer(records)  # one request, four rows
    sent.update(zip(r.json()["parameters"]["prediction_ids"], range(5, 9), strict=True))
    assert len(sent) == 9  # generated ids, unique even where a request id was given
    # Refused, and logged as a request error (no features, no prediction).
    assert server.infer({"inputs": []}).status_code == 400
    assert payload_counts(server) == (0.0, 0.0)
    assert spool_rows(spool) == 0

    server.stop()

    assert spool_rows(spool) == 10
    files = list(spool.rglob("*.parquet"))
    assert all(f.relative_to(spool).parts[:2] == ("model=churn", "version=1") for f in files)
    assert all(f.parent.name.startswith("date=") for f in files)
    schema = pq.read_schema(files[0])
    assert {n: str(schema.field(n).type) for n in schema.names} == {
        "id": "string",
        "timestamp": "timestamp[us, tz=UTC]",
        "prediction": "string",
        "confidence": "double",
        "latency_ms": "double",
        "error": "string",
        "feature.age": "int64",
        "feature.plan": "string",
        "feature.score": "double",
    }
    added = ws.monitor("churn").ingest(spool)
    assert added["added"].all() and added["rows"].sum() == 10
    everything = ws.monitor("churn").predictions().set_index("id")
    (refused,) = everything.index[everything["error"].notna()]
    assert everything.loc[refused, "error"].startswith("request: ")
    logged = everything.drop(index=refused)
    assert sorted(logged.index) == sorted(sent)
    rows = [sent[pid] for pid in logged.index]
    expected = X.iloc[rows]
    assert logged["prediction"].tolist() == pipe.predict(expected).tolist()
    np.testing.assert_allclose(
        logged["confidence"].to_numpy(dtype=float), pipe.predict_proba(expected).max(axis=1)
    )
    assert logged["feature.age"].tolist() == expected["age"].tolist()
    assert logged["feature.plan"].tolist() == expected["plan"].tolist()
    np.testing.assert_allclose(logged["feature.score"], expected["score"])
    assert (logged["version"] == 1).all()
    assert (logged["latency_ms"] > 0).all()
    assert ws.monitor("churn").ingest(spool)["added"].sum() == 0  # ingesting twice adds nothing


def test_time_flush_of_a_2d_input_logs_one_feature_per_column(fleet: Fleet, tmp_path: Path) -> None:
    """The shared iris server flushes every 0.2 s; its 2-D tensor becomes feature.x0..x3."""
    X = fleet.iris_X[[3, 77, 140]]
    r = fleet.iris.infer(
        {
            "inputs": [
                {"name": "input", "shape": [3, 4], "datatype": "FP64", "data": X.ravel().tolist()}
            ]
        }
    )
    assert r.status_code == 200, r.text
    ids = r.json()["parameters"]["prediction_ids"]
    mon = fleet.ws.monitor("iris")

    def flushed() -> bool:
        if not fleet.spool.exists():
            return False
        mon.ingest(fleet.spool)  # ingesting a file twice adds nothing
        return set(ids) <= set(mon.predictions()["id"])

    wait_for(flushed)
    logged = mon.predictions().set_index("id").loc[ids]
    assert logged["prediction"].tolist() == fleet.iris_model.predict(X).tolist()
    for k in range(4):
        np.testing.assert_allclose(logged[f"feature.x{k}"], X[:, k])


def test_broken_spool_never_fails_a_request_and_loses_nothing(
    ws: mnb.Workspace, churn_v: Any, start: Any, tmp_path: Path
) -> None:
    """A spool that cannot be written is retried with backoff; once it can, every row lands."""
    version, _, X = churn_v
    spool = tmp_path / "not-a-folder"
    spool.write_text("a file where the spool folder should be")
    server = start(
        ServeSpec.of(version, spool=str(spool), flush_seconds=0.1, spool_retry_max_s=1.0)
    )
    ids = []
    for i in range(6):
        r = server.infer(one_row(X, i))
        assert r.status_code == 200
        ids.extend(r.json()["parameters"]["prediction_ids"])

    def stats() -> dict[str, Any]:
        return dict(server.client.get("/v2/health/stats").json()["payload"])

    wait_for(lambda: stats()["failing"])
    assert stats()["pending"] == 6 and stats()["dropped"] == {}
    assert "NotADirectoryError" in str(stats()["last_error"]) or "FileExistsError" in str(
        stats()["last_error"]
    )
    assert payload_counts(server) == (0.0, 0.0)
    # Without log_required the replica stays ready while the spool is down.
    assert server.client.get("/v2/health/ready").status_code == 200

    spool.unlink()  # the spool comes back
    wait_for(lambda: stats()["written"] == 6, timeout=60)
    assert stats() == {"written": 6, "pending": 0, "dropped": {}, "failing": False,
                       "last_error": stats()["last_error"]}  # fmt: skip
    server.stop()
    ws.monitor("churn").ingest(spool)
    assert sorted(ws.monitor("churn").predictions()["id"]) == sorted(ids)


def test_full_buffer_drops_and_counts(
    ws: mnb.Workspace, churn_v: Any, start: Any, tmp_path: Path
) -> None:
    version, _, X = churn_v
    spool = tmp_path / "spool"
    server = start(
        ServeSpec.of(
            version, spool=str(spool), max_buffer_rows=3, flush_rows=10_000, flush_seconds=600
        )
    )
    ids = []
    for i in range(5):
        r = server.infer(one_row(X, i))
        assert r.status_code == 200
        ids.extend(r.json()["parameters"]["prediction_ids"])
    # A four-row request does not fit in what is left either.
    assert server.infer(X.iloc[:4].to_dict(orient="records")).status_code == 200
    assert payload_counts(server) == (0.0, 6.0)
    dropped = server.client.get("/v2/health/stats").json()["payload"]["dropped"]
    assert dropped == {"buffer_full": 6}
    families = server.metrics()
    assert sample(families, "mlops_payloads_dropped", "mlops_payloads_dropped",
                  reason="buffer_full") == 6  # fmt: skip
    server.stop()
    assert spool_rows(spool) == 3
    ws.monitor("churn").ingest(spool)
    assert sorted(ws.monitor("churn").predictions()["id"]) == sorted(ids[:3])


def test_shutdown_answers_and_logs_the_requests_in_flight(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    """SIGTERM while requests wait for a slow model: each is answered, and each is logged."""
    version = register_doubler(ws, delay=0.3)
    spool = tmp_path / "spool"
    server = start(ServeSpec.of(version, spool=str(spool), flush_seconds=600))
    n = 24

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n + 1)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            calls = [
                asyncio.create_task(client.post("/v2/models/doubler/infer", json=[{"x": float(i)}]))
                for i in range(n)
            ]
            deadline = time.monotonic() + 10
            while True:  # until every request is inside the server
                families = {
                    m.name: m
                    for m in text_string_to_metric_families((await client.get("/metrics")).text)
                }
                inflight = sample(families, "mlops_inflight_requests", "mlops_inflight_requests")
                if inflight == n or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            assert inflight == n
            server.proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(run())
    ids = []
    for i, r in enumerate(responses):
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"][0] == 2.0 * i
        ids.extend(r.json()["parameters"]["prediction_ids"])
    assert server.proc.wait(timeout=20) in (0, -signal.SIGTERM)
    assert spool_rows(spool) == n
    ws.monitor("doubler").ingest(spool)
    logged = ws.monitor("doubler").predictions().set_index("id").loc[ids]
    assert logged["feature.x"].tolist() == [float(i) for i in range(n)]
    assert logged["prediction"].tolist() == [2.0 * i for i in range(n)]


def test_failed_requests_are_logged_for_the_error_rate(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    version = register_doubler(ws, delay=0.0)
    spool = tmp_path / "spool"
    server = start(ServeSpec.of(version, spool=str(spool), flush_seconds=600))
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    bad = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [-1.0]}]}
    for payload in (body, body, body, bad):
        server.infer(payload)
    assert server.infer(bad).status_code == 500
    server.stop()
    table = pq.read_table(next(spool.rglob("*.parquet")))
    errors = table.column("error").to_pylist()
    assert sum(e is not None for e in errors) == 2
    assert all(e.startswith("model: ") and "must not be negative" in e for e in errors if e)
    mon = ws.monitor("doubler")
    mon.ingest(spool)
    assert mon.metrics("1d")["error_rate"].tolist() == [pytest.approx(0.4)]


def test_a_write_that_failed_part_way_is_retried_without_copies(tmp_path: Path) -> None:
    """Rows spanning two UTC days make two files; the second day's folder cannot be made
    at first. The retry writes both again under the same names: each row once."""
    from mlops_nb.monitor import logstore
    from mlops_nb.serve.payload import PayloadLog
    from mlops_nb.serve.spool import LocalSpool

    root = tmp_path / "spool"
    day = 86_400_000_000  # microseconds
    before, after = 20_000 * day + day - 1_000_000, 20_001 * day + 1_000_000
    blocker = logstore.partition(root, "m", 1, "2024-10-05")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the second day's folder should be")
    log = PayloadLog(LocalSpool(root), "m", 1, flush_seconds=600, retry_max=0.5)
    try:
        for i, ts in enumerate((before, before, after)):
            assert log.add({"id": [f"r{i}"], "timestamp": ts, "feature.x": [float(i)]}, 1)
        assert log.flush() is False  # the first day's file is written, the second is not
        assert len(list(root.rglob("*.parquet"))) == 1 and log.pending == 3
        blocker.unlink()
        assert log.flush() is True
    finally:
        log.close()
    files = sorted(root.rglob("*.parquet"))
    assert [f.parent.name for f in files] == ["date=2024-10-04", "date=2024-10-05"]
    ids = sorted(i for f in files for i in pq.read_table(f).column("id").to_pylist())
    assert ids == ["r0", "r1", "r2"] and log.logged == 3 and dict(log.dropped) == {}


def test_a_large_request_is_answered_and_logged_row_by_row(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    """20,000 rows: parsed and answered through the helper process, ids made lazily."""
    spool = tmp_path / "spool"
    server = start(ServeSpec.of(register_doubler(ws, delay=0.0), spool=str(spool),
                                flush_seconds=600))  # fmt: skip
    n = 20_000
    data = [i + 0.5 for i in range(n)]  # (the doubler leaves 999 out)
    r = server.infer({"inputs": [{"name": "x", "shape": [n], "datatype": "FP64", "data": data}]})
    assert r.status_code == 200, r.text[:300]
    answer = r.json()
    ids = answer["parameters"]["prediction_ids"]
    assert len(ids) == len(set(ids)) == n and ids[0].endswith("-0") and ids[-1].endswith("-19999")
    assert answer["outputs"][0]["data"][0::2] == [2 * x for x in data]
    server.stop()
    table = pq.read_table(next(spool.rglob("*.parquet")))
    assert table.column("id").to_pylist() == ids
    assert table.column("feature.x").to_pylist() == data
