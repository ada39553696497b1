"""Progress bars: a text bar on a terminal, nothing when piped, a widget in a kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import mlops_nb as mnb
from mlops_nb import progress

SCRIPT = (
    "import time\nfrom mlops_nb.progress import progress\n"
    "for _ in progress(range(3), desc='work', delay=0):\n    time.sleep(0.05)\n"
)


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)  # fmt: skip


def test_piped_is_quiet_and_text_mode_draws_a_bar() -> None:
    quiet = _run({"MLOPS_NB_PROGRESS": "auto"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    text = _run({"MLOPS_NB_PROGRESS": "text"})
    assert "work: 100%" in text.stderr and "3/3" in text.stderr


def test_modes() -> None:
    assert progress.mode({}, tty=True, notebook=False) == "text"
    assert progress.mode({}, tty=False, notebook=True) == "notebook"
    assert progress.mode({"MLOPS_NB_PROGRESS": "text"}, tty=False, notebook=True) == "text"
    with pytest.raises(mnb.InvalidArgument, match="use one of auto, notebook, text, off"):
        progress.mode({"MLOPS_NB_PROGRESS": "loud"})


def test_wait_until_reports_done_and_timeout() -> None:
    steps = iter([(False, 10.0, "a"), (False, 50.0, "b"), (True, 100.0, "c")])
    assert progress.wait_until(lambda: next(steps), poll=0.0, timeout=10) is True
    assert progress.wait_until(lambda: (False, 0.0, ""), poll=0.01, timeout=0.05) is False
