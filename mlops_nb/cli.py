"""The ``mlops-nb`` command: the registry from a terminal or a scheduler.

mlops-nb --workspace mlops.duckdb models
mlops-nb --create --workspace new.duckdb models   # a missing file is refused otherwise
mlops-nb versions churn
mlops-nb promote churn 3 production --reason "passed offline eval"
mlops-nb audit --model churn
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click
import pandas as pd

from .errors import MlopsError
from .workspace import Workspace
from .workspace import open as open_workspace


def _print(frame: pd.DataFrame) -> None:
    if frame.empty:
        click.echo("(none)")
        return
    with pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40
    ):
        click.echo(frame.to_string(index=False))


class _Errors(click.Group):
    """Turn SDK errors into one clear line and exit status 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlopsError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


@click.group(cls=_Errors)
@click.option(
    "--workspace",
    "-w",
    envvar="MLOPS_NB_WORKSPACE",
    default="mlops.duckdb",
    show_default=True,
    help="DuckDB workspace file (env MLOPS_NB_WORKSPACE).",
)
@click.option(
    "--artifacts",
    envvar="MLOPS_NB_ARTIFACTS",
    default=None,
    help="Artifact folder or s3://bucket/prefix (env MLOPS_NB_ARTIFACTS).",
)
@click.option(
    "--create",
    is_flag=True,
    help="Create the workspace file if it does not exist (otherwise a missing file is an "
    "error, so a mistyped -w does not start an empty workspace).",
)
@click.pass_context
def main(ctx: click.Context, workspace: str, artifacts: str | None, create: bool) -> None:
    """Model registry, deployments and monitoring for notebooks."""
    ctx.obj = {"workspace": workspace, "artifacts": artifacts, "create": create}


def _ws(ctx: click.Context, linger: float = 0) -> Workspace:
    return open_workspace(
        ctx.obj["workspace"],
        artifacts=ctx.obj["artifacts"],
        linger=linger,
        create=bool(ctx.obj.get("create")),
    )


@main.command()
@click.pass_context
def models(ctx: click.Context) -> None:
    """List models with their production and latest versions."""
    with _ws(ctx) as ws:
        _print(ws.models())


@main.command()
@click.argument("name")
@click.pass_context
def versions(ctx: click.Context, name: str) -> None:
    """List a model's versions, newest first."""
    with _ws(ctx) as ws:
        frame = ws.model(name).versions()
        _print(frame.drop(columns=["digest", "model"]))


@main.command()
@click.argument("name")
@click.argument("version")
@click.argument("stage")
@click.option("--reason", default=None, help="Why; recorded in the audit log.")
@click.option("--allow-archived", is_flag=True, help="Allow bringing back an archived version.")
@click.pass_context
def promote(
    ctx: click.Context,
    name: str,
    version: str,
    stage: str,
    reason: str | None,
    allow_archived: bool,
) -> None:
    """Move VERSION of NAME to STAGE (development, staging, production, archived)."""
    with _ws(ctx) as ws:
        v = (
            ws.model(name)
            .version(version)
            .promote(stage, reason=reason, allow_archived=allow_archived)
        )
        click.echo(f"{v.model} v{v.number} is now {v.stage}")


@main.command()
@click.option("--model", default=None, help="Only this model's records.")
@click.option("--limit", default=None, type=int, help="Only the newest N records.")
@click.pass_context
def audit(ctx: click.Context, model: str | None, limit: int | None) -> None:
    """Show the audit log."""
    with _ws(ctx) as ws:
        _print(ws.audit(model=model, limit=limit))


@main.command()
@click.option(
    "--dir",
    "folder",
    default=".demo",
    show_default=True,
    help="Folder for the demo workspace (recreated).",
)
@click.option(
    "--notebook",
    default=None,
    help="Run this notebook headless instead (e.g. notebooks/quickstart.ipynb) and write "
    "its executed copy and HTML report into --dir.",
)
def demo(folder: str, notebook: str | None) -> None:
    """Train, register, promote, deploy and monitor: the whole story end to end."""
    if notebook is None:
        from .demo import run

        run(folder)
        return
    from .reports import execute

    click.echo(f"running {notebook} headless (papermill)...", err=True)
    result = execute(notebook, folder)
    if result.error is not None:
        raise result.error
    click.echo(f"executed notebook: {result.notebook}")
    click.echo(f"HTML report:       {result.html}  (open it in a browser; works offline)")
    click.echo("open the notebooks: jupyter lab notebooks/")


