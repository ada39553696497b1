"""The demo behind ``make demo``: a small, real model through the registry.

Trains two scikit-learn models on the breast-cancer data set that ships with
scikit-learn, registers both with metrics, promotes the better one to production through
staging, points an alias at it and loads it back. Then it deploys the champion as a
local V2 endpoint, sends it traffic (half of it drifted), reads the payload log back,
attaches labels, checks drift and quality, rolls the other version out as a guarded
canary, rolls back, and prints the registry, the deployment history and the audit log.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import click
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import loopback
from .deploy.strategies import Canary, Guard
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
        _serve_and_watch(ws, best, next(v for v in registered if v != best), X_test, y_test)
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


def _serve_and_watch(ws: Any, best: Any, other: Any, X: pd.DataFrame, y: pd.Series) -> None:
    dep = best.deploy(replicas=1)
    click.echo(f"\ndeployed v{best.number} at {dep.endpoint}")
    try:
        # Half the traffic arrives with the first five features scaled up: drift.
        drifted = X.copy()
        drifted[X.columns[:5]] = drifted[X.columns[:5]] * 1.5
        ids: list[str] = []
        truth: list[int] = []
        with loopback.client(timeout=10) as client:
            for frame in (X, drifted):
                for i in range(len(frame)):
                    r = client.post(f"{dep.endpoint}/v2/models/cancer/infer",
                                    json=frame.iloc[[i]].to_dict("records"))  # fmt: skip
                    r.raise_for_status()
                    ids += r.json()["parameters"]["prediction_ids"]
                    truth.append(int(y.iloc[i]))
        click.echo(f"sent {len(ids)} requests; waiting for the payload spool")
        mon = ws.monitor("cancer")
        deadline = time.monotonic() + 30
        while len(mon.predictions()) < len(ids) and time.monotonic() < deadline:
            dep.flush_logs()
            time.sleep(0.5)
        mon.log_labels(ids, truth)
        report = mon.drift("training", "last 1h")
        click.echo(f"{report!r}")
        quality = mon.metrics("1h")
        click.echo("quality: " + ", ".join(
            f"{k}={quality[k].iloc[-1]:.3f}" for k in ("accuracy", "f1", "roc_auc")))  # fmt: skip
        guard = Guard(max_error_rate=0.01, interval="0.5s", window="10s", min_samples=5)
        other.deploy(strategy=Canary(steps=[50, 100], pause="2s", guard=guard))
        click.echo(f"canary of v{other.number}: {dep.status()['traffic']}")
        with loopback.client(timeout=10) as client:
            deadline = time.monotonic() + 60
            while dep.status()["rollout"]["phase"] not in ("succeeded", "aborted", "failed"):
                client.post(f"{dep.endpoint}/v2/models/cancer/infer",
                            json=X.iloc[[0]].to_dict("records"))  # fmt: skip
                if time.monotonic() > deadline:
                    break
        dep.wait(timeout=60)
        click.echo(f"canary {dep.status()['rollout']['phase']}: {dep.status()['traffic']}")
        dep.rollback(reason="demo: back to the champion")
        click.echo(f"rolled back: {dep.status()['traffic']}")
        click.echo(
            "\nRevisions:\n"
            + dep.revisions()[["revision", "version", "strategy", "status", "note"]].to_string(
                index=False
            )
        )
    finally:
        dep.delete()
