"""The payload log loses nothing it answered: misfits, a required log, S3, redaction."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import mlops_nb as mnb
from mlops_nb.serve.spec import ServeSpec

from .conftest import Lenient, Quoting, churn_model, register_doubler, register_python
from .test_errors import assert_error
from .test_payload import one_row, spool_rows, wait_for


def tensor(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": [len(data)], "datatype": datatype, "data": data}]}


def test_an_odd_value_costs_no_row_its_log(ws: mnb.Workspace, start: Any, tmp_path: Path) -> None:
    """No signature: 50 numbers, one string, 50 numbers; all 101 rows land, typed."""
    version = register_python(ws, "loose", Lenient())
    assert version.signature is None
    spool = tmp_path / "spool"
    server = start(ServeSpec.of(version, spool=str(spool), flush_seconds=600))
    bodies = [tensor("x", "FP64", [float(i)]) for i in range(50)]
    bodies += [tensor("x", "BYTES", ["abc"])]
    bodies += [tensor("x", "FP64", [float(i)]) for i in range(50, 100)]
    for body in bodies:
        assert server.infer(body).status_code == 200
    server.stop()
    assert spool_rows(spool) == 101
    (file,) = spool.rglob("*.parquet")
    table = pq.read_table(file)
    assert str(table.schema.field("feature.x").type) == "double"
    misfits = [m for m in table.column("misfit").to_pylist() if m is not None]
    assert misfits == ['{"feature.x": "abc"}']
    values = table.column("feature.x").to_pylist()
    assert sorted(v for v in values if v is not None) == [float(i) for i in range(100)]
    mon = ws.monitor("loose")
    assert mon.ingest(spool)["rows"].sum() == 101


def test_log_required_makes_the_replica_not_ready_instead_of_dropping(
    churn_v: Any, start: Any, tmp_path: Path
) -> None:
    version, _, X = churn_v
    spool = tmp_path / "blocked"
    spool.write_text("a file where the spool folder should be")
    server = start(
        ServeSpec.of(version, spool=str(spool), flush_seconds=0.1, spool_retry_max_s=1.0, max_buffer_rows=3,
                     log_required=True)
    )  # fmt: skip
    assert server.infer(one_row(X, 0)).status_code == 200
    wait_for(lambda: server.client.get("/v2/health/ready").status_code == 503)
    assert "payload log is required" in server.client.get("/v2/health/ready").json()["error"]
    assert server.infer(one_row(X, 1)).status_code == 200
    assert server.infer(one_row(X, 2)).status_code == 200
    refused = server.infer(one_row(X, 3))  # would not fit in the buffer: not answered
    assert_error(refused, 503, "payload log is required")
    assert refused.headers["retry-after"] == "5"
    payload = server.client.get("/v2/health/stats").json()["payload"]
    assert (payload["pending"], payload["dropped"]) == (3, {})

    spool.unlink()
    wait_for(lambda: server.client.get("/v2/health/ready").status_code == 200, timeout=60)
    assert server.infer(one_row(X, 3)).status_code == 200
    server.stop()
    assert spool_rows(spool) == 4


def test_log_required_keeps_every_row_it_answered_under_a_burst(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    """Requests let in together, while the spool fails, all keep their rows."""
    spool = tmp_path / "blocked"
    spool.write_text("a file where the spool folder should be")
    version = register_doubler(ws, delay=0.3)  # slow enough that admissions overlap
    server = start(
        ServeSpec.of(version, spool=str(spool), flush_seconds=0.1, spool_retry_max_s=1.0,
                     max_buffer_rows=4, log_required=True, workers=2, batching=False)
    )  # fmt: skip

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
            return list(await asyncio.gather(*(
                client.post("/v2/models/doubler/infer", json=body) for _ in range(12)
            )))  # fmt: skip

    responses = asyncio.run(burst())
    answered = [r for r in responses if r.status_code == 200]
    for r in responses:
        if r.status_code != 200:
            assert_error(r, 503, "payload log is required")
    # More were let in at once than the buffer holds (4): none of them lost its row.
    assert len(answered) > 4
    payload = server.client.get("/v2/health/stats").json()["payload"]
    assert payload["dropped"] == {} and payload["pending"] == len(answered)
    spool.unlink()
    wait_for(lambda: server.client.get("/v2/health/stats").json()["payload"]["pending"] == 0,
             timeout=60)  # fmt: skip
    server.stop()
    assert spool_rows(spool) == len(answered)


@pytest.fixture
def churn_v(ws: mnb.Workspace) -> tuple[mnb.ModelVersion, Any, pd.DataFrame]:
    pipe, X = churn_model()
    return ws.model("churn").register(pipe, input_example=X[:5]), pipe, X


@pytest.mark.usefixtures("s3_env")
def test_spool_to_s3_and_ingest_from_it(tmp_path: Path, s3_endpoint: str, start: Any) -> None:
    bucket = f"spool-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    options = {"endpoint_url": s3_endpoint}
    with mnb.open(tmp_path / "ws.duckdb", s3_options=options) as ws:
        pipe, X = churn_model()
        version = ws.model("churn").register(pipe, input_example=X[:5])
        # The bucket does not exist yet: writes fail and are retried, nothing is dropped.
        server = start(
            ServeSpec.of(
                version, spool=f"s3://{bucket}/team/logs", flush_seconds=0.1, spool_retry_max_s=1.0
            )
        )
        ids = []
        for i in range(5):
            r = server.infer(one_row(X, i))
            assert r.status_code == 200
            ids += r.json()["parameters"]["prediction_ids"]

        def payload() -> dict[str, Any]:
            return dict(server.client.get("/v2/health/stats").json()["payload"])

        wait_for(lambda: payload()["failing"])
        assert "NoSuchBucket" in str(payload()["last_error"])
        s3.create_bucket(Bucket=bucket)
        wait_for(lambda: payload()["written"] == 5, timeout=60)
        server.stop()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys and all(k.startswith("team/logs/model=churn/version=1/date=") for k in keys)
        assert all(k.endswith(".parquet") for k in keys)

        mon = ws.monitor("churn")
        added = mon.ingest(f"s3://{bucket}/team/logs")
        assert added["added"].all() and added["rows"].sum() == 5
        assert sorted(mon.predictions()["id"]) == sorted(ids)
        assert mon.ingest(f"s3://{bucket}/team/logs")["added"].sum() == 0


def test_redaction_before_the_spool(
    ws: mnb.Workspace, start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    n = 40
    X = pd.DataFrame({
        "user_id": [f"u{i % 7}" for i in range(n)],
        "email": [f"p{i}@example.com" for i in range(n)],
        "plan": rng.choice(["basic", "plus", "pro"], n),
        "age": rng.integers(18, 80, n),
        "score": rng.random(n),
    })  # fmt: skip
    y = (X["score"] > 0.5).astype(int)
    pipe = make_pipeline(
        ColumnTransformer([("num", "passthrough", ["age", "score"])]), LogisticRegression()
    ).fit(X, y)
    rules = {"email": "drop", "user_id": "hash", "age": {"coarse": 10}, "plan": {"prefix": 2}}
    # Configured on the version; the key comes from the server's environment.
    version = ws.model("private").register(pipe, input_example=X[:5], reference_data=X,
                                           params={"mlops.redact": rules})  # fmt: skip
    monkeypatch.setenv("MLOPS_NB_REDACT_KEY", "k-123")
    spool = tmp_path / "spool"
    server = start(ServeSpec.of(version, spool=str(spool), flush_seconds=600))
    assert server.infer(X.to_dict(orient="records")).status_code == 200
    server.stop()

    (file,) = spool.rglob("*.parquet")
    table = pq.read_table(file)
    assert "feature.email" not in table.column_names
    expected_hash = [
        hmac.new(b"k-123", v.encode(), hashlib.sha256).hexdigest() for v in X["user_id"]
    ]
    assert table.column("feature.user_id").to_pylist() == expected_hash
    assert table.column("feature.age").to_pylist() == (X["age"] // 10 * 10).tolist()
    assert table.column("feature.plan").to_pylist() == [p[:2] for p in X["plan"]]
    meta = json.loads(pq.read_schema(file).metadata[b"mlops_nb.redaction"])
    assert meta == {"age": "coarse:10", "email": "drop", "plan": "prefix:2",
                    "user_id": "hmac-sha256"}  # fmt: skip
    raw = file.read_bytes()
    assert b"example.com" not in raw and b"k-123" not in raw

    mon = ws.monitor("private")
    mon.ingest(spool)
    recorded = mon.redaction()
    assert recorded[["version", "feature", "rule"]].values.tolist() == [
        [1, "age", "coarse:10"], [1, "email", "drop"], [1, "plan", "prefix:2"],
        [1, "user_id", "hmac-sha256"],
    ]  # fmt: skip
    report = mon.drift("last 1d", "last 1d", min_samples=10, store=False)
    kinds = report.summary.set_index("feature")["kind"].to_dict()
    assert kinds["user_id"] == "categorical" and kinds["age"] == "numeric"
    # Against the raw training sample (the very rows that were logged), the coarse and
    # prefix rules are applied to the reference first: nothing drifted. A hashed or
    # dropped feature cannot be compared with raw values: no verdict, and a note says why.
    report = mon.drift("training", "last 1d", min_samples=10, store=False)
    rows = report.summary.set_index("feature")
    for feature in ("age", "plan"):
        assert pd.notna(rows.loc[feature, "statistic"]) and rows.loc[feature, "drifted"] is False
        assert (rows.loc[feature, "n_ref"], rows.loc[feature, "n_cur"]) == (n, n)
    assert rows.loc["plan", "kind"] == "categorical" and rows.loc["age", "kind"] == "numeric"
    assert rows.loc["user_id", "drifted"] is None and "hashed" in rows.loc["user_id", "note"]
    assert rows.loc["email", "drifted"] is None and "dropped" in rows.loc["email", "note"]
    # Their values are still counted: n on the raw side, and on the log's where it kept them.
    assert (rows.loc["user_id", "n_ref"], rows.loc["user_id", "n_cur"]) == (n, n)
    assert (rows.loc["email", "n_ref"], rows.loc["email", "n_cur"]) == (n, 0)
    assert report.drifted is False


def test_hashed_values_repeat_their_hash_and_missing_stays_missing() -> None:
    import pyarrow as pa

    from mlops_nb.serve.redact import Redactor

    redactor = Redactor.of({"user": "hash", "reading": "hash"}, "k-9")
    table = pa.table({
        "feature.user": pa.array(["u1", None, "u2", "u1", "u1"]),
        "feature.reading": pa.array([6.8, 6.8, None, 1.0, 2.5]),
    })  # fmt: skip
    out = redactor.apply(table)

    def mac(v: object) -> str | None:
        return None if v is None else hmac.new(b"k-9", str(v).encode(), hashlib.sha256).hexdigest()

    for name in table.column_names:
        assert out.column(name).to_pylist() == [mac(v) for v in table.column(name).to_pylist()]
    assert out.column("feature.user").type == pa.string()


def test_hashing_without_a_key_is_a_clear_load_error(
    ws: mnb.Workspace, start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_NB_REDACT_KEY", raising=False)
    pipe, X = churn_model()
    version = ws.model("churn").register(pipe, input_example=X[:5])
    spec = ServeSpec.of(version, spool=str(tmp_path / "spool"), redact={"plan": "hash"})
    server = start(spec, ready=False)
    failed = server.wait_load_failed()
    assert failed.status_code == 503
    assert "MLOPS_NB_REDACT_KEY" in failed.json()["error"]
    # A bad rule is refused when the spec is made; a spec written by other means with one
    # is a load error of the server.
    with pytest.raises(mnb.InvalidArgument, match=r"'plan' is 'blur'; use 'drop', 'hash'"):
        ServeSpec.of(version, spool=str(tmp_path / "spool"), redact={"plan": "blur"})
    bad = dataclasses.replace(spec, redact={"plan": "blur"})
    error = start(bad, ready=False).wait_load_failed().json()["error"]
    assert "'plan'" in error and "'drop', 'hash'" in error


def test_errors_in_a_redacted_log_quote_no_values(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    """The client is told what it sent; the redacted payload log is not."""
    example = pd.DataFrame({"email": ["a@example.com"], "age": np.array([40], dtype=np.int16)})
    version = register_python(ws, "quoting", Quoting(), input_example=example)
    spool = tmp_path / "spool"
    rules = {"email": "drop", "age": {"coarse": 10}}
    server = start(ServeSpec.of(version, spool=str(spool), flush_seconds=600, redact=rules))
    # The model's own message quotes the email: 500, the client sees it, the log does not.
    r = server.infer([{"email": "ann@secret.org", "age": 41}])
    assert_error(r, 500, "model raised ValueError", "ann@secret.org")
    # A request error quotes the values it refused (out of range, not a number).
    r = server.infer(tensor_pair("bob@secret.org", 54321))
    assert_error(r, 400, "'age'", "value 54321 is out of range")
    r = server.infer([{"email": "cy@secret.org", "age": "seventy-three"}])
    assert_error(r, 400, "'age'", "INT16", "seventy-three")
    server.stop()

    (file,) = spool.rglob("*.parquet")
    table = pq.read_table(file)
    errors = table.column("error").to_pylist()
    assert errors == [
        "model: model raised ValueError (message withheld: the payload log redacts features)",
        "request: input 'age': a value is out of range for INT16 (-32768 to 32767)",
        "request: input 'age': data does not match datatype INT16: expected integer values",
    ]
    raw = file.read_bytes()
    for secret in (b"secret.org", b"seventy-three", b"54321"):
        assert secret not in raw
    assert table.column("feature.age").to_pylist() == [40, None, None]


def test_errors_in_a_log_without_redaction_keep_the_whole_message(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    example = pd.DataFrame({"email": ["a@example.com"], "age": [40]})
    version = register_python(ws, "quoting", Quoting(), input_example=example)
    spool = tmp_path / "spool"
    server = start(ServeSpec.of(version, spool=str(spool), flush_seconds=600))
    assert server.infer([{"email": "ann@secret.org", "age": 41}]).status_code == 500
    assert server.infer([{"email": "cy@secret.org", "age": "x"}]).status_code == 400
    server.stop()
    (file,) = spool.rglob("*.parquet")
    assert pq.read_table(file).column("error").to_pylist() == [
        "model: model raised ValueError: no account for ann@secret.org",
        "request: input 'age': data does not match datatype INT64: expected integer values, "
        "got ['x']",
    ]


def tensor_pair(email: str, age: int) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "email", "shape": [1], "datatype": "BYTES", "data": [email]},
            {"name": "age", "shape": [1], "datatype": "INT32", "data": [age]},
        ]
    }
