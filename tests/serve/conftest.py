"""Real model servers (``python -m mlops_nb.serve``) on 127.0.0.1 for the serve tests.

The servers every module can share start together, once for the package (``fleet``); tests
that stop a server to read what it flushed start their own. Every server is stopped with
SIGTERM, killed if it does not exit, and the session fails if one is left running.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import cloudpickle
import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

import mlops_nb as mnb
from mlops_nb.serve.spec import ServeSpec


def _root_conftest() -> ModuleType:
    """tests/conftest.py, for its helpers.

    Not ``from conftest import ...``: pytest drops the name ``conftest`` from sys.modules
    each time it loads another conftest.py outside a package (tests/deploy has one), so
    here that name can point at a sibling's conftest.
    """
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    loaded = sys.modules.get("conftest")
    if loaded is not None and Path(loaded.__file__ or "").resolve() == path:
        return loaded
    spec = importlib.util.spec_from_file_location("_mlops_nb_tests_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


free_port = _root_conftest().free_port

# -- models ------------------------------------------------------------------------------


class Doubler:
    """Doubles ``x``, slowly enough (5 ms a call by default) that concurrent requests queue.

    Output column 1 is the number of rows the call saw, so a test sees the batches the
    model was given. A negative ``x`` raises; ``x = 999`` is silently left out.
    """

    def __init__(self, delay: float = 0.005) -> None:
        self.delay = delay

    def predict(self, X: pd.DataFrame) -> np.ndarray[Any, Any]:
        time.sleep(self.delay)
        x = X["x"].to_numpy(dtype=float)
        if (x < 0).any():
            raise ValueError(f"x must not be negative, got {x[x < 0].tolist()}")
        out = np.column_stack([x * 2.0, np.full(len(x), float(len(x)))])
        return out[x != 999.0]  # a bug: rows with x = 999 get no prediction at all


class Sleepy:
    """Sleeps ``max(x)`` seconds, then answers ``2 * x``: a slow or hung prediction on demand."""

    def predict(self, X: pd.DataFrame) -> np.ndarray[Any, Any]:
        x = X["x"].to_numpy(dtype=float)
        time.sleep(float(x.max()))
        return x * 2.0


class Quoting:
    """Raises with the first email in its message, as models that validate often do."""

    def predict(self, X: pd.DataFrame) -> np.ndarray[Any, Any]:
        raise ValueError(f"no account for {X['email'].iloc[0]}")


class Lenient:
    """Accepts anything (strings too) and answers the row count: a model without a signature."""

    def predict(self, X: Any) -> np.ndarray[Any, Any]:
        return np.zeros(len(X))


def churn_frame(n: int = 60, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(np.int64),
            "plan": rng.choice(np.array(["basic", "plus", "pro"], dtype=object), n),
            "score": rng.random(n),
        }
    )
    y = np.where((X["score"] > 0.5) | (X["plan"] == "pro"), "leave", "stay").astype(object)
    return X, y


def churn_model() -> tuple[Pipeline, pd.DataFrame]:
    """A pipeline over int, string and float columns: a DataFrame signature."""
    X, y = churn_frame()
    encode = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
    )
    return make_pipeline(encode, LogisticRegression(max_iter=500)).fit(X, y), X


def iris_model() -> tuple[LogisticRegression, np.ndarray[Any, Any]]:
    """A classifier over a 2-D float array: one input tensor ``input`` of shape [-1, 4]."""
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(X, y), np.asarray(X, dtype=np.float64)


def register_python(ws: mnb.Workspace, name: str, model: Any, **kw: Any) -> mnb.ModelVersion:
    """Register an object of a class defined here with the python flavor."""
    # Pickle by value, as a class defined in a notebook is: the server cannot import tests.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        return ws.model(name).register(model, flavor="python", **kw)
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def register_doubler(
    ws: mnb.Workspace, name: str = "doubler", delay: float = 0.005
) -> mnb.ModelVersion:
    return register_python(ws, name, Doubler(delay), input_example=pd.DataFrame({"x": [1.0, 2.0]}))


IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


# -- servers -----------------------------------------------------------------------------


class Server:
    """One ``python -m mlops_nb.serve`` process on a free loopback port."""

    started: ClassVar[list[Server]] = []

    def __init__(self, spec: ServeSpec, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        spec_path = spec.write(folder / "spec.json")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlops_nb.serve",
                    "--spec",
                    str(spec_path),
                    "--port",
                    str(self.port),
                    "--log-level",
                    "info",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        Server.started.append(self)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _poll(self, path: str, done: Any, what: str, timeout: float) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} before {what}:\n{self.log()}"
                )
            try:
                r = self.client.get(path, timeout=2)
                if done(r):
                    return r
                last = (r.status_code, r.text)
            except httpx.TransportError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"server not {what} in {timeout}s (last: {last!r}):\n{self.log()}")

    def wait_ready(self, timeout: float = 180.0) -> None:
        def done(r: httpx.Response) -> bool:
            if r.status_code == 503 and r.json().get("error"):
                raise RuntimeError(f"model failed to load: {r.json()['error']}\n{self.log()}")
            return r.status_code == 200

        self._poll("/v2/health/ready", done, "ready", timeout)

    def wait_load_failed(self, timeout: float = 180.0) -> httpx.Response:
        """The ready response once loading has failed (503 with the reason)."""
        return self._poll(
            "/v2/health/ready",
            lambda r: r.status_code != 503 or r.json().get("error") is not None,
            "done loading",
            timeout,
        )

    def infer(self, body: Any, version: int | str | None = None, **kw: Any) -> httpx.Response:
        path = f"/v2/models/{self.spec.model}"
        if version is not None:
            path += f"/versions/{version}"
        return self.client.post(path + "/infer", json=body, **kw)

    def metrics(self) -> dict[str, Metric]:
        r = self.client.get("/metrics")
        assert r.status_code == 200
        return {m.name: m for m in text_string_to_metric_families(r.text)}

    def stop(self) -> int:
        """SIGTERM (a graceful shutdown that flushes the spool); kill if it hangs."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"server ignored SIGTERM for 20 s:\n{self.log()}") from None
        assert not psutil.pid_exists(self.proc.pid)
        # uvicorn re-raises the signal it handled once shutdown is complete.
        assert self.proc.returncode in (0, -signal.SIGTERM), self.log()
        return self.proc.returncode


