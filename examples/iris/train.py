"""Fit a logistic regression on the training split."""

import pickle

import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops_nb.pipelines import context

ctx = context()
train = pd.read_parquet(ctx.inputs["validate"].dir / "train.parquet")
model = LogisticRegression(max_iter=500).fit(train.drop(columns="target"), train["target"])
(ctx.output_dir / "model.pkl").write_bytes(pickle.dumps(model))
print("trained", model)
