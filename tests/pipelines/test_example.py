"""The example pipeline: train, evaluate, register, deploy and remove the iris model."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlops_nb as mnb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris"


def test_iris_example_end_to_end(ws: mnb.Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "iris"
    shutil.copytree(EXAMPLE, folder)
    p = mnb.Pipeline.from_yaml(folder / "pipeline.yaml")
    assert repr(p) == "<Pipeline iris: validate -> train -> evaluate -> register -> deploy>"
    run = p.run(workspace=ws).wait(280)
    status = run.status()
    assert status.status == "succeeded", {n: run.logs(n)[-2000:] for n in status.stages}
    outputs = {n: s.outputs for n, s in status.stages.items()}
    assert outputs["validate"] == {"rows": 150}
    assert outputs["evaluate"]["accuracy"] >= 0.9
    assert outputs["register"] == {"version": 1} and outputs["deploy"]["prediction"] in (0, 1, 2)

    v = ws.model("iris").version(1)
    assert v.stage == "staging" and v.lineage["pipeline_run"] == run.id
    actions = run.audit()["action"].tolist()
    assert actions[:2] == ["register", "promote"] and "delete_deployment" in actions
    assert any(a.startswith("deploy") for a in actions)
    assert ws.deployments()["state"].tolist() == ["deleted"]
    # Outside a pipeline nothing names a run.
    w = ws.model("other").register(lambda x: x, flavor="python")
    assert w.lineage["pipeline_run"] is None

    # The second run reuses the data, model and score; registering and deploying run again.
    again = p.run(workspace=ws).wait(280)
    got = {n: s.status for n, s in again.status().stages.items()}
    assert got == {"validate": "cached", "train": "cached", "evaluate": "cached",
                   "register": "succeeded", "deploy": "succeeded"}  # fmt: skip
    assert ws.model("iris").version(2).lineage["pipeline_run"] == again.id
