"""Deployments on real processes: a router and model servers on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import mlops_nb as mnb


@pytest.fixture(scope="session")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


def leftovers(folder: Path | None = None, timeout: float = 30.0) -> list[psutil.Process]:
    """Our processes still running: children of this one, and (controllers and routers
    run in sessions of their own) any process naming ``folder`` on its command line."""
    deadline = time.monotonic() + timeout
    while True:
        mine = {p.pid: p for p in psutil.Process().children(recursive=True) if _is_ours(p)}
        if folder is not None:
            for p in psutil.process_iter():
                if p.pid not in mine and _is_ours(p, str(folder)):
                    mine[p.pid] = p
        alive = list(mine.values())
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _is_ours(p: psutil.Process, folder: str | None = None) -> bool:
    try:
        cmd = " ".join(p.cmdline())
        return (p.status() != psutil.STATUS_ZOMBIE and "mlops_nb" in cmd
                and (folder is None or folder in cmd))  # fmt: skip
    except psutil.Error:
        return False


@pytest.fixture
def dws(tmp_path: Path) -> Iterator[mnb.Workspace]:
    """A workspace whose deployments are all deleted at teardown; no process may remain."""
    ws = mnb.open(tmp_path / "mlops.duckdb")
    try:
        yield ws
    finally:
        for name in ws.deployments()["name"].tolist():
            ws.deployment(name).delete()
        ws.close()
        left = leftovers(tmp_path)
        for p in left:
            p.kill()
        assert not left, f"processes left behind: {[p.cmdline() for p in left]}"


@pytest.fixture
def versions(dws: mnb.Workspace, iris: Any) -> dict[str, mnb.ModelVersion]:
    """v1 a good classifier, v2 another good one, v3 one that raises, v4 a slow one."""
    X, y = iris
    good = LogisticRegression(max_iter=500).fit(X, y)

    class Failing:
        def predict(self, frame: Any) -> Any:
            raise RuntimeError("this version is broken")

    class Slow:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, frame: Any) -> Any:
            time.sleep(0.08)
            return self.inner.predict(frame)

    m = dws.model("iris")
    example = X.head(5)
    return {
        "good": m.register(good, input_example=example, reference_data=X),
        "other": m.register(
            LogisticRegression(max_iter=200, C=0.5).fit(X, y),
            input_example=example,
            reference_data=X,
        ),
        "failing": m.register(Failing(), flavor="python", input_example=example),
        "slow": m.register(Slow(good), flavor="python", input_example=example),
    }


class Traffic:
    """Requests in a loop on a background thread, bounded in time; records every outcome."""

    def __init__(self, endpoint: str, body: Any, headers: dict[str, str] | None = None,
                 pause: float = 0.005, limit_s: float = 120.0) -> None:  # fmt: skip
        self.url = endpoint + "/v2/models/iris/infer"
        self.body = body
        self.headers = headers or {}
        self.pause = pause
        self.limit_s = limit_s
        self.results: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    if isinstance(self.body, bytes):
                        r = client.post(self.url, content=self.body, headers=self.headers)
                    else:
                        r = client.post(self.url, json=self.body, headers=self.headers)
                    self.results.append((r.status_code, r.headers.get("x-mlops-version")))
                except httpx.HTTPError as e:
                    self.results.append((-1, type(e).__name__))
                time.sleep(self.pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def failures(self) -> list[tuple[int, str | None]]:
        return [r for r in self.results if r[0] != 200]

    def versions(self) -> list[str | None]:
        return [v for code, v in self.results if code == 200]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
