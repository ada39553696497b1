"""The demo behind ``make demo``: a small, real model through the registry.

Trains two scikit-learn models on the breast-cancer data set that ships with
scikit-learn, registers both with metrics, promotes the better one to production through
staging, points an alias at it, loads it back and prints the registry and audit log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .workspace import open as open_workspace


def run(folder: str | Path = ".demo") -> None:
    root = Path(folder)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    candidates = {
        "1.0.0": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "1.1.0": RandomForestClassifier(n_estimators=100, random_state=0),
    }
    with open_workspace(root / "mlops.duckdb") as ws:
        model = ws.model("cancer")
        registered = []
        for label, estimator in candidates.items():
            estimator.fit(X_train, y_train)
            proba = estimator.predict_proba(X_test)[:, 1]
            metrics = {
                "accuracy": accuracy_score(y_test, estimator.predict(X_test)),
                "roc_auc": roc_auc_score(y_test, proba),
            }
            v = model.register(
                estimator,
                metrics=metrics,
                label=label,
                tags=["tabular", "demo"],
                data_version="sklearn-breast-cancer",
                input_example=X_train.head(5),
                reference_data=X_train,
            )
            click.echo(f"registered {v!r}  accuracy={metrics['accuracy']:.3f}")
            registered.append(v)
        best = max(registered, key=lambda v: v.metrics["roc_auc"])
        best.promote("staging", reason="best offline ROC AUC")
        best = best.promote("production", reason="passed staging checks")
        model.set_alias("champion", best.number)
        click.echo(f"promoted {best!r}; @champion -> v{best.number}")
        loaded = model.version("@champion").load()
        click.echo(
            f"loaded @champion, digest verified; test accuracy "
            f"{accuracy_score(y_test, loaded.predict(X_test)):.3f}"
        )
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            click.echo(
                "\nVersions:\n"
                + model.versions()[
                    ["version", "label", "stage", "aliases", "accuracy", "roc_auc", "algorithm"]
                ].to_string(index=False)
            )
            click.echo(
                "\nAudit log:\n"
                + ws.audit()[
                    ["actor", "action", "model", "version", "from_value", "to_value", "reason"]
                ].to_string(index=False)
            )
        click.echo(f"\nworkspace: {root / 'mlops.duckdb'}")
