"""What stage code sees: the context file locally, environment variables in a container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlops_nb as mnb
from mlops_nb.pipelines.context import MAX_VALUES_BYTES, StageContext, write_value

READ = """\
import json
from mlops_nb.pipelines import context, output
ctx = context()
output("seen", sorted(ctx.inputs))
print(json.dumps({"run": ctx.run_id, "stage": ctx.stage, "params": ctx.params,
                  "train": ctx.inputs["train"].values, "out": str(ctx.output_dir)}))
"""


def test_context_in_an_argo_container_comes_from_the_environment(tmp_path: Path) -> None:
    # The layout Argo gives a stage of to_argo(): dependencies' artifacts under the inputs
    # folder, the working folder as the output artifact, params as JSON.
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    (inputs / "train").mkdir(parents=True)
    (inputs / "train" / "outputs.json").write_text('{"accuracy": 0.9}')
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_NB_")}
    env.update({"MLOPS_NB_PIPELINE_RUN": "iris-x7k2p", "MLOPS_NB_PIPELINE": "iris",
                "MLOPS_NB_STAGE": "evaluate", "MLOPS_NB_PARAMS": '{"data": "2026-11"}',
                "MLOPS_NB_INPUTS_DIR": str(inputs), "MLOPS_NB_OUTPUT_DIR": str(out)})  # fmt: skip
    done = subprocess.run([sys.executable, "-c", READ], env=env, cwd=out, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert json.loads(done.stdout) == {"run": "iris-x7k2p", "stage": "evaluate",
                                       "params": {"data": "2026-11"}, "train": {"accuracy": 0.9},
                                       "out": str(out)}  # fmt: skip
    assert json.loads((out / "outputs.json").read_text()) == {"seen": ["train"]}


def test_context_outside_a_stage_and_bad_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_NB_STAGE_CONTEXT", raising=False)
    monkeypatch.delenv("MLOPS_NB_PIPELINE_RUN", raising=False)
    with pytest.raises(
        mnb.PipelineError, match="call context\\(\\) from code run by a pipeline stage"
    ):
        mnb.pipelines.context()
    with pytest.raises(mnb.PipelineError, match="not JSON-serializable"):
        write_value(tmp_path, "model", object())
    with pytest.raises(mnb.PipelineError, match="write large results as files"):
        write_value(tmp_path, "big", "x" * MAX_VALUES_BYTES)
    write_value(tmp_path, "ok", 1)
    assert json.loads((tmp_path / "outputs.json").read_text()) == {"ok": 1}
    ctx = StageContext("r", "p", "s", 1, {"a": 1}, {}, tmp_path, None)
    assert StageContext.from_json(ctx.to_json()) == ctx