def _parameters(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``-p key value`` pairs: numbers, true/false/null (JSON or Python spelling), else text."""
    import json

    literals = {"True": True, "False": False, "None": None}
    values: dict[str, Any] = {}
    for key, value in pairs:
        try:
            values[key] = literals[value] if value in literals else json.loads(value)
        except ValueError:
            values[key] = value
    return values


@main.command()
@click.option("--model", required=True, help="Model to monitor.")
@click.option("-p", "--parameter", "params", type=(str, str), multiple=True,
              help="A notebook parameter: -p current 'last 6h' -p max_error_rate 0.01.")  # fmt: skip
@click.option("--out", "out_dir", default="monitoring-runs", show_default=True,
              help="Folder, or s3://bucket/prefix, for the executed notebook and its HTML "
              "report (S3: one <prefix>/<model>/<start UTC>/ key per run).")  # fmt: skip
@click.option("--notebook", default=None,
              help="Monitoring notebook, a path or s3://... (default: the project's).")  # fmt: skip
@click.pass_context
def monitor(ctx: click.Context, model: str, params: tuple[tuple[str, str], ...], out_dir: str,
            notebook: str | None) -> None:  # fmt: skip
    """Run the monitoring notebook for MODEL headless and write its report.

    \b
    Exit status: 0 healthy; 1 a threshold was breached (the report is written);
    2 the run failed for another reason (no such model or workspace, a cell
    raised, bad parameters, the upload failed).
    """
    from pathlib import Path

    from .monitor.headless import BREACHED, HEALTHY, run

    values = {"workspace": str(Path(ctx.obj["workspace"]).resolve()), "model": model,
              "fail_on_drift": True, **_parameters(params)}  # fmt: skip
    try:
        source = notebook or str(_project_notebook("monitoring.ipynb"))
        outcome = run(source, model, values, out_dir)
    except MlopsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Exception as e:  # anything else is a failed run too, never a breach (exit 1)
        click.echo(f"error: the run failed (not a threshold breach): {type(e).__name__}: {e}",
                   err=True)  # fmt: skip
        sys.exit(2)
    click.echo(f"executed notebook: {outcome.notebook}")
    click.echo(f"HTML report:       {outcome.html}")
    if outcome.status == HEALTHY:
        click.echo(f"{model}: no threshold breached")
    elif outcome.status == BREACHED:
        click.echo(f"breach: {outcome.message}", err=True)
    else:
        click.echo(f"error: the run failed (not a threshold breach): {outcome.message}", err=True)
    sys.exit(outcome.status)


def _project_notebook(name: str) -> Any:
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / name
    if not path.is_file():
        raise MlopsError(
            f"cannot find notebooks/{name} next to this installation; pass --notebook PATH"
        )
    return path


@main.command()
@click.option("--port", default=8866, show_default=True, type=int)
@click.pass_context
def ui(ctx: click.Context, port: int) -> None:
    """Serve a dashboard of the workspace's views (Voila) on 127.0.0.1, in the foreground."""
    import shutil
    import tempfile
    from pathlib import Path

    import nbformat

    if not _has_module("voila"):
        raise MlopsError("the dashboard needs Voila: pip install 'mlops-nb[notebooks]'")
    path = Path(ctx.obj["workspace"]).resolve()
    if not path.is_file():
        raise MlopsError(f"no workspace at {str(path)!r}; pass --workspace PATH")
    folder = Path(tempfile.mkdtemp(prefix="mlops-nb-ui-"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# mlops_nb · {path.name}"),
        nbformat.v4.new_code_cell(
            f"from mlops_nb.widgets.dashboard import show\n\nshow({str(path)!r})"
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / "dashboard.ipynb")
    click.echo(f"dashboard of {path} on http://127.0.0.1:{port}/", err=True)
    import os

    from voila.app import Voila

    # The mlops-nb template (shipped in mlops_nb/widgets/share) loads nothing from the web.
    share = str(Path(__file__).resolve().parent / "widgets" / "share")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (share, os.environ.get("JUPYTER_PATH")) if p
    )
    try:
        # In this process, so SIGTERM stops the server and the folder is still removed.
        Voila.launch_instance(argv=[
            "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", "--Voila.port_retries=0",
            "--template=mlops-nb", str(folder / "dashboard.ipynb"),
        ])  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@main.command()
@click.option("--model", required=True, help="Model name.")
@click.option(
    "--version",
    "version",
    default="production",
    show_default=True,
    help="Version reference: a number, 'latest', '@alias', a stage or a label.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--spool/--no-spool",
    default=True,
    show_default=True,
    help="Log request/response payloads to the workspace's spool folder.",
)
@click.option(
    "--batching/--no-batching",
    default=True,
    show_default=True,
    help="Micro-batch concurrent requests into one predict.",
)
@click.option(
    "--workers", type=int, default=None, help="Threads (or processes) that run predictions [2]."
)
@click.option("--pool", type=click.Choice(["threads", "processes"]), default=None,
              help="Where predictions run: threads, or processes for models that hold "
                   "the GIL [threads].")  # fmt: skip
@click.option("--max-queue", type=int, default=None,
              help="Requests waiting for a worker before 503 + Retry-After [256].")  # fmt: skip
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Seconds a request may wait for its prediction before 504 [60].")  # fmt: skip
@click.option("--stuck-after", "stuck_after_s", type=float, default=None,
              help="Report not ready while a prediction runs longer than this [30 s].")  # fmt: skip
@click.option("--max-body", "max_body_bytes", type=int, default=None,
              help="Largest request body in bytes; larger ones get 413 [10 MiB].")  # fmt: skip
@click.option("--log-required", is_flag=True, default=False,
              help="Answer 503 instead of serving unlogged while the spool fails.")  # fmt: skip
@click.pass_context
def serve(
    ctx: click.Context, /, model: str, version: str, host: str, port: int, spool: bool,
    batching: bool, log_required: bool, **limits: Any,
) -> None:  # fmt: skip
    """Serve one model version over the Open Inference Protocol (V2), in the foreground."""
    from .deploy.options import check_server
    from .serve.__main__ import serve as run_server
    from .serve.spec import ServeSpec

    given = {k: v for k, v in limits.items() if v is not None}
    options = check_server({**given, "batching": batching, "log_required": log_required})
    with _ws(ctx) as ws:
        v = ws.model(model).version(version)
        spec = ServeSpec.of(v, spool=str(ws.spool_root) if spool else None, **options)
    click.echo(f"serving {spec.model} v{spec.version} on http://{host}:{port}", err=True)
    run_server(spec, host, port)


@main.command()
@click.pass_context
def deployments(ctx: click.Context) -> None:
    """List deployments with their live state."""
    with _ws(ctx) as ws:
        _print(ws.deployments())


@main.command()
@click.argument("deployment")
@click.option("--max-error-rate", type=float, default=None)
@click.option("--max-p95-latency-ms", type=float, default=None)
@click.option("--max-p99-latency-ms", type=float, default=None)
@click.option("--min-accuracy", type=float, default=None)
@click.option("--max-drift-share", type=float, default=None)
@click.option("--interval", default="10s", show_default=True)
@click.option("--window", default="1m", show_default=True)
@click.option("--failure-limit", default=3, show_default=True, type=int)
@click.option("--min-samples", default=20, show_default=True, type=int)
@click.option("--checks", default=None, type=int, help="Stop after this many checks.")
@click.pass_context
def guard(
    ctx: click.Context, deployment: str, max_error_rate: float | None,
    max_p95_latency_ms: float | None, max_p99_latency_ms: float | None,
    min_accuracy: float | None, max_drift_share: float | None, interval: str, window: str,
    failure_limit: int, min_samples: int, checks: int | None,
) -> None:  # fmt: skip
    """Watch DEPLOYMENT headless; roll back when its thresholds are breached."""
    from .deploy.controller import run_watch
    from .deploy.strategies import Guard

    rules = Guard(
        max_error_rate=max_error_rate, max_p95_latency_ms=max_p95_latency_ms,
        max_p99_latency_ms=max_p99_latency_ms, min_accuracy=min_accuracy,
        max_drift_share=max_drift_share, interval=interval, window=window,
        failure_limit=failure_limit, min_samples=min_samples,
    )  # fmt: skip
    with _ws(ctx, linger=0.2) as ws:
        dep = ws.deployment(deployment)
        dep.status()
        with contextlib.suppress(KeyboardInterrupt):
            run_watch(ws, dep.name, rules, max_checks=checks)
        _print(dep.checks().drop(columns=["evidence"]).tail(20))


from .pipelines.cli import pipeline  # noqa: E402

main.add_command(pipeline)


def _workspace_here(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["workspace"] = value


# `mlops-nb serve --workspace ws.duckdb ...` reads as well as `mlops-nb -w ws.duckdb serve`:
# every command takes the option too.
for _command in [*main.commands.values(), *pipeline.commands.values()]:
    _command.params.append(
        click.Option(
            ["--workspace", "-w"],
            expose_value=False,
            callback=_workspace_here,
            help="DuckDB workspace file (overrides the one given before the command).",
        )
    )


if __name__ == "__main__":  # pragma: no cover
    main()
