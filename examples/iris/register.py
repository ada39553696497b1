"""Register the model with its metrics and promote it to staging."""

import os
import pickle

import pandas as pd

import mlops_nb as mnb
from mlops_nb.pipelines import context, output

ctx = context()
model = pickle.loads((ctx.inputs["train"].dir / "model.pkl").read_bytes())
example = pd.read_parquet(ctx.inputs["train"].dir.parent / "validate" / "train.parquet")
example = example.drop(columns="target")
with mnb.open(os.environ["MLOPS_NB_WORKSPACE"], artifacts=os.environ["MLOPS_NB_ARTIFACTS"]) as ws:
    v = ws.model(os.environ["MODEL_NAME"]).register(
        model,
        metrics={"accuracy": ctx.inputs["evaluate"].values["accuracy"]},
        data_version="sklearn-iris",
        input_example=example.head(5),
        tags=["pipeline"],
    )
    v = v.promote("staging", reason=f"pipeline run {ctx.run_id}")
    output("version", v.number)
    print(f"registered {v!r}, lineage {v.lineage}")
