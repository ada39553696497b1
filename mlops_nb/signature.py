"""Input/output schemas inferred from an input example, in Open Inference Protocol terms.

A signature is ``{"inputs": [...], "outputs": [...]}``, each entry a dict with ``name``,
``datatype`` (V2 names such as ``FP64``, ``INT64``, ``BYTES``) and ``shape`` (``-1`` for
the batch dimension), so a V2 model server can publish it as model metadata.

>>> import pandas as pd
>>> infer_inputs(pd.DataFrame({"age": [31, 40], "plan": ["a", "b"]}))
[{'name': 'age', 'datatype': 'INT64', 'shape': [-1]}, {'name': 'plan', 'datatype': 'BYTES', 'shape': [-1]}]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_V2_BY_KIND = {"b": "BOOL", "O": "BYTES", "U": "BYTES", "S": "BYTES"}


def v2_datatype(dtype: Any) -> str:
    """The V2 datatype name for a numpy or pandas dtype."""
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        # pandas extension dtypes (string, category, nullable ints) have no numpy twin.
        name = str(dtype).lower()
        if name.startswith(("int", "uint")):
            return name.upper()
        if name.startswith("float"):
            return "FP" + name[5:]
        if name == "boolean":
            return "BOOL"
        return "BYTES"
    if np_dtype.kind in _V2_BY_KIND:
        return _V2_BY_KIND[np_dtype.kind]
    if np_dtype.kind == "f":
        return f"FP{np_dtype.itemsize * 8}"
    if np_dtype.kind == "i":
        return f"INT{np_dtype.itemsize * 8}"
    if np_dtype.kind == "u":
        return f"UINT{np_dtype.itemsize * 8}"
    return "BYTES"


def infer_inputs(example: Any) -> list[dict[str, Any]]:
    """Input tensors for a DataFrame (one per column) or an array (one tensor)."""
    if isinstance(example, pd.DataFrame):
        return [
            {"name": str(col), "datatype": v2_datatype(example[col].dtype), "shape": [-1]}
            for col in example.columns
        ]
    arr = np.asarray(example)
    return [{"name": "input", "datatype": v2_datatype(arr.dtype), "shape": [-1, *arr.shape[1:]]}]


def infer_outputs(model: Any, example: Any) -> list[dict[str, Any]]:
    """Outputs of ``model.predict(example)``; empty when the model has no ``predict``."""
    predict = getattr(model, "predict", None)
    if predict is None:
        return []
    try:
        out = np.asarray(predict(example))
    except Exception:
        # A model that cannot predict on its own example still registers; the signature
        # just lacks outputs.
        return []
    return [{"name": "predict", "datatype": v2_datatype(out.dtype), "shape": [-1, *out.shape[1:]]}]


def as_frame(data: Any) -> pd.DataFrame:
    """Tabular data as a DataFrame; arrays get columns ``x0, x1, ...``."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    arr = np.asarray(data)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"expected 1-D or 2-D tabular data, got shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
