"""Score the model on the test split; fail below the min_accuracy param."""

import pickle

import pandas as pd
from sklearn.metrics import accuracy_score

from mlops_nb.pipelines import context, output

ctx = context()
model = pickle.loads((ctx.inputs["train"].dir / "model.pkl").read_bytes())
test = pd.read_parquet(ctx.inputs["validate"].dir / "test.parquet")
accuracy = float(accuracy_score(test["target"], model.predict(test.drop(columns="target"))))
output("accuracy", accuracy)
print(f"accuracy {accuracy:.3f}")
if accuracy < float(ctx.params["min_accuracy"]):
    raise SystemExit(f"accuracy {accuracy:.3f} is below {ctx.params['min_accuracy']}")