def stop_all(servers: list[Server]) -> None:
    """Stop every server, then fail if any misbehaved."""
    errors = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, errors


def sample(families: dict[str, Metric], name: str, sample_name: str, **labels: str) -> float:
    """The value of one sample (0 when absent), e.g. ``mlops_requests_total{code="200"}``."""
    for s in families[name].samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


def buckets(families: dict[str, Metric], name: str) -> dict[float, float]:
    """Cumulative histogram buckets ``{le: count}``."""
    return {
        float(s.labels["le"]): float(s.value)
        for s in families[name].samples
        if s.name == f"{name}_bucket"
    }


# Package scope, not session: other suites (tests/deploy) fail on any mlops_nb child
# process alive while they run, so these servers end with this folder's tests.
@pytest.fixture(scope="package", autouse=True)
def _no_server_left_behind() -> Iterator[None]:
    yield
    alive = [s for s in Server.started if s.proc.poll() is None]
    for s in alive:
        s.proc.kill()
        s.proc.wait(timeout=10)
    assert not alive, f"servers left running: {[s.proc.pid for s in alive]}"
    assert not any(psutil.pid_exists(s.proc.pid) for s in Server.started)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """``start(spec)`` runs a server for this test only; it is stopped at teardown."""
    servers: list[Server] = []

    def run(spec: ServeSpec, *, ready: bool = True) -> Server:
        server = Server(spec, tmp_path / f"server-{len(servers)}")
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield run
    stop_all(servers)


# -- the shared fleet --------------------------------------------------------------------


class Fleet:
    def __init__(self, ws: mnb.Workspace, root: Path) -> None:
        self.ws = ws
        self.root = root
        self.churn_pipe, self.churn_X = churn_model()
        self.iris_model, self.iris_X = iris_model()
        self.churn_v = ws.model("churn").register(self.churn_pipe, input_example=self.churn_X[:5])
        self.iris_v = ws.model("iris").register(self.iris_model, input_example=self.iris_X[:5])
        self.doubler_v = register_doubler(ws)
        # Iris with a DataFrame example: four FP64 columns, as KServe's sklearn example has.
        self.iris_frame = pd.DataFrame(self.iris_X, columns=IRIS_COLUMNS)
        self.iris_df_model = LogisticRegression(max_iter=1000).fit(
            self.iris_frame, load_iris().target
        )
        self.iris_df_v = ws.model("iris_df").register(
            self.iris_df_model, input_example=self.iris_frame[:5]
        )
        self.spool = root / "spool"
        # Started together: interpreter start-up and model loads overlap.
        self.churn = Server(ServeSpec.of(self.churn_v, max_body_bytes=4096), root / "churn")
        self.iris = Server(
            ServeSpec.of(self.iris_v, spool=str(self.spool), flush_seconds=0.2), root / "iris"
        )
        self.doubler = Server(ServeSpec.of(self.doubler_v), root / "doubler")
        self.doubler_unbatched = Server(
            ServeSpec.of(self.doubler_v, batching=False), root / "doubler-unbatched"
        )
        self.iris_df = Server(ServeSpec.of(self.iris_df_v), root / "iris-df")
        self.servers = [self.churn, self.iris, self.doubler, self.doubler_unbatched, self.iris_df]


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    ws = mnb.open(root / "mlops.duckdb")
    fleet = Fleet(ws, root)
    try:
        for server in fleet.servers:
            server.wait_ready()
        yield fleet
    finally:
        try:
            stop_all(fleet.servers)
        finally:
            ws.close()
