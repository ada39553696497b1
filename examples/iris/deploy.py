"""Deploy the staging version locally, check one prediction, then remove the deployment."""

import os

import httpx
import pandas as pd

import mlops_nb as mnb
from mlops_nb.pipelines import context, output

ctx = context()
number = ctx.inputs["register"].values["version"]
test = pd.read_parquet(ctx.inputs["validate"].dir / "test.parquet").drop(columns="target")
with mnb.open(os.environ["MLOPS_NB_WORKSPACE"], artifacts=os.environ["MLOPS_NB_ARTIFACTS"]) as ws:
    v = ws.model(os.environ["MODEL_NAME"]).version(number)
    dep = v.deploy(name=f"{v.model}-staging", timeout=180)
    try:
        reply = httpx.post(
            f"{dep.endpoint}/v2/models/{v.model}/infer",
            json=test.iloc[[0]].to_dict("records"),
            timeout=30,
        )
        reply.raise_for_status()
        prediction = reply.json()["outputs"][0]["data"][0]
        output("prediction", prediction)
        print(f"{dep.endpoint} predicted {prediction}")
    finally:
        dep.delete()
