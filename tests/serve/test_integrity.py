"""A server whose artifact fails verification never reports ready, and says why."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import mlops_nb as mnb
from mlops_nb.serve.spec import ServeSpec

from .conftest import register_doubler, sample


def blob(ws: mnb.Workspace, version: mnb.ModelVersion, role: str = "model") -> Path:
    (entry,) = [f for f in version.info()["manifest"]["files"] if f["role"] == role]
    sha = entry["sha256"]
    return Path(ws.artifacts.uri) / "blobs" / "sha256" / sha[:2] / sha


def overwrite(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)  # the store leaves blobs read-only
    path.write_bytes(data)


def test_corrupt_artifact_is_never_ready(ws: mnb.Workspace, start: Any) -> None:
    version = register_doubler(ws)
    stored = blob(ws, version)
    overwrite(stored, b"not the pickle that was registered")
    server = start(ServeSpec.of(version), ready=False)

    failed = server.wait_load_failed()
    assert failed.status_code == 503
    error = failed.json()["error"]
    assert error.startswith("IntegrityError: ")
    assert "model.pkl" in error and "corrupt" in error and stored.name in error

    # It stays alive and not ready: probes, metadata and metrics answer; infer does not.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        r = server.client.get("/v2/health/ready")
        # ``load_error`` says that waiting will not help (a stuck replica has only ``error``).
        assert (r.status_code, r.json()) == (
            503, {"ready": False, "error": error, "load_error": error}
        )  # fmt: skip
        time.sleep(0.1)
    assert server.client.get("/v2/health/live").json() == {"live": True}
    ready = server.client.get("/v2/models/doubler/ready")
    assert (ready.status_code, ready.json()) == (503, {"name": "doubler", "ready": False})
    assert server.client.get("/v2/models/doubler").status_code == 200
    r = server.infer([{"x": 1.0}])
    assert (r.status_code, r.json()) == (503, {"error": error})
    r = server.infer([{"x": 1.0}], version=1)
    assert (r.status_code, r.json()) == (503, {"error": error})
    assert sample(server.metrics(), "mlops_requests", "mlops_requests_total", code="503") == 2
    assert server.proc.poll() is None


def test_missing_artifact_is_never_ready(ws: mnb.Workspace, start: Any) -> None:
    version = register_doubler(ws)
    blob(ws, version).unlink()
    server = start(ServeSpec.of(version), ready=False)
    error = server.wait_load_failed().json()["error"]
    assert error.startswith("ArtifactMissing: ") and "missing" in error
    assert server.infer([{"x": 1.0}]).status_code == 503
    assert server.proc.poll() is None
