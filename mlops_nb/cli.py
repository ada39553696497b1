"""The ``mlops-nb`` command: the registry from a terminal or a scheduler.

mlops-nb --workspace mlops.duckdb models
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
@click.pass_context
def main(ctx: click.Context, workspace: str, artifacts: str | None) -> None:
    """Model registry, deployments and monitoring for notebooks."""
    ctx.obj = {"workspace": workspace, "artifacts": artifacts}


def _ws(ctx: click.Context) -> Workspace:
    return open_workspace(ctx.obj["workspace"], artifacts=ctx.obj["artifacts"], linger=0)


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
def demo(folder: str) -> None:
    """Train, register, promote and print: the registry story end to end."""
    from .demo import run

    run(folder)


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
@click.pass_context
def serve(
    ctx: click.Context, model: str, version: str, host: str, port: int, spool: bool,
    batching: bool,
) -> None:  # fmt: skip
    """Serve one model version over the Open Inference Protocol (V2), in the foreground."""
    from .serve.__main__ import serve as run_server
    from .serve.spec import ServeSpec

    with _ws(ctx) as ws:
        v = ws.model(model).version(version)
        spec = ServeSpec.of(v, spool=str(ws.spool_root) if spool else None, batching=batching)
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
    with open_workspace(ctx.obj["workspace"], artifacts=ctx.obj["artifacts"]) as ws:
        dep = ws.deployment(deployment)
        dep.status()
        with contextlib.suppress(KeyboardInterrupt):
            run_watch(ws, dep.name, rules, max_checks=checks)
        _print(dep.checks().drop(columns=["evidence"]).tail(20))


def _workspace_here(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["workspace"] = value


# `mlops-nb serve --workspace ws.duckdb ...` reads as well as `mlops-nb -w ws.duckdb serve`:
# every command takes the option too.
for _command in main.commands.values():
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
