"""A real browser (Debian's chromium, driven by Playwright) on JupyterLab and `mlops-nb ui`.

Both servers bind 127.0.0.1; every request the page makes to anywhere else is aborted and
recorded, and the tests assert there was none. In CI these tests never skip: `.ci/run`
installs chromium. Elsewhere they skip when chromium is missing, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd
import pytest

import mlops_nb as mnb
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
LOCAL = {"127.0.0.1", "localhost"}


def _chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI always runs this")


class Browser:
    """One headless chromium page that may only talk to 127.0.0.1."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.blocked: list[str] = []

    def route(self, route: Any) -> None:
        url = route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("data", "blob") or parsed.hostname in LOCAL:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        context = b.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(120_000)
        wrapper = Browser(page)
        context.route("**/*", wrapper.route)
        try:
            yield wrapper
        finally:
            context.close()
            b.close()


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not open within {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _delete_deployments(path: Path) -> None:
    if path.exists():
        with mnb.open(path) as ws:
            for name in ws.deployments()["name"].tolist():
                ws.deployment(name).delete()


def _jupyter_env(tmp: Path) -> dict[str, str]:
    """Settings of this test only: no news pop-up, no autosave, nothing from ~/.jupyter."""
    settings = tmp / "app-settings"
    settings.mkdir()
    overrides = {
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                         "checkForUpdates": False},
        "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
        # Every cell stays in the page (no virtual scrolling), so every prompt can be read.
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    }  # fmt: skip
    (settings / "overrides.json").write_text(json.dumps(overrides))
    return {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "MLOPS_NB_PROGRESS": "off",
            "JUPYTERLAB_SETTINGS_DIR": str(tmp / "user-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
            "MLOPS_NB_TEST_APP_SETTINGS": str(settings)}  # fmt: skip


def _quickstart_copy(root: Path, workdir: Path) -> Path:
    """The quickstart with its ``workdir`` parameter set, so the files outlive the run."""
    nb = json.loads((ROOT / "notebooks" / "quickstart.ipynb").read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = [f"workdir = {str(workdir)!r}\n"]
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    target = root / "quickstart.ipynb"
    target.write_text(json.dumps(nb))
    return target


def _click_promote(page: Any, version_label: str, reason: str) -> None:
    """In the last registry view on the page: choose a version, Promote, reason, Confirm."""
    view = page.locator(".mnb-registryview").last
    view.locator(".mnb-version-select select").select_option(label=version_label)
    view.locator(".mnb-stage-select select").select_option("staging")
    view.locator("button.mnb-promote").click()
    view.locator(".mnb-reason input").fill(reason)
    view.locator("button.mnb-confirm").click()
    view.locator(".mnb-message", has_text="is now staging").wait_for()


# The whole quickstart runs in the page (deployments included): about a minute on a quiet
# machine, several on a loaded one.
@pytest.mark.timeout(600)
def test_quickstart_in_jupyterlab(browser: Browser, tmp_path: Path) -> None:
    root, workdir = tmp_path / "root", tmp_path / "work"
    root.mkdir()
    _quickstart_copy(root, workdir)
    env = _jupyter_env(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         "--IdentityProvider.token=", "--PasswordIdentityProvider.hashed_password=",
         f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={env['MLOPS_NB_TEST_APP_SETTINGS']}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    page = browser.page
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status", proc)
        page.goto(f"http://127.0.0.1:{port}/lab/tree/quickstart.ipynb")
        status = page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text="| Idle")
        status.first.wait_for(timeout=180_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        cells = page.locator(".jp-CodeCell .jp-InputPrompt")
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            prompts = [p.strip() for p in cells.all_inner_texts()]
            if prompts and all(re.fullmatch(r"\[\d+\]:?", p) for p in prompts):
                break
            time.sleep(0.5)
        else:
            page.screenshot(path=str(tmp_path / "stuck.png"))
            raise AssertionError(f"cells did not all run: {prompts}")
        assert page.locator(".jp-OutputArea-output[data-mime-type*=error]").count() == 0
        page.locator(".mnb-driftview svg.marks").first.wait_for()
        assert page.locator(".mnb-view svg.marks").count() >= 5

        _click_promote(page, "v4 1.3.0 (development)", "canary went well")
        page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=False)
        assert (tmp_path / "jupyterlab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with mnb.open(workdir / "mlops.duckdb") as ws:
            assert ws.model("iris").version(4).stage == "staging"
            assert ws.audit("iris").iloc[-1]["reason"] == "canary went well"
    finally:
        _stop(proc)
        _delete_deployments(workdir / "mlops.duckdb")
    assert browser.blocked == []


@pytest.fixture
def team_workspace(tmp_path: Path) -> Path:
    """Two versions of a model, a day of logged traffic: what a team dashboard shows."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    path = tmp_path / "mlops.duckdb"
    with mnb.open(path) as ws:
        m = ws.model("iris")
        clf = LogisticRegression(max_iter=500).fit(X, y)
        m.register(clf, metrics={"accuracy": 0.97}, label="1.0.0", reference_data=X)
        m.register(clf, metrics={"accuracy": 0.98}, label="1.1.0", reference_data=X)
        rng = np.random.default_rng(0)
        rows = X.iloc[rng.integers(0, len(X), 200)]
        stamps = pd.Timestamp.now(tz="UTC") - pd.to_timedelta(rng.uniform(60, 6 * 3600, 200),
                                                               unit="s")  # fmt: skip
        ids = ws.monitor("iris").log(rows, clf.predict(rows), version=1, timestamps=stamps,
                                     latency_ms=rng.gamma(3.0, 2.0, 200))  # fmt: skip
        ws.monitor("iris").log_labels(ids[:100], y.iloc[rows.index[:100]].to_numpy())
    return path


def test_dashboard_in_voila(browser: Browser, team_workspace: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**_jupyter_env(tmp_path), "MLOPS_NB_WORKSPACE": str(team_workspace)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_nb.cli", "ui", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    page = browser.page
    try:
        _wait_port(port, proc)
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator(".mnb-dashboard").wait_for(timeout=180_000)
        page.locator(".lm-TabBar-tab", has_text="Monitoring").click()
        page.locator(".mnb-monitoringview svg.marks").first.wait_for()
        assert page.locator(".mnb-monitoringview svg.marks").count() == 5
        page.locator(".lm-TabBar-tab", has_text="Models").click()
        _click_promote(page, "v2 1.1.0 (development)", "ready for staging")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=False)
        assert (tmp_path / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with mnb.open(team_workspace) as ws:
            assert ws.model("iris").version(2).stage == "staging"
    finally:
        _stop(proc)
    assert browser.blocked == []
