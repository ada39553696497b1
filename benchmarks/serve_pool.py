"""Worker processes against worker threads: ``server={"pool": "processes"}``.

Prints exactly one JSON line on stdout; progress goes to stderr.

    python benchmarks/serve_pool.py        # about 2 minutes on 2 cores

In a temporary folder (removed afterwards) it registers two models in a fresh workspace
and starts, for each, two model servers (``python -m mlops_nb.serve``, 2 workers, batching
on, no payload log, nothing pinned): ``pool="threads"`` (the default) and
``pool="processes"``.

- ``python_loop``: a model whose predict is pure Python (a loop over rows and features,
  2-3 ms a row, holding the GIL), driven at concurrency 8: the case processes are for.
- ``iris``: a scikit-learn ``LogisticRegression`` at concurrency 1: what a process costs a
  lone request (a pickle round trip) where threads already do well.

Each pair is measured in ``--rounds`` back-to-back rounds (order alternating) of
``--duration`` seconds through ``benchmarks/loadgen.py`` (wrk when on PATH); medians of
the per-round ratios are reported. Target (``met``): processes >= 1.5x threads for the
GIL-bound model on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import loadgen
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5


class PythonLoop:
    """A model in pure Python: a few milliseconds of interpreter work per row (2-3 ms on
    the machine this was written on)."""

    def predict(self, X: Any) -> np.ndarray[Any, Any]:
        out = []
        for row in X.itertuples(index=False):
            acc = 0.0
            for _ in range(8000):
                for v in row:
                    acc = (acc + v * 1.0001) % 97.0
            out.append(acc)
        return np.asarray(out)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready in {timeout:g} s")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, then wait for each (killing one that hangs)."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0, help="timed seconds per round")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per round")
    p.add_argument("--rounds", type=int, default=5, help="back-to-back rounds per pair")
    args = p.parse_args(argv)
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import mlops_nb
    from mlops_nb.serve.spec import ServeSpec

    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-pool-"))
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        ws = mlops_nb.open(tmp / "ws.duckdb", create=True)
        X, y = load_iris(return_X_y=True)
        frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
        versions = {
            "python_loop": ws.model("loop").register(PythonLoop(), flavor="python",
                                                     input_example=frame[:5]),
            "iris": ws.model("iris").register(LogisticRegression(max_iter=1000).fit(X, y),
                                              input_example=X[:5]),
        }  # fmt: skip
        bodies = {
            "python_loop": {"inputs": [{"name": n, "shape": [1], "datatype": "FP64",
                                        "data": [float(frame[n][7])]} for n in frame]},
            "iris": {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                 "data": [float(v) for v in X[7]]}]},
        }  # fmt: skip
        concurrency = {"python_loop": 8, "iris": 1}
        ports: dict[tuple[str, str], int] = {}
        for case, v in versions.items():
            for pool in ("threads", "processes"):
                spec = ServeSpec.of(v, spool=None, workers=2, pool=pool)
                path = spec.write(tmp / f"{case}-{pool}.json")
                port = free_port()
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "mlops_nb.serve", "--spec", str(path), "--port",
                     str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                ))  # fmt: skip
                ports[(case, pool)] = port
        for (case, pool), port in ports.items():
            wait_ready(port, procs[list(ports).index((case, pool))])
            log(f"{case} on {pool} ready on port {port}")
        result: dict[str, Any] = {
            "benchmark": "serve_pool",
            "loadgen": "wrk" if shutil.which("wrk") else "python",
        }
        for case, model in (("python_loop", "loop"), ("iris", "iris")):
            path = f"/v2/models/{model}/infer"
            body = json.dumps(bodies[case]).encode()
            c = concurrency[case]
            runs: dict[str, list[dict[str, Any]]] = {"threads": [], "processes": []}
            for r in range(args.rounds):
                order = ("threads", "processes") if r % 2 == 0 else ("processes", "threads")
                for pool in order:
                    out = loadgen.run(ports[(case, pool)], path, body, c, args.warmup,
                                      args.duration)  # fmt: skip
                    runs[pool].append(out)
                    log(f"{case} c={c} {pool:9} {out['rps']:8.1f} req/s p50 {out['p50_ms']} ms")
            ratios = [p["rps"] / t["rps"] for t, p in zip(runs["threads"], runs["processes"],
                                                          strict=True)]  # fmt: skip
            result[case] = {
                "concurrency": c,
                "threads_rps": round(statistics.median(r["rps"] for r in runs["threads"]), 1),
                "processes_rps": round(statistics.median(r["rps"] for r in runs["processes"]), 1),
                "threads_p50_ms": statistics.median(r["p50_ms"] for r in runs["threads"]),
                "processes_p50_ms": statistics.median(r["p50_ms"] for r in runs["processes"]),
                "processes_vs_threads": round(statistics.median(ratios), 3),
                "round_ratios": [round(x, 3) for x in ratios],
            }
        result["python_loop"]["target"] = f">= {TARGET}x threads on 2 cores"
        result["python_loop"]["met"] = result["python_loop"]["processes_vs_threads"] >= TARGET
        result["cpus"] = os.cpu_count()
        result["runtime_s"] = round(time.perf_counter() - start, 1)
        result["loadavg_1m"] = {"start": load_before, "end": os.getloadavg()[0]}
        print(json.dumps(result), flush=True)
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
