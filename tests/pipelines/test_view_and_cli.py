"""The run view (text, static HTML, widget when available) and the pipeline commands."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from click.testing import CliRunner

import mlops_nb as mnb
from mlops_nb.cli import main
from mlops_nb.pipelines.view import RunView

from .conftest import write


def _failing(project: Path) -> mnb.Pipeline:
    return mnb.Pipeline(name="viewed", base_dir=project, stages=[
        mnb.Stage("prep", script="echo prepared"),
        mnb.Stage("train", script="echo 'loss went NaN' >&2; exit 1", dependencies=["prep"], retry_count=1,
                  retry_backoff=0),
        mnb.Stage("report", script="true", dependencies=["train"]),
    ])  # fmt: skip


def test_view_text_html_and_widget(ws: mnb.Workspace, project: Path) -> None:
    run = _failing(project).run(workspace=ws).wait(240)
    view = run.view()
    static = RunView(run)
    assert (
        repr(static)
        == "<RunView viewed failed: prep=succeeded train=failed report=upstream_failed>"
    )
    text = static.text().splitlines()
    assert text[1:] == ["  prep  succeeded  1 attempt  " + text[1].split("  ")[-1],
                        text[2], "  report  upstream_failed  0 attempts"]  # fmt: skip
    assert text[2].startswith("  train  failed  2 attempts") and text[2].endswith("exit code 1")
    html = static._repr_html_()
    for name, state in (("prep", "succeeded"), ("train", "failed"), ("report", "upstream_failed")):
        assert f'data-stage="{name}" data-status="{state}"' in html
    assert html.count("<line ") == 2  # two dependency edges
    assert "<b>log: train</b>" in html and "loss went NaN" in html  # the failed stage's log
    assert html == run._repr_html_()
    if importlib.util.find_spec("ipywidgets") is None:
        assert isinstance(view, RunView)
    else:
        assert "mnb-run-view" in view._dom_classes
        assert 'data-status="failed"' in view.children[0].value


def test_cli_run_runs_show_and_argo(ws: mnb.Workspace, project: Path) -> None:
    ws.close()
    write(
        project,
        "pipeline.yaml",
        """\
name: cli
stages:
  - {name: hello, script: 'echo "data is $MLOPS_NB_PARAM_DATA"', cache: true}
  - {name: after, script: 'echo after', dependencies: [hello]}
""",
    )
    write(project, "broken.yaml", "name: broken\nstages:\n  - {name: bad, script: 'exit 3'}\n")
    cli = CliRunner()
    path = ws.path
    done = cli.invoke(
        main, ["-w", path, "pipeline", "run", str(project / "pipeline.yaml"), "-p", "data=2026-11"]
    )
    assert done.exit_code == 0, done.output
    assert "hello  succeeded  1 attempt" in done.output
    failed = cli.invoke(main, ["pipeline", "run", str(project / "broken.yaml"), "-w", path])
    assert failed.exit_code == 1 and "bad  failed  1 attempt" in failed.output
    listed = cli.invoke(main, ["pipeline", "runs", "-w", path])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[1].split()[1:3] == ["broken", "failed"] and lines[2].split()[1:3] == [
        "cli",
        "succeeded",
    ]
    run_id = lines[2].split()[0]
    logs = cli.invoke(main, ["pipeline", "show", run_id, "--logs", "hello", "-w", path])
    assert logs.output.strip() == "data is 2026-11"
    cached = cli.invoke(
        main, ["-w", path, "pipeline", "run", str(project / "pipeline.yaml"), "-p", "data=2026-11"]
    )
    assert "hello  cached" in cached.output
    forced = cli.invoke(main, ["-w", path, "pipeline", "run", str(project / "pipeline.yaml"), "-p",
                               "data=2026-11", "--force"])  # fmt: skip
    assert "hello  succeeded" in forced.output
    argo = cli.invoke(
        main, ["pipeline", "argo", str(project / "pipeline.yaml"), "--cron", "0 * * * *"]
    )
    assert yaml.safe_load(argo.output)["kind"] == "CronWorkflow"
    bad = cli.invoke(
        main, ["pipeline", "run", str(project / "pipeline.yaml"), "-p", "oops", "-w", path]
    )
    assert bad.exit_code == 1 and "-p takes NAME=VALUE" in bad.output
    write(project, "typo.yaml", "name: typo\nstages:\n  - {name: a, script: 'true', retires: 2}\n")
    typo = cli.invoke(main, ["pipeline", "run", str(project / "typo.yaml"), "-w", path])
    assert typo.exit_code == 1 and "typo.yaml:3: unknown key 'retires'" in typo.output


def test_live_widget_follows_a_running_pipeline(ws: mnb.Workspace, project: Path) -> None:
    import pytest

    pytest.importorskip("ipywidgets")
    from .conftest import wait_for

    release = project / "release"
    p = mnb.Pipeline(name="live", base_dir=project, stages=[
        mnb.Stage("work", script=f"echo working; while [ ! -e {release} ]; do sleep 0.05; done"),
    ])  # fmt: skip
    run = p.run(workspace=ws)
    wait_for(lambda: run.status().stages["work"].status == "running")
    box = run.view()
    graph, picker, pane = box.children
    assert 'data-status="running"' in graph.value
    picker.value = "work"
    wait_for(lambda: pane.value.strip() == "working")
    release.touch()
    run.wait(240)
    wait_for(lambda: 'data-status="succeeded"' in graph.value)


def test_sigterm_to_the_command_cancels_the_run_and_its_stages(
    ws: mnb.Workspace, project: Path
) -> None:
    import signal
    import subprocess
    import sys

    from .conftest import gone, wait_for

    ws.close()
    pid_file = project / "stage.pid"
    write(
        project,
        "long.yaml",
        f"""\
name: long
stages:
  - {{name: long, script: 'echo $$ > {pid_file}; sleep 1000'}}
  - {{name: next, script: 'true', dependencies: [long]}}
""",
    )
    cli = subprocess.Popen([sys.executable, "-m", "mlops_nb.cli", "-w", ws.path, "pipeline", "run",
                            str(project / "long.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)  # fmt: skip
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=120)
        cli.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 1 and "cancelling run" in err
    assert "long  cancelled" in out and "next  cancelled" in out
    assert gone(int(pid_file.read_text()))
    with mnb.open(ws.path) as again:
        assert again.pipeline_runs()["status"].tolist() == ["cancelled"]


def test_run_repr_reads_the_store_and_survives_a_closed_workspace(
    tmp_path: Path, project: Path
) -> None:
    ws = mnb.open(tmp_path / "w.duckdb")
    run = mnb.Pipeline(name="r", base_dir=project, stages=[mnb.Stage("a", script="true")]).run(
        workspace=ws
    )
    run.wait(240)
    assert repr(run) == f"<Run {run.id} succeeded>"
    ws.close()
    assert repr(run) == f"<Run {run.id}>"
