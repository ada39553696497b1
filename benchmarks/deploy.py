"""Deployment benchmark: time to the first answer, and what the router's hop costs.

Prints exactly one JSON line on stdout; progress goes to stderr.

    python benchmarks/deploy.py            # about 5 minutes on 2 cores

In a temporary folder (removed afterwards), with an iris ``LogisticRegression``
registered with ``input_example=X[:5]``:

1. ``first_200_s``: seconds from calling ``v.deploy(replicas=1)`` on a new name to the
   first 200 answer through its endpoint (``--deploys`` runs, median; each deployment is
   deleted after). Target <= 3 s.
2. Router overhead: one deployment with one replica; 1-row V2 JSON bodies at concurrency
   1, 16 and 64, through the router (the endpoint users call) and straight to the replica's
   port, interleaved in the same run, ``--repeats`` times: requests/s and latencies are
   medians, the cost and the added p50 medians of each repeat's back-to-back pair. ``wrk``
   drives the load when on PATH (else ``benchmarks/loadgen.py``'s Python generator).
   Targets: the router costs <= 15% of throughput and <= 0.3 ms p50 at concurrency 1;
   ``stats_exact`` checks that the router counted every request the generator made (its
   guard reads these).
3. The same through a 2-replica deployment (``dep.scale(2)``) at 16 and 64.

Nothing is pinned to a core: router, replica and load generator share the machine's two
cores, the way they do on a laptop. ``load_before`` is the 1-minute load average at the
start; on a busy machine the absolute figures move, the same-run ratios much less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

PATH = "/v2/models/iris/infer"
COLUMNS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
# One 1-row V2 tensor per column, as the version's signature names them.
BODY = json.dumps(
    {
        "inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [x]}
            for c, x in zip(COLUMNS, (5.1, 3.5, 1.4, 0.2), strict=True)
        ]
    }
).encode()


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def first_200(v: Any, name: str) -> float:
    t0 = time.perf_counter()
    dep = v.deploy(replicas=1, name=name)
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=10) as client:
        while (r := client.post(dep.endpoint + PATH, content=BODY)).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"no 200 within 120 s: {r.status_code} {r.text}")
            time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    dep.delete()
    return elapsed


def stats_count(dep: Any, window: float) -> int:
    traffic = dep._backend_of(dep._record()).traffic(window)
    return sum(r.requests for r in traffic.revisions)


def cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure(port: int, c: int, args: argparse.Namespace, pids: dict[str, int]) -> dict[str, Any]:
    """One load run; with the CPU seconds each process spent per request (in us), a figure
    that a busy machine moves much less than requests/s."""
    before = {k: cpu(p) for k, p in pids.items()}
    result = loadgen.run(port, PATH, BODY, c, args.warmup, args.duration)
    total = result["requests"] * (1 + args.warmup / args.duration)  # the warm-up ran too
    for k, p in pids.items():
        result[f"{k}_cpu_us"] = (cpu(p) - before[k]) / total * 1e6
    return result


def median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deploys", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    args = p.parse_args()
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import mlops_nb as mnb

    load_before = os.getloadavg()[0]
    X, y = load_iris(return_X_y=True, as_frame=True)
    with tempfile.TemporaryDirectory() as tmp:
        ws = mnb.open(Path(tmp) / "bench.duckdb", create=True)
        v = ws.model("iris").register(LogisticRegression(max_iter=500).fit(X, y),
                                      input_example=X[:5])  # fmt: skip
        log("deploy to first 200")
        first = [first_200(v, f"first{i}") for i in range(args.deploys)]
        dep = v.deploy(replicas=1, name="bench")
        first_replica = dep.status()["revisions"][0]["replicas"][0]
        replica = first_replica["port"]
        pids = {"router": dep._record().admin["pid"], "replica": first_replica["pid"]}
        router = int(dep.endpoint.rsplit(":", 1)[1])
        grid: dict[int, dict[str, list[dict[str, Any]]]] = {}
        exact = True
        for repeat in range(args.repeats):
            for c in (1, 16, 64):
                order = [("router", router), ("direct", replica)]
                for label, port in order if repeat % 2 == 0 else order[::-1]:
                    result = measure(port, c, args, pids)
                    if label == "router":
                        counted = stats_count(dep, args.duration + args.warmup + 5)
                        # wrk's count excludes the warm-up run; the router counted both.
                        exact &= counted >= result["requests"]
                    grid.setdefault(c, {}).setdefault(label, []).append(result)
                    log(f"r{repeat} c={c} {label}: {result['rps']:.0f} req/s p50 "
                        f"{result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms")  # fmt: skip
        dep.scale(2)
        two: dict[int, list[dict[str, Any]]] = {}
        for _ in range(args.repeats):
            for c in (16, 64):
                two.setdefault(c, []).append(measure(router, c, args, {}))
        dep.delete()
        ws.close()
    overhead = {}
    for c, by in grid.items():
        r_rps, d_rps = median(by["router"], "rps"), median(by["direct"], "rps")
        # Judged on pairs: each repeat's router and direct runs ran back to back.
        pairs = list(zip(by["router"], by["direct"], strict=True))
        overhead[f"c{c}"] = {
            "router_rps": r_rps, "direct_rps": d_rps,
            "throughput_cost": round(statistics.median(1 - r["rps"] / d["rps"] for r, d in pairs), 3),
            "throughput_cost_runs": [round(1 - r["rps"] / d["rps"], 3) for r, d in pairs],
            "router_p50_ms": median(by["router"], "p50_ms"),
            "direct_p50_ms": median(by["direct"], "p50_ms"),
            "added_p50_ms": round(statistics.median(r["p50_ms"] - d["p50_ms"] for r, d in pairs), 3),
            "added_p50_ms_runs": [round(r["p50_ms"] - d["p50_ms"], 3) for r, d in pairs],
            "router_p99_ms": median(by["router"], "p99_ms"),
            "direct_p99_ms": median(by["direct"], "p99_ms"),
            "router_cpu_us_per_request": median(by["router"], "router_cpu_us"),
            "replica_cpu_us_per_request": median(by["router"], "replica_cpu_us"),
        }  # fmt: skip
    c1 = overhead["c1"]
    print(json.dumps({
        "benchmark": "deploy", "generator": grid[1]["router"][0]["generator"],
        "load_before": round(load_before, 2), "repeats": args.repeats,
        "first_200_s": round(statistics.median(first), 2),
        "first_200_runs_s": [round(f, 2) for f in first],
        "router_overhead": overhead,
        "two_replicas": {f"c{c}": {"rps": median(runs, "rps"), "p50_ms": median(runs, "p50_ms"),
                                   "p99_ms": median(runs, "p99_ms"),
                                   "vs_one_replica": round(median(runs, "rps")
                                                           / overhead[f"c{c}"]["router_rps"], 3)}
                         for c, runs in two.items()},
        "stats_exact": exact,
        "targets": {
            "first_200_s<=3": statistics.median(first) <= 3.0,
            "router_throughput_cost_c1<=0.15": c1["throughput_cost"] <= 0.15,
            "router_added_p50_c1<=0.3ms": c1["added_p50_ms"] <= 0.3,
        },
    }))  # fmt: skip


if __name__ == "__main__":
    main()
