"""``mlops-nb pipeline ...``: run a pipeline file, list runs, show a run, export to Argo."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any

import click

from ..errors import InvalidArgument, PipelineError


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"-p takes NAME=VALUE, got {item!r}")
        out[key] = value
    return out


@click.group()
def pipeline() -> None:
    """Run pipeline files and look at their runs."""


@pipeline.command("run")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("-p", "--param", "params", multiple=True, help="NAME=VALUE (repeatable).")
@click.option("--force", is_flag=True, help="Run every stage, ignoring the cache.")
@click.option("--commit", default=None, help="Apply the trigger filters to this commit.")
@click.option("--branch", default=None, help="Branch for the trigger (default: checked out).")
@click.option("--trigger", "use_trigger", is_flag=True, help="Apply the trigger filters to HEAD.")
@click.pass_context
def run_cmd(ctx: click.Context, path: str, params: tuple[str, ...], force: bool,
            commit: str | None, branch: str | None, use_trigger: bool) -> None:  # fmt: skip
    """Run the pipeline in PATH to the end; exit status 1 when it fails."""
    from ..cli import _ws
    from .pipeline import Pipeline
    from .render import text

    p = Pipeline.from_yaml(path)
    trigger: Any = None
    if commit or branch or use_trigger:
        trigger = {k: v for k, v in (("commit", commit), ("branch", branch)) if v}
        trigger = trigger or True
    with _ws(ctx) as ws:
        run = p.run(workspace=ws, params=_params(params), trigger=trigger, force=force)
        click.echo(f"run {run.id} started", err=True)
        # Stages run in sessions of their own: a scheduler's SIGTERM or Ctrl-C must stop
        # them through the run, not leave them orphaned.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            run.wait()
        except KeyboardInterrupt:
            click.echo(f"cancelling run {run.id}", err=True)
            with contextlib.suppress(PipelineError):
                run.cancel()
            run.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
        status = run.status()
        click.echo(text(status))
    if status.status not in ("succeeded", "skipped"):
        sys.exit(1)


@pipeline.command("runs")
@click.option("--pipeline", "name", default=None, help="Only this pipeline's runs.")
@click.option("--limit", default=20, show_default=True, type=int)
@click.pass_context
def runs_cmd(ctx: click.Context, name: str | None, limit: int) -> None:
    """List pipeline runs, newest first (running ones too)."""
    from ..cli import _print, _ws

    with _ws(ctx) as ws:
        _print(ws.pipeline_runs(name, limit).drop(columns=["created_by"]))


@pipeline.command("show")
@click.argument("run_id")
@click.option("--logs", "stage", default=None, help="Print this stage's log instead.")
@click.pass_context
def show_cmd(ctx: click.Context, run_id: str, stage: str | None) -> None:
    """Show a run's stages (or one stage's log)."""
    from ..cli import _ws
    from .render import text

    with _ws(ctx) as ws:
        run = ws.pipeline_run(run_id)
        click.echo(run.logs(stage) if stage else text(run.status()))


@pipeline.command("argo")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--cron", "schedule", default=None, help="Render a CronWorkflow on this schedule.")
@click.option("--image", default="python:3.11-slim", show_default=True)
@click.option("-p", "--param", "params", multiple=True, help="NAME=VALUE (repeatable).")
def argo_cmd(path: str, schedule: str | None, image: str, params: tuple[str, ...]) -> None:
    """Print the pipeline as an Argo Workflow (or CronWorkflow) in YAML."""
    import yaml

    from .pipeline import Pipeline

    p = Pipeline.from_yaml(path)
    options = {"image": image, "params": _params(params)}
    doc = p.to_argo_cron(schedule, **options) if schedule else p.to_argo(**options)
    click.echo(yaml.safe_dump(doc, sort_keys=False))
