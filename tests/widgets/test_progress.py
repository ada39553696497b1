"""Progress bars: a text bar on a terminal, nothing when piped, a widget in a kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import mlops_nb as mnb
from mlops_nb import progress

from ..conftest import notebook

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


def test_a_bar_is_drawn_only_after_its_delay(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("MLOPS_NB_PROGRESS", "text")
    quick = progress.Bar(total=100, desc="quick", delay=60)
    quick.move(50, "half")
    quick.close()
    assert "quick" not in capsys.readouterr().err
    slow = progress.Bar(total=100, desc="slow", delay=0)
    slow.move(50, "progressing")
    slow.close()
    assert "slow:  50%" in capsys.readouterr().err


class _Rollout:
    """Stands in for a deployment (only ``status()``, ``wait()`` and ``name`` are read):
    a rollout at 50%, then one that has succeeded."""

    name = "iris"

    def __init__(self) -> None:
        self.phases = iter(["progressing", "succeeded"])
        self.waited = False

    def status(self) -> dict[str, object]:
        return {"rollout": {"phase": next(self.phases, "succeeded"), "weight": 50}}

    def wait(self, timeout: float) -> _Rollout:
        self.waited = True
        return self


def test_watch_rollout_ends_with_the_rollout() -> None:
    dep = _Rollout()
    import time

    t0 = time.monotonic()
    assert progress.watch_rollout(dep, timeout=60) is dep
    assert dep.waited and time.monotonic() - t0 < 30


def test_a_bulk_log_shows_its_chunks(tmp_path: object, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from mlops_nb.monitor import core, logstore

    monkeypatch.setenv("MLOPS_NB_PROGRESS", "text")
    monkeypatch.setattr(logstore, "CHUNK_ROWS", 1000)  # 5 chunks for 5,000 rows
    real = core.progress
    # Shown at once rather than after half a second, so a fast machine shows it too.
    monkeypatch.setattr(core, "progress", lambda it, **kw: real(it, **{**kw, "delay": 0}))
    with mnb.open(Path(str(tmp_path)) / "w.duckdb", create=True) as ws:
        X = pd.DataFrame({"x": np.arange(5000.0)})
        ws.model("m").register({"w": 1}, input_example=X.head(3))
        ids = ws.monitor("m").log(X, np.zeros(5000), version=1)
        assert len(ids) == 5000
        assert len(ws.monitor("m").predictions()) == 5000
    err = capsys.readouterr().err
    assert "log m: 100%" in err and "5/5" in err, err


@pytest.mark.parametrize(("exact", "shown"), [(True, "drift: 100%"),
                                              (False, "drift (streamed): 100%")])  # fmt: skip
def test_drift_over_many_columns_shows_a_bar(
    tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    exact: bool, shown: str,
) -> None:  # fmt: skip
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from mlops_nb.monitor import compare

    monkeypatch.setenv("MLOPS_NB_PROGRESS", "text")
    # Shown at once rather than after half a second, so a fast machine shows it too.
    real_progress, real_bar = compare.progress, compare.Bar
    monkeypatch.setattr(
        compare, "progress", lambda it, **kw: real_progress(it, **{**kw, "delay": 0})
    )
    monkeypatch.setattr(compare, "Bar", lambda **kw: real_bar(**{**kw, "delay": 0}))
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({f"f{i:02d}": rng.normal(0, 1, 500) for i in range(40)})
    cur = pd.DataFrame({f"f{i:02d}": rng.normal(0.1, 1, 300) for i in range(40)})
    with mnb.open(Path(str(tmp_path)) / "w.duckdb", create=True) as ws:
        ws.model("m").register({"w": 1})
        report = ws.monitor("m").drift(ref, cur, exact=exact, store=False)
        assert len(report.summary) == 40
    err = capsys.readouterr().err
    assert shown in err, err
    assert ("40/40" if exact else "1300/1300") in err, err


def test_a_kernel_gets_a_widget_bar_not_a_text_one() -> None:
    """In a real kernel (nbclient), with the mode left to its detection."""
    from nbclient import NotebookClient

    # The variable is dropped in the kernel: the tests' environment turns bars off.
    nb = notebook(
        "import os\nos.environ.pop('MLOPS_NB_PROGRESS', None)\n"
        "from mlops_nb import progress\nprint(progress.mode())\n" + SCRIPT
    )
    NotebookClient(nb, timeout=120, kernel_name="python3", startup_timeout=120).execute()
    outputs = nb.cells[0].outputs
    assert any(o.get("text", "").startswith("notebook") for o in outputs), outputs
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, outputs  # tqdm's widget bar was displayed ...
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "work" not in stderr  # ... and no text bar
