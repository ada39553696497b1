"""The command a scheduled-monitoring CronJob's container runs, run here as a real process.

The command and arguments come from the rendered manifest; what the cluster would supply
is supplied here: the claim's mount path becomes a workspace file in ``tmp_path``, the
``/tmp`` emptyDir a folder in ``tmp_path``, the S3 secret's variables point at moto's S3
server on 127.0.0.1, and the image's ``mlops-nb`` entry point is this checkout's
``python -m mlops_nb.cli``. The working directory is the repository root, as an image
holding ``notebooks/`` in its working directory would have it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes, cronjob
from tests.monitor.test_headless import RUN_KEY, bucket, executed, keys, run
from tests.test_monitoring_notebook import MODEL, _recent, _traffic, _workspace

ROOT = Path(__file__).resolve().parents[2]
K8S = Kubernetes(namespace="ml", image="img:1", s3_secret="s3-creds", workspace_claim="mlops-ws")

pytestmark = pytest.mark.usefixtures("s3_env")


def _pod_command(
    cj: dict[str, Any], workspace: Path, tmp: Path
) -> tuple[list[str], dict[str, str]]:
    [container] = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mlops-nb"]
    args = [str(workspace) if a == K8S.workspace_path else a for a in container["args"]]
    env = {e["name"]: e["value"].replace("/tmp", str(tmp), 1) for e in container["env"]}
    return [sys.executable, "-m", "mlops_nb.cli", *args], env


def _scheduled_run(tmp_path: Path, endpoint: str, *, model: str = MODEL, errors: float = 0.0,
                   **parameters: Any) -> tuple[Any, str]:  # fmt: skip
    path, X, clf = _workspace(tmp_path)
    rows = _traffic(X, 300, shift_sd=0.0, seed=1)
    with mnb.open(path) as ws:
        ws.monitor(MODEL).log(
            rows, clf.predict(rows), version=1, timestamps=_recent(300, seed=2),
            errors=["timeout" if i < errors * 300 else None for i in range(300)],
        )  # fmt: skip
    name = bucket(endpoint)
    cj = cronjob("notebooks/monitoring.ipynb", K8S, model=model, output=f"s3://{name}/runs",
                 parameters=parameters)  # fmt: skip
    (tmp_path / "pod-tmp").mkdir()  # an emptyDir exists, empty, when the container starts
    command, env = _pod_command(cj, path, tmp_path / "pod-tmp")
    return run(command, endpoint, ROOT, env), name


def _uploaded(endpoint: str, name: str, model: str = MODEL) -> dict[str, Any]:
    found = keys(endpoint, name)
    pattern = RUN_KEY.pattern.replace(f"/{MODEL}/", f"/{model}/")
    assert len(found) == 2 and all(re.fullmatch(pattern, k) for k in found), found
    return executed(endpoint, name, found[1])


def test_a_healthy_scheduled_run_exits_0_and_uploads_both_files(
    tmp_path: Path, s3_endpoint: str
) -> None:
    done, name = _scheduled_run(tmp_path, s3_endpoint, max_error_rate=0.01)
    assert done.returncode == 0, done.stderr
    assert "iris: no threshold breached" in done.stdout
    _uploaded(s3_endpoint, name)
    # The kernel wrote its state where the pod's env points: into the /tmp emptyDir.
    assert (tmp_path / "pod-tmp" / "ipython" / "profile_default").is_dir()


def test_a_breached_scheduled_run_exits_1_and_still_uploads(
    tmp_path: Path, s3_endpoint: str
) -> None:
    done, name = _scheduled_run(tmp_path, s3_endpoint, errors=0.1, max_error_rate=0.01)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "breach: ThresholdBreached: iris: error rate 0.1 > max_error_rate 0.01" in done.stderr
    nb = _uploaded(s3_endpoint, name)
    assert nb["cells"][-1]["outputs"][-1]["ename"] == "ThresholdBreached"


def test_a_scheduled_run_of_a_missing_model_exits_2_with_the_evidence(
    tmp_path: Path, s3_endpoint: str
) -> None:
    done, name = _scheduled_run(tmp_path, s3_endpoint, model="churn")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: the run failed (not a threshold breach): ModelNotFound:" in done.stderr
    assert "churn" in done.stderr
    nb = _uploaded(s3_endpoint, name, model="churn")
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ModelNotFound"]
