"""Payload chunks into one typed table: 2-D inputs split into feature columns, nothing lost."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa

from mlops_nb.serve.records import chunk_of, log_types, table_of

SIGNATURE = {
    "inputs": [{"name": "input", "shape": [-1, 3], "datatype": "INT64"}],
    "outputs": [{"name": "predict", "shape": [-1], "datatype": "INT64"}],
}


def chunk(i: int, values: Any, error: str | None = None) -> dict[str, Any]:
    x = np.asarray(values)
    ids = [f"r{i}-{k}" for k in range(len(x))]
    outcome = None if error else SimpleNamespace(prediction=np.arange(len(x)), confidence=None)
    return chunk_of(ids, {"input": x}, outcome, 1.5, error)


def test_2d_inputs_become_one_typed_column_per_feature() -> None:
    chunks = [chunk(0, [[1, 2, 3]]), chunk(1, [[4, 5, 6], [7, 8, 9]]), chunk(2, [[0, 0, 1]])]
    table = table_of(chunks, log_types(SIGNATURE), None)
    assert table.num_rows == 4
    assert [table.column(f"feature.x{k}").to_pylist() for k in range(3)] == [
        [1, 4, 7, 0], [2, 5, 8, 0], [3, 6, 9, 1]
    ]  # fmt: skip
    assert all(table.schema.field(f"feature.x{k}").type == pa.int64() for k in range(3))
    assert table.column("id").to_pylist() == ["r0-0", "r1-0", "r1-1", "r2-0"]
    assert table.column("latency_ms").to_pylist() == [1.5] * 4
    assert "feature.*" not in table.column_names and "misfit" not in table.column_names


def test_joined_and_chunk_by_chunk_paths_give_the_same_table() -> None:
    rows = [[[1.0, 2.0]], [[3.0, np.nan]], [[5.0, 6.0]]]
    joined = table_of([chunk(i, r) for i, r in enumerate(rows)], {}, None)
    # float32 beside float64 cannot be joined into one block: each chunk on its own.
    mixed = [chunk(0, np.asarray(rows[0], dtype=np.float32))]
    mixed += [chunk(i, r) for i, r in enumerate(rows) if i]
    apart = table_of(mixed, {}, None)
    assert joined.column_names == apart.column_names
    for name in ("feature.x0", "feature.x1"):
        assert joined.column(name).to_pylist() == apart.column(name).to_pylist()
    assert joined.column("feature.x1").to_pylist() == [2.0, None, 6.0]  # NaN is missing


def test_values_that_do_not_fit_are_kept_as_text_and_widths_may_differ() -> None:
    types = log_types(SIGNATURE)
    chunks = [chunk(0, [[1, 2, 3]]), chunk(1, [[1.5, 2.0, 3.0]]), chunk(2, [[7, 8]])]
    table = table_of(chunks, types, None)
    assert table.num_rows == 3
    assert table.column("feature.x0").to_pylist() == [1, None, 7]
    assert table.column("feature.x2").to_pylist() == [3, 3, None]
    misfits = table.column("misfit").to_pylist()
    assert misfits[0] is None and misfits[2] is None
    assert json.loads(misfits[1]) == {"feature.x0": 1.5}


def test_failed_requests_and_text_inputs_keep_their_rows() -> None:
    chunks = [chunk(0, [["a", "b"]], error="request: bad"), chunk(1, [[1.0, 2.0]])]
    table = table_of(chunks, {}, None)
    assert table.column("error").to_pylist() == ["request: bad", None]
    assert table.column("prediction").to_pylist() == [None, 0]
    assert table.column("feature.x0").to_pylist() == ["a", None]
    misfit = json.loads(table.column("misfit").to_pylist()[1])
    assert misfit == {"feature.x0": 1.0, "feature.x1": 2.0}
