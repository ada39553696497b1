"""`mlops-nb monitor --out s3://...` as a real subprocess against moto's S3 server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

import mlops_nb as mnb
from tests.conftest import write_notebook
from tests.test_monitoring_notebook import MODEL, NOTEBOOK, _recent, _traffic, _workspace

pytestmark = pytest.mark.usefixtures("s3_env")

RUN_KEY = re.compile(rf"runs/{MODEL}/\d{{8}}T\d{{6}}Z/monitoring\.(ipynb|html)")


def bucket(endpoint: str) -> str:
    name = f"runs-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def keys(endpoint: str, name: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=name)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def executed(endpoint: str, name: str, key: str) -> dict[str, Any]:
    body = boto3.client("s3", endpoint_url=endpoint).get_object(Bucket=name, Key=key)["Body"]
    return dict(json.loads(body.read()))


def run(args: list[str], endpoint: str, cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The command with S3 reached as a pod reaches it: endpoint and keys in the environment."""
    full = {**os.environ, **(env or {}), "MLOPS_NB_PROGRESS": "off", "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    full.pop("AWS_PROFILE", None)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=full, timeout=600)


def healthy_workspace(tmp_path: Path) -> Path:
    path, X, clf = _workspace(tmp_path)
    rows = _traffic(X, 300, shift_sd=0.0, seed=1)
    with mnb.open(path) as ws:
        ws.monitor(MODEL).log(rows, clf.predict(rows), version=1, timestamps=_recent(300, seed=2),
                              latency_ms=[2.0] * 300)  # fmt: skip
    return path


CLI = [sys.executable, "-m", "mlops_nb.cli"]


def test_a_healthy_run_uploads_its_notebook_and_report_under_one_key(
    tmp_path: Path, s3_endpoint: str
) -> None:
    path, name = healthy_workspace(tmp_path), bucket(s3_endpoint)
    before = sorted(p.name for p in tmp_path.iterdir())
    # The notebook itself is read from the bucket too.
    boto3.client("s3", endpoint_url=s3_endpoint).upload_file(
        str(NOTEBOOK), name, "nb/monitoring.ipynb"
    )
    done = run([*CLI, "monitor", "-w", str(path), "--model", MODEL, "--notebook",
                f"s3://{name}/nb/monitoring.ipynb", "--out", f"s3://{name}/runs",
                "-p", "max_error_rate", "0.01"], s3_endpoint, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    uploaded = [k for k in keys(s3_endpoint, name) if k.startswith("runs/")]
    assert len(uploaded) == 2 and all(RUN_KEY.fullmatch(k) for k in uploaded), uploaded
    assert uploaded[0].rsplit("/", 1)[0] == uploaded[1].rsplit("/", 1)[0]
    assert f"executed notebook: s3://{name}/{uploaded[1]}" in done.stdout
    assert f"HTML report:       s3://{name}/{uploaded[0]}" in done.stdout
    nb = executed(s3_endpoint, name, uploaded[1])
    gate = next(c for c in nb["cells"] if c.get("id") == "gate")
    assert "iris: no drift; the run passes" in "".join(gate["outputs"][0]["text"])
    # Nothing was left on local disk: the files were written to a scratch folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_upload_failure_exits_2_and_keeps_the_files(tmp_path: Path, s3_endpoint: str) -> None:
    path = healthy_workspace(tmp_path)
    done = run([*CLI, "monitor", "-w", str(path), "--model", MODEL, "--out", "s3://no-such-bucket/r"],
               s3_endpoint, tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "upload failed: S3 bucket 'no-such-bucket' does not exist" in done.stderr
    kept = Path(re.search(r"executed notebook: (\S+)", done.stdout).group(1))  # type: ignore[union-attr]
    try:
        assert kept.is_file() and kept.with_suffix(".html").is_file()
    finally:
        shutil.rmtree(kept.parent)


def test_a_missing_s3_notebook_or_a_malformed_address_exits_2_naming_it(
    tmp_path: Path, s3_endpoint: str
) -> None:
    path, name = healthy_workspace(tmp_path), bucket(s3_endpoint)
    done = run([*CLI, "monitor", "-w", str(path), "--model", MODEL, "--notebook",
                f"s3://{name}/nb.ipynb", "--out", f"s3://{name}/runs"], s3_endpoint, tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert f"error: nothing at s3://{name}/nb.ipynb: check the bucket and key" in done.stderr
    done = run([*CLI, "monitor", "-w", str(path), "--model", MODEL, "--out", "s3:///runs"],
               s3_endpoint, tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "error: expected s3://bucket/prefix, got 's3:///runs'" in done.stderr
    assert keys(s3_endpoint, name) == []


def test_a_missing_workspace_exits_2_and_creates_nothing(tmp_path: Path, s3_endpoint: str) -> None:
    name = bucket(s3_endpoint)
    done = run([*CLI, "monitor", "-w", str(tmp_path / "typo.duckdb"), "--model", MODEL,
                "--out", f"s3://{name}/runs"], s3_endpoint, tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: the run failed (not a threshold breach): WorkspaceMissing:" in done.stderr
    assert list(tmp_path.iterdir()) == []
    assert len(keys(s3_endpoint, name)) == 2  # the failed run's notebook is the evidence


def test_a_kernel_that_dies_is_a_failed_run_not_a_breach(tmp_path: Path) -> None:
    source = write_notebook(tmp_path / "dies.ipynb", "import os\nos._exit(3)",
                            parameters="workspace = model = None\nfail_on_drift = True")  # fmt: skip
    path = healthy_workspace(tmp_path)
    out = tmp_path / "runs"
    done = subprocess.run(
        [*CLI, "monitor", "-w", str(path), "--model", MODEL, "--notebook", str(source),
         "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "MLOPS_NB_PROGRESS": "off"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the run failed (not a threshold breach): DeadKernelError" in done.stderr
    # The notebook and its report are written all the same: they are the evidence.
    assert sorted(p.suffix for p in out.iterdir()) == [".html", ".ipynb"]
