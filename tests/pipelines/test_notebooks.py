"""Notebook stages through papermill: parameters, a dead kernel, a hung kernel."""

from __future__ import annotations

from pathlib import Path

import psutil

import mlops_nb as mnb

from ..conftest import write_notebook
from .conftest import gone


def _notebook(path: Path, *cells: str) -> Path:
    return write_notebook(path, *cells, parameters="data = 'default'")


def test_a_dead_kernel_fails_the_stage_with_a_clear_log(ws: mnb.Workspace, project: Path) -> None:
    _notebook(project / "dies.ipynb", "print('about to die', data)", "import os\nos._exit(3)")
    p = mnb.Pipeline(name="dead", base_dir=project,
                     stages=[mnb.Stage("dies", notebook="dies.ipynb", timeout_minutes=4)])  # fmt: skip
    run = p.run(workspace=ws, params={"data": "x"}).wait(280)
    assert run.status().stages["dies"].status == "failed"
    log = run.logs("dies")
    assert "DeadKernelError" in log or "Kernel died" in log
    assert "about to die x" in log


def test_a_hung_kernel_is_killed_by_the_timeout(ws: mnb.Workspace, project: Path) -> None:
    pid_file = project / "kernel.pid"
    _notebook(project / "hangs.ipynb",
              f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(1000)")  # fmt: skip
    p = mnb.Pipeline(name="hung", base_dir=project,
                     stages=[mnb.Stage("hangs", notebook="hangs.ipynb", timeout_minutes=0.5)])  # fmt: skip
    run = p.run(workspace=ws).wait(280)
    (attempt,) = run.attempts("hangs")
    assert attempt.verdict == "timeout"
    kernel = int(pid_file.read_text())
    # The kernel runs in a session of its own (jupyter_client starts it so): it is found
    # through the process tree and killed with the stage.
    assert gone(kernel), psutil.Process(kernel).cmdline()
