"""One model version, loaded and verified, predicting batches of decoded requests.

Outputs a client may ask for: ``predict`` (the model's answer), and for classifiers with
``predict_proba`` also ``confidence`` (probability of the predicted class) and
``probabilities`` (one column per class, in ``classes_`` order).
"""

from __future__ import annotations

import gc
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import flavors
from ..artifacts import open_store
from .spec import ServeSpec
from .v2 import Batch

log = logging.getLogger("mlops_nb.serve")


class Outcome:
    """Predictions for one request: outputs plus what the payload log keeps."""

    __slots__ = ("confidence", "prediction", "probabilities")

    def __init__(
        self,
        prediction: np.ndarray[Any, Any],
        confidence: np.ndarray[Any, Any] | None,
        probabilities: np.ndarray[Any, Any] | None = None,
    ) -> None:
        self.prediction = prediction
        self.confidence = confidence
        self.probabilities = probabilities


class Predictor:
    def __init__(self, spec: ServeSpec) -> None:
        self.spec = spec
        self.model: Any = None
        self._proba_decides = False
        names = [i["name"] for i in (spec.signature or {}).get("inputs", [])]
        one_tensor = len(names) == 1 and len((spec.signature or {})["inputs"][0]["shape"]) > 1
        self._frame_columns = names if names and not one_tensor else None

    def load(self) -> None:
        """Fetch, verify and load the artifact; raises on any failure."""
        store = open_store(self.spec.artifact_uri, self.spec.s3_options)
        with tempfile.TemporaryDirectory(prefix="mlops-nb-serve-") as tmp:
            store.fetch(self.spec.manifest, self.spec.digest, Path(tmp), {"model"})
            model = flavors.load(self.spec.manifest, Path(tmp))
        if not hasattr(model, "predict") and not callable(model):
            raise TypeError(f"{type(model).__name__} has no predict() and is not callable")
        self.model = model
        self._proba_decides = _argmax_is_predict(model)
        # Objects alive now live as long as the server: keep them out of full GC passes,
        # whose pauses were the p99 spikes.
        gc.collect()
        gc.freeze()

    @property
    def outputs(self) -> list[str]:
        """Output names this model can answer."""
        if hasattr(self.model, "predict_proba"):
            return ["predict", "confidence", "probabilities"]
        return ["predict"]

    def output_metadata(self) -> list[dict[str, Any]]:
        """The signature's outputs, and the extra ones this model can answer."""
        outputs = list((self.spec.signature or {}).get("outputs") or [])
        if "confidence" in self.outputs:
            classes = len(getattr(self.model, "classes_", [])) or -1
            outputs += [
                {"name": "confidence", "datatype": "FP64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, classes]},
            ]
        return outputs

    def _input(self, columns: dict[str, np.ndarray[Any, Any]]) -> Any:
        if self._frame_columns is not None:
            return pd.DataFrame({n: columns[n] for n in self._frame_columns})
        if len(columns) == 1:
            (only,) = columns.values()
            if only.ndim == 2:
                return only
        return pd.DataFrame(columns)

    def predict(self, batches: list[Batch]) -> list[Outcome]:
        if len(batches) == 1:
            columns = batches[0].columns
        else:
            columns = {
                k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns
            }
        X = self._input(columns)
        model = self.model
        rows = sum(b.rows for b in batches)
        if self._proba_decides:
            # One pass: for these estimators predict() is the class of highest probability.
            scores = np.asarray(model.predict_proba(X))
            prediction = np.asarray(model.classes_)[scores.argmax(axis=1)]
            return _split(batches, prediction, scores)
        raw = model.predict(X) if hasattr(model, "predict") else model(X)
        prediction = np.asarray(raw)
        # Slicing a short answer would hand one request's predictions to another.
        if prediction.ndim == 0 or prediction.shape[0] != rows:
            got = "a scalar" if prediction.ndim == 0 else f"{prediction.shape[0]} predictions"
            raise ValueError(f"predict returned {got} for {rows} rows")
        proba: np.ndarray[Any, Any] | None = None
        if hasattr(model, "predict_proba"):
            try:
                proba = np.asarray(model.predict_proba(X))
            except Exception:
                # A model whose predict works but predict_proba does not still answers;
                # only the confidence is missing.
                log.warning("predict_proba failed; answering without confidence", exc_info=True)
                proba = None
            if proba is not None and (proba.ndim != 2 or proba.shape[0] != rows):
                raise ValueError(
                    f"predict_proba returned shape {list(proba.shape)} for {rows} rows"
                )
        return _split(batches, prediction, proba)


def _split(
    batches: list[Batch], prediction: np.ndarray[Any, Any], proba: np.ndarray[Any, Any] | None
) -> list[Outcome]:
    confidence = proba.max(axis=1) if proba is not None else None
    if len(batches) == 1:
        return [Outcome(prediction, confidence, proba)]
    outcomes = []
    start = 0
    for b in batches:
        end = start + b.rows
        outcomes.append(
            Outcome(
                prediction[start:end],
                confidence[start:end] if confidence is not None else None,
                proba[start:end] if proba is not None else None,
            )
        )
        start = end
    return outcomes


# scikit-learn classifiers whose predict() is the argmax of predict_proba() (or of a
# decision function that predict_proba maps monotonically), so one call gives both.
# SVC(probability=True) is the classic exception and is not listed.
_ARGMAX_CLASSIFIERS = {
    "LogisticRegression", "RandomForestClassifier", "ExtraTreesClassifier",
    "DecisionTreeClassifier", "GradientBoostingClassifier", "HistGradientBoostingClassifier",
    "KNeighborsClassifier", "GaussianNB", "MultinomialNB", "BernoulliNB", "MLPClassifier",
}  # fmt: skip


def _argmax_is_predict(model: Any) -> bool:
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else model
    return (
        type(final).__module__.startswith("sklearn.")
        and type(final).__name__ in _ARGMAX_CLASSIFIERS
        and hasattr(model, "predict_proba")
        and hasattr(model, "classes_")
    )
