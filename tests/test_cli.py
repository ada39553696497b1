"""The mlops-nb command, run as users run it: a separate process."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import mlops_nb as mnb

CLI = shutil.which("mlops-nb", path=str(Path(__file__).resolve().parents[1] / ".venv" / "bin"))


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = CLI or shutil.which("mlops-nb")
    assert exe, "the mlops-nb entry point is not installed"
    env = {**os.environ, "MLOPS_NB_USER": "cli-user"}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    with mnb.open(tmp_path / "mlops.duckdb") as ws:
        ws.model("churn").register({"v": 1}, metrics={"accuracy": 0.9}, label="1.0.0")
        ws.model("churn").register({"v": 2}, metrics={"accuracy": 0.95})
    return tmp_path


def test_models_versions_promote_audit(populated: Path) -> None:
    out = run("models", cwd=populated)
    assert out.returncode == 0, out.stderr
    assert "churn" in out.stdout
    out = run("--workspace", "mlops.duckdb", "versions", "churn", cwd=populated)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["version", "label", "stage", "aliases"]
    assert "1.0.0" in out.stdout
    out = run("promote", "churn", "2", "production", "--reason", "better", cwd=populated)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "churn v2 is now production"
    out = run("audit", "--model", "churn", cwd=populated)
    assert "cli-user" in out.stdout and "better" in out.stdout
    with mnb.open(populated / "mlops.duckdb") as ws:
        assert ws.model("churn").version(2).stage == "production"


def test_errors_are_one_line_with_status_1(populated: Path) -> None:
    out = run("promote", "churn", "9", "production", cwd=populated)
    assert out.returncode == 1
    assert out.stderr.startswith("error: model 'churn' has no version '9'")
    assert "Traceback" not in out.stderr
    out = run("versions", "nope", cwd=populated)
    assert out.returncode == 1 and "no model named 'nope'" in out.stderr
    (populated / "junk.duckdb").write_text("junk" * 1000)
    out = run("-w", "junk.duckdb", "models", cwd=populated)
    assert out.returncode == 1 and "not a DuckDB database" in out.stderr


@pytest.mark.timeout(700)
def test_demo(tmp_path: Path) -> None:
    from tests.deploy.conftest import leftovers

    try:
        out = run("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path, timeout=600)
    finally:
        left = leftovers(tmp_path, timeout=30)  # its deployment is deleted, even on failure
        for p in left:
            p.kill()
    assert not left, [p.cmdline() for p in left]
    assert out.returncode == 0, out.stderr
    assert "promoted <ModelVersion cancer v2 production>" in out.stdout
    with mnb.open(tmp_path / "demo" / "mlops.duckdb") as ws:
        assert ws.model("cancer").version("@champion").stage == "production"
        assert len(ws.model("cancer").versions()) == 2


def test_serve_takes_the_server_options(tmp_path: Path) -> None:
    import socket
    import time

    import httpx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    with mnb.open(tmp_path / "mlops.duckdb") as ws:
        ws.model("iris").register(LogisticRegression(max_iter=500).fit(X, y), input_example=X[:5])
    bad = run("serve", "--model", "iris", "--version", "1", "--workers", "0", cwd=tmp_path)
    assert bad.returncode == 1 and "server option 'workers'" in bad.stderr, bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = CLI or shutil.which("mlops-nb")
    assert exe
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, "serve", "--model", "iris", "--version", "1", "--port", str(port),
             "--no-spool", "--workers", "3", "--timeout", "5", "--stuck-after", "2"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.1)
        stats = httpx.get(url + "/v2/health/stats", timeout=10).json()
        assert stats["workers"] == 3
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
