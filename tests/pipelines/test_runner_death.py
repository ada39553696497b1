"""A runner killed with SIGKILL leaves no stage process behind.

The stage's own process dies with the runner (a parent-death signal); what it started is
killed by the next run of the pipeline, which finds the dead run and its attempts' process
groups in the workspace.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import mlops_nb as mnb
from mlops_nb.pipelines import reaper, tables

from .conftest import gone, wait_for, write

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux prctl")


def _pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


@pytest.fixture
def strays() -> Iterator[list[Path]]:
    """Pid files of processes the killed runner's tree started: killed if a test failed."""
    files: list[Path] = []
    yield files
    for f in files:
        pid = _pid(f)
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def test_stages_of_a_killed_runner_are_gone_after_the_next_run(
    ws: mnb.Workspace, project: Path, strays: list[Path]
) -> None:
    write(
        project,
        "work.sh",
        """\
sleep 1000 &
echo $! > "$MLOPS_NB_PIPELINE_DIR/child.pid"
echo $$ > "$MLOPS_NB_PIPELINE_DIR/stage.pid"
wait
""",
    )
    write(project, "pipeline.yaml", "name: orphans\nstages:\n  - {name: work, script: work.sh}\n")
    strays += [project / "stage.pid", project / "child.pid"]
    tables.ensure(ws._store)
    cli = subprocess.Popen(
        [sys.executable, "-m", "mlops_nb.cli", "-w", ws.path, "pipeline", "run",
         str(project / "pipeline.yaml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def recorded() -> bool:
            row = ws._store.read(
                lambda con: con.execute(
                    "SELECT count(*) FROM pipeline_attempts WHERE verdict = 'running' "
                    "AND pid IS NOT NULL"
                ).fetchone()
            )
            return bool(row and row[0]) and _pid(project / "stage.pid") is not None

        wait_for(recorded, timeout=120)
        stage, child = _pid(project / "stage.pid"), _pid(project / "child.pid")
        assert stage is not None and child is not None
    finally:
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=60)
    assert gone(stage, timeout=30), "the stage process outlived its runner"

    after = mnb.Pipeline(name="orphans", stages=[mnb.Stage("work", script="true")])
    assert after.run(workspace=ws).wait(240).status().status == "succeeded"
    assert gone(child, timeout=30), "the stage's child outlived the abandoned run"
    runs = ws.pipeline_runs()
    assert sorted(runs["status"]) == ["abandoned", "succeeded"]
    abandoned = runs[runs["status"] == "abandoned"]["run_id"].item()
    (attempt,) = ws.pipeline_run(abandoned).attempts()
    assert attempt.verdict == "abandoned" and "killed" in str(attempt.error)


def test_reap_leaves_a_process_that_reused_the_pid_alone() -> None:
    proc = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        started = psutil.Process(proc.pid).create_time()
        # Recorded with an earlier start time: this is another process with the same pid.
        assert reaper.reap(proc.pid, started - 3600) == 0
        assert proc.poll() is None
        assert reaper.reap(proc.pid, started) == 1
        # reap() waited for it (and so collected its exit status): it has ended.
        proc.wait(timeout=30)
        assert proc.poll() is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
