"""A pipeline: stages forming a DAG, a trigger, environment, notifiers, a concurrency policy.

>>> import mlops_nb as mnb
>>> p = mnb.Pipeline(stages=[mnb.Stage("hello", script="echo hello")], name="demo")
>>> p
<Pipeline demo: hello>
>>> run = p.run(workspace=mnb.open(":memory:")).wait()
>>> run.status().status, run.logs("hello").strip()
('succeeded', 'hello')
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PipelineSpecError
from .dag import Dag
from .notify import Notifier
from .stage import Stage
from .trigger import Trigger

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .run import Run

CONCURRENCY = ("allow", "wait", "skip", "forbid", "refuse")


@dataclass(frozen=True)
class Pipeline:
    """Stages and how to run them. ``concurrency`` decides what a run does while another
    run of the same pipeline is in progress (in any process): "allow" runs anyway, "wait"
    waits for it, "skip" (or Kubernetes' "forbid") records a skipped run, "refuse" raises
    :class:`~mlops_nb.errors.PipelineBusy`. ``max_parallel`` bounds stages run at once."""

    stages: Sequence[Stage]
    name: str = "pipeline"
    trigger: Trigger | Mapping[str, Any] | None = None
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    notifications: Sequence[Notifier] = ()
    concurrency: str = "allow"
    max_parallel: int = 4
    params: Mapping[str, Any] = field(default_factory=dict)
    base_dir: Path | str | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("-", "_").isidentifier():
            raise PipelineSpecError(
                f"pipeline name {self.name!r} must be letters, digits, '_' or '-'"
            )
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "trigger", Trigger.of(self.trigger))
        object.__setattr__(self, "base_dir", Path(self.base_dir or os.getcwd()).resolve())
        object.__setattr__(self, "notifications", tuple(self.notifications))
        env = dict(self.environment_variables or {})
        object.__setattr__(self, "environment_variables", {str(k): str(v) for k, v in env.items()})
        if self.concurrency not in CONCURRENCY:
            raise PipelineSpecError(
                f"concurrency must be one of {', '.join(CONCURRENCY)}, got {self.concurrency!r}"
            )
        if (
            isinstance(self.max_parallel, bool)
            or not isinstance(self.max_parallel, int)
            or self.max_parallel < 1
        ):
            raise PipelineSpecError(
                f"max_parallel must be a positive integer, got {self.max_parallel!r}"
            )
        for n in self.notifications:
            if not isinstance(n, Notifier):
                raise PipelineSpecError(
                    f"notifications must be notifiers (Webhook, Email), got {n!r}"
                )
        object.__setattr__(self, "dag", Dag(self.stages))
        self.check_files()

    dag: Dag = field(init=False, repr=False, compare=False)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        """Load a pipeline file (the guide's format; see :mod:`mlops_nb.pipelines.spec`)."""
        from .spec import load

        return load(path)

    def check_files(self) -> None:
        """Every script and notebook a stage names exists (checked before anything runs)."""
        base = Path(str(self.base_dir))
        for s in self.stages:
            if s.file and not (base / s.file).is_file():
                where = f" (line {s.line})" if s.line else ""
                raise PipelineSpecError(
                    f"stage {s.name!r}{where}: script {s.file!r} not found in {str(base)!r}; "
                    "paths are relative to the pipeline file's folder",
                    s.line,
                )

    def with_params(self, **params: Any) -> Pipeline:
        """A copy with more default params."""
        return replace(self, params={**self.params, **params})

    def run(
        self,
        workspace: Workspace,
        params: Mapping[str, Any] | None = None,
        trigger: Mapping[str, Any] | bool | None = None,
        *,
        force: bool = False,
        wait: bool = False,
    ) -> Run:
        """Start a run in the background and return its handle (``wait=True`` blocks).

        ``trigger`` (``{"commit": sha, "branch": name, "before": sha}`` or ``True`` for
        HEAD) applies the pipeline's trigger filters first: a run they do not fire is
        recorded as skipped. ``force=True`` ignores the stage cache."""
        from .runner import start

        run = start(self, workspace, dict(params or {}), trigger, force=force)
        return run.wait() if wait else run

    def to_argo(self, **options: Any) -> dict[str, Any]:
        """An Argo ``Workflow`` manifest; see :func:`mlops_nb.pipelines.argo.workflow`."""
        from .argo import workflow

        return workflow(self, **options)

    def to_argo_cron(self, schedule: str, **options: Any) -> dict[str, Any]:
        """An Argo ``CronWorkflow`` manifest running this pipeline on ``schedule``."""
        from .argo import cron_workflow

        return cron_workflow(self, schedule, **options)

    def submit(self, target: Any = None, **options: Any) -> dict[str, Any]:
        """Create the Workflow on a cluster; see :func:`mlops_nb.pipelines.argo.submit`."""
        from .argo import submit

        return submit(self, target, **options)

    def graph(self) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "dependencies": list(s.dependencies), "kind": s.kind}
            for s in self.stages
        ]

    def __repr__(self) -> str:
        return (
            f"<Pipeline {self.name}: {' -> '.join('+'.join(layer) for layer in self.dag.layers())}>"
        )
