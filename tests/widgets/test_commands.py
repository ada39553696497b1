"""`mlops-nb monitor` (papermill runs of notebooks/monitoring.ipynb) and the quickstart
run headless as `make demo` runs it: exit codes, reports, sizes, charts in the export."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

import mlops_nb as mnb
from tests.test_monitoring_notebook import MODEL, _recent, _traffic, _workspace

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLOPS_NB_PROGRESS": "off"}
    return subprocess.run([sys.executable, "-m", "mlops_nb.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)  # fmt: skip


def _log(path: Path, X: Any, clf: Any, shift_sd: float) -> None:
    shifted = _traffic(X, 300, shift_sd=shift_sd, seed=1)
    with mnb.open(path) as ws:
        ws.monitor(MODEL).log(
            shifted, clf.predict(shifted), version=1,
            confidence=clf.predict_proba(shifted).max(axis=1), timestamps=_recent(300, seed=2),
            latency_ms=[2.0] * 300,
        )  # fmt: skip


def _views_svgs(nb: nbformat.NotebookNode) -> list[int]:
    """The number of SVG charts in each displayed view's static copy."""
    counts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html", "")
            if "mnb-static" in html:
                counts.append(html.count("<svg"))
    return counts


def test_monitor_healthy_run_exits_zero_with_a_report(tmp_path: Path) -> None:
    path, X, clf = _workspace(tmp_path)
    _log(path, X, clf, shift_sd=0.0)
    done = _cli("--workspace", str(path), "monitor", "--model", MODEL, "--out",
                str(tmp_path / "runs"), "-p", "bucket", "2h", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{MODEL}: no threshold breached" in done.stdout
    html = next((tmp_path / "runs").glob("*.html")).read_text()
    executed = nbformat.read(next((tmp_path / "runs").glob("*.ipynb")), as_version=4)
    svgs = _views_svgs(executed)
    assert len(svgs) == 2 and all(n >= 1 for n in svgs)  # the drift and monitoring views
    assert html.count("<svg") >= sum(svgs)
    assert "<script" not in html
    with mnb.open(path) as ws:
        assert len(ws.monitor(MODEL).history()) == 1


def test_monitor_breach_exits_non_zero_and_still_writes_the_report(tmp_path: Path) -> None:
    path, X, clf = _workspace(tmp_path)
    _log(path, X, clf, shift_sd=3.0)
    done = _cli("--workspace", str(path), "monitor", "--model", MODEL, "--out",
                str(tmp_path / "runs"), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "breach: ThresholdBreached: iris: drifted: 4 of 4 features" in done.stderr
    html = next((tmp_path / "runs").glob("*.html")).read_text()
    assert "ThresholdBreached" in html and "<svg" in html
    assert "drifted: 4 of 4 features" in html


def test_monitor_needs_a_real_notebook(tmp_path: Path) -> None:
    done = _cli("monitor", "--model", "x", "--notebook", str(tmp_path / "nope.ipynb"),
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2  # a failure, not a breach
    assert "does not exist" in done.stderr


def test_quickstart_headless_is_small_and_its_export_has_every_chart(tmp_path: Path) -> None:
    done = _cli("demo", "--notebook", str(ROOT / "notebooks" / "quickstart.ipynb"), "--dir",
                str(tmp_path / "demo"), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "open the notebooks: jupyter lab notebooks/" in done.stdout
    executed = tmp_path / "demo" / "quickstart.ipynb"
    assert executed.stat().st_size <= 2 * 1024 * 1024
    nb = nbformat.read(executed, as_version=4)
    svgs = _views_svgs(nb)
    # registry, drift, monitoring, deployment (twice), registry: every view was shown.
    assert len(svgs) == 6
    assert svgs[1] == 2 and svgs[2] >= 4 and svgs[3] >= 1  # drift: distribution, history
    html = (tmp_path / "demo" / "quickstart.html").read_text()
    assert html.count("<svg") >= sum(svgs)
    assert not re.search(r"(src|href)=[\"']https?://", html)
    assert "<script" not in html
    # The scratch workspace was removed at the end; the deployment was deleted before.
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "quickstart.html", "quickstart.ipynb",
    ]  # fmt: skip
