"""What a running stage sees: its params, its dependencies' outputs, where to write its own.

Every stage process gets ``MLOPS_NB_STAGE_CONTEXT`` (a JSON file) in its environment, plus
``MLOPS_NB_PIPELINE_RUN`` (the run id, recorded as lineage by the registry),
``MLOPS_NB_OUTPUT_DIR`` and, when the workspace is a file, ``MLOPS_NB_WORKSPACE``. Code in
any stage kind reads it the same way::

    from mlops_nb.pipelines import context, output
    ctx = context()
    data = ctx.params["data"]
    model_dir = ctx.inputs["train"].dir          # files the 'train' stage wrote
    accuracy = ctx.inputs["evaluate"].values["accuracy"]
    output("accuracy", 0.97)                     # a small JSON value for dependents
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PipelineError

MAX_VALUES_BYTES = 64 * 1024
ENV = "MLOPS_NB_STAGE_CONTEXT"


@dataclass(frozen=True)
class StageOutputs:
    """Files (``dir``) and small JSON ``values`` one stage left for its dependents."""

    dir: Path
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageContext:
    run_id: str
    pipeline: str
    stage: str
    attempt: int
    params: dict[str, Any]
    inputs: dict[str, StageOutputs]
    output_dir: Path
    workspace: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "pipeline": self.pipeline, "stage": self.stage,
            "attempt": self.attempt, "params": self.params, "workspace": self.workspace,
            "output_dir": str(self.output_dir),
            "inputs": {k: {"dir": str(v.dir), "values": v.values} for k, v in self.inputs.items()},
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageContext:
        return cls(
            data["run_id"], data["pipeline"], data["stage"], int(data["attempt"]),
            dict(data["params"]),
            {k: StageOutputs(Path(v["dir"]), dict(v["values"])) for k, v in data["inputs"].items()},
            Path(data["output_dir"]), data.get("workspace"),
        )  # fmt: skip

    def output(self, name: str, value: Any) -> None:
        """Record a small JSON value for the stages that depend on this one."""
        write_value(self.output_dir, name, value)


def _from_env() -> StageContext:
    # In an Argo container there is no context file: the same facts come as variables
    # and the dependencies' artifacts as folders under MLOPS_NB_INPUTS_DIR.
    inputs_dir = Path(os.environ.get("MLOPS_NB_INPUTS_DIR", "/work/inputs"))
    found = sorted(p for p in inputs_dir.iterdir() if p.is_dir()) if inputs_dir.is_dir() else []
    return StageContext(
        os.environ["MLOPS_NB_PIPELINE_RUN"], os.environ.get("MLOPS_NB_PIPELINE", ""),
        os.environ.get("MLOPS_NB_STAGE", ""), 1, json.loads(os.environ.get("MLOPS_NB_PARAMS", "{}")),
        {p.name: StageOutputs(p, read_values(p)) for p in found},
        Path(os.environ.get("MLOPS_NB_OUTPUT_DIR", os.getcwd())), os.environ.get("MLOPS_NB_WORKSPACE"),
    )  # fmt: skip


def context() -> StageContext:
    """The context of the stage this process runs (raises outside a pipeline stage)."""
    path = os.environ.get(ENV)
    if not path and os.environ.get("MLOPS_NB_PIPELINE_RUN"):
        return _from_env()
    if not path:
        raise PipelineError(
            f"no pipeline stage context: {ENV} is not set; call context() from code run by "
            "a pipeline stage"
        )
    return StageContext.from_json(json.loads(Path(path).read_text()))


def values_path(output_dir: Path) -> Path:
    return output_dir / "outputs.json"


def read_values(output_dir: Path) -> dict[str, Any]:
    path = values_path(output_dir)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def write_value(output_dir: Path, name: str, value: Any) -> None:
    if not isinstance(name, str) or not name:
        raise PipelineError("output names must be non-empty strings")
    values = read_values(output_dir)
    values[name] = value
    try:
        text = json.dumps(values, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"output {name!r} is not JSON-serializable: {e}; write a file "
                            "into ctx.output_dir instead") from e  # fmt: skip
    if len(text) > MAX_VALUES_BYTES:
        raise PipelineError(
            f"output values exceed {MAX_VALUES_BYTES} bytes; write large results as files "
            "into ctx.output_dir instead"
        )
    tmp = values_path(output_dir).with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(values_path(output_dir))


def output(name: str, value: Any) -> None:
    """Record a small JSON value for dependents of the running stage."""
    context().output(name, value)
