"""Pipeline runner overhead: one JSON line with medians and baselines from the same run.

- ``chain``: N stages of ``true`` in a dependency chain on a DuckDB-file workspace; the
  per-stage wall time (run duration / N) against a bare ``subprocess.run(["sh", "-c",
  "true"])`` (the baseline: what any runner must pay for a process).
- ``cached``: the same chain again, every stage a cache hit.
- ``wide``: N independent stages with ``max_parallel=2``; run duration against N bare
  processes run two at a time.
- ``log``: a stage writing 200 MB to stdout, captured (64 MB kept, the rest counted)
  against the same writer with stdout redirected straight to a file.

Each figure is the median of ``--repeat`` runs; ``other_cpu_share`` is the share of the
machine's CPU used by other processes meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

import mlops_nb as mnb

FLOOD = "import sys\nb = b'x' * 65535 + b'\\n'\nfor _ in range(3200): sys.stdout.buffer.write(b)\n"


def bare(n: int, parallel: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: subprocess.run(["sh", "-c", "true"], check=True), range(n)))
    return time.perf_counter() - start


def timed_run(p: mnb.Pipeline, ws: mnb.Workspace, **kw: object) -> float:
    start = time.perf_counter()
    run = p.run(workspace=ws, **kw).wait()  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert run.status().status == "succeeded", run.status()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.stages
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-"))
    os.environ.setdefault("MLOPS_NB_USER", "bench")
    me = psutil.Process()
    cpu0, t0 = psutil.cpu_times(), time.monotonic()
    mine0 = sum(me.cpu_times()[:4])
    try:
        ws = mnb.open(root / "mlops.duckdb")
        chain = mnb.Pipeline(name="chain", max_parallel=1, base_dir=root, stages=[
            mnb.Stage(f"s{i}", script="true", dependencies=[f"s{i - 1}"] if i else [], cache=True)
            for i in range(n)])  # fmt: skip
        wide = mnb.Pipeline(name="wide", max_parallel=2, base_dir=root,
                            stages=[mnb.Stage(f"w{i}", script="true", cache=False) for i in range(n)])  # fmt: skip
        (root / "flood.py").write_text(FLOOD)
        flood = mnb.Pipeline(name="flood", base_dir=root,
                             stages=[mnb.Stage("flood", script="flood.py", cache=False)])  # fmt: skip
        figures: dict[str, list[float]] = {k: [] for k in
                                           ("chain", "cached", "bare", "wide", "bare2", "log", "log_base")}  # fmt: skip
        for _ in range(args.repeat):
            figures["bare"].append(bare(n, 1) / n)
            figures["chain"].append(timed_run(chain, ws, force=True) / n)
            figures["cached"].append(timed_run(chain, ws) / n)
            figures["bare2"].append(bare(n, 2))
            figures["wide"].append(timed_run(wide, ws))
            start = time.perf_counter()
            with open(root / "direct.log", "wb") as out:
                subprocess.run([sys.executable, str(root / "flood.py")], stdout=out, check=True)
            figures["log_base"].append(time.perf_counter() - start)
            figures["log"].append(timed_run(flood, ws))
        ws.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in figures.items()}
    cpu1, wall = psutil.cpu_times(), time.monotonic() - t0
    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    mine = sum(me.cpu_times()[:4]) - mine0
    mb = 3200 * 65536 / 1e6
    print(json.dumps({
        "stages": n, "repeat": args.repeat,
        "chain_ms_per_stage": round(med["chain"] * 1e3, 1),
        "bare_process_ms": round(med["bare"] * 1e3, 2),
        "chain_overhead_ratio": round(med["chain"] / med["bare"], 1),
        "cached_ms_per_stage": round(med["cached"] * 1e3, 1),
        "wide_s": round(med["wide"], 2), "bare_two_at_a_time_s": round(med["bare2"], 3),
        "log_capture_mb_s": round(mb / med["log"], 0), "log_direct_to_file_mb_s": round(mb / med["log_base"], 0),
        "log_capture_ratio": round(med["log_base"] / med["log"], 2),
        "other_cpu_share": round(max(0.0, busy - mine) / (wall * psutil.cpu_count()), 2),
    }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
