"""Monitoring at growth scale: logging, metrics, drift and spool ingest.

Prints exactly one JSON line on stdout; progress goes to stderr. Each part runs in a fresh
subprocess (its peak RSS is its own), in a temporary folder removed afterwards.

    python benchmarks/monitor_growth.py             # full size
    python benchmarks/monitor_growth.py --scale 0.1 # a tenth of every row count

1. ``log``: ``--log-batches`` (30) batches of 100,000 rows x 20 float64 features, integer
   predictions, confidences and latencies, built before timing. Each batch goes through
   ``mon.log`` and, interleaved in the same loop, the baseline: ``pyarrow.parquet.
   write_table`` of the same rows as the Arrow table ``log`` writes (same columns, same
   options: ``logstore.WRITE_OPTIONS``) into the same folder tree. Medians of rows/s; the
   ratio ``log / write_table`` (target >= 0.8). The workspace is opened with
   ``linger=5.0`` so it keeps its connection between the interleaved calls, as it does in
   a loop of back-to-back ``log()`` calls. Peak memory is measured first, before any
   baseline table exists: freed heap memory is handed back (``malloc_trim``), the
   high-water mark is reset (``/proc/self/clear_refs``), five batches are logged alone,
   and the growth of peak RSS over the resident size before them is divided by the size
   of one batch (target <= 2).
2. ``metrics``: ``--metrics-rows`` (100M; a tenth with ``--scale 0.1``) predictions x 20
   features logged over 365 days (one ``log()`` per day), then ``mon.metrics("1h",
   window="last 30d")``, one warm-up and ``--runs`` timed; median seconds (target <= 2).
   Baseline: the same aggregation as one DuckDB query over a glob of all the files.
3. ``drift``: a 1M-row reference day and a 10M-row current window, 20 numeric features +
   prediction + confidence (22 columns), ``mon.drift(ref, cur, store=False)``; median
   seconds and the child's peak RSS (targets <= 5 s, <= 1.5 GB); also 1M vs 1M (target
   <= 1.5 s). Baseline: the exact path (``exact=True``) on 1M vs 1M in the same child; the
   streamed verdicts are compared with the exact ones on 1M vs 1M.
4. ``ingest``: ``--spool-files`` (10,000) spool files of 50 rows, written as model servers
   write them; ``mon.ingest(spool)`` once (target <= 10 s) and again with nothing new
   (target <= 0.5 s). Baseline: reading every file with ``pyarrow.parquet.read_table``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monitor import CpuMeter, features, log, outputs, peak_rss_mb, run_child, versions

BATCH = 100_000
MODEL = "churn"
TARGETS = {
    "log_ratio": 0.8,
    "log_peak_over_batch": 2.0,
    "metrics_s": 2.0,
    "drift_10m_s": 5.0,
    "drift_10m_peak_mb": 1536,
    "drift_1m_s": 1.5,
    "ingest_s": 10.0,
    "reingest_s": 0.5,
}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _setup(args: argparse.Namespace, seed: int) -> tuple[Any, Any, np.random.Generator, list[str]]:
    """(workspace, monitor, random generator, feature names) of one child."""
    ws = _workspace(Path(args.dir))
    return ws, ws.monitor(MODEL), np.random.default_rng(seed), [f"f{i:02d}" for i in range(20)]


def _workspace(root: Path) -> Any:
    import mlops_nb as mnb

    ws = mnb.open(root / "mlops.duckdb", linger=5.0)
    ws.model(MODEL).register({"w": 1})
    return ws


def _peak_growth_mb(work: Any) -> float:
    """Growth of peak RSS over the resident size before ``work()``, in MB."""
    # Freed heap memory goes back to the system first: work that reuses it would not count.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM: the peak from here on is this work's alone
    before_kb = _rss_kb("VmRSS")
    work()
    return (_rss_kb("VmHWM") - before_kb) / 1024


def _raw_table(X: pd.DataFrame, pred: Any, conf: Any, lat: Any, names: list[str]) -> pa.Table:
    """The table ``log()`` writes for one batch: same columns, types and id shape."""
    n = len(X)
    now = pd.Timestamp.now(tz="UTC")
    prefix = uuid.uuid4().hex[:20]
    return pa.table({
        # Ids as log() makes them: a 20-hex-digit prefix per call, then the zero-padded
        # row number.
        "id": pa.array([f"{prefix}-{j:0{len(str(n - 1))}d}" for j in range(n)]),
        "timestamp": pa.array(np.full(n, np.datetime64(now.tz_localize(None), "us")),
                              pa.timestamp("us", tz="UTC")),
        "prediction": pa.array(pred), "confidence": pa.array(conf), "latency_ms": pa.array(lat),
        **{f"feature.{c}": pa.array(X[c].to_numpy()) for c in names},
    })  # fmt: skip


def child_log(args: argparse.Namespace) -> dict[str, Any]:
    from mlops_nb.monitor import logstore

    root = Path(args.dir)
    _ws, mon, rng, names = _setup(args, 1)
    batches = []
    for _ in range(args.log_batches + 1):
        X = pd.DataFrame(features(rng, BATCH), columns=names)
        batches.append((X, *outputs(rng, BATCH)))
    mon.log(*batches[0][:2], version=1, confidence=batches[0][2], latency_ms=batches[0][3])
    batch_mb = batches[1][0].memory_usage(index=False).sum() / 2**20

    def log_alone() -> None:
        for X, pred, conf, lat in batches[1:6]:
            mon.log(X, pred, version=1, confidence=conf, latency_ms=lat)

    # Peak memory first, in a process that has done nothing but build the batches and
    # log one: the baseline's tables, built below, would otherwise count as log()'s.
    growth_mb = _peak_growth_mb(log_alone)
    raw_dir = root / "raw"
    raw_dir.mkdir()
    log_rates, raw_rates = [], []
    # Interleaved batch by batch, so both see the same machine load; the workspace keeps
    # its connection between calls (linger) as in a logging loop, where calls follow each
    # other closer than the store's default 0.2 s.
    for i, (X, pred, conf, lat) in enumerate(batches[1:]):
        t = time.perf_counter()
        mon.log(X, pred, version=1, confidence=conf, latency_ms=lat)
        log_rates.append(BATCH / (time.perf_counter() - t))
        table = _raw_table(X, pred, conf, lat, names)  # the table log() writes, built untimed
        t = time.perf_counter()
        pq.write_table(table, raw_dir / f"{i}.parquet", **logstore.WRITE_OPTIONS)  # type: ignore[arg-type]
        raw_rates.append(BATCH / (time.perf_counter() - t))
        del table
    return {
        "log_rows_per_s": round(statistics.median(log_rates)),
        "write_table_rows_per_s": round(statistics.median(raw_rates)),
        "log_ratio": round(statistics.median(log_rates) / statistics.median(raw_rates), 3),
        "log_batch_mb": round(batch_mb, 1),
        "log_peak_growth_mb": round(growth_mb, 1),
        "log_peak_over_batch": round(growth_mb / batch_mb, 2),
        "log_files": len(mon.files()),
    }


def child_metrics(args: argparse.Namespace) -> dict[str, Any]:
    import mlops_nb as mnb

    root = Path(args.dir)
    ws, mon, rng, _names = _setup(args, 2)
    per_day = max(args.metrics_rows // 365, 1)
    names = [f"f{i:02d}" for i in range(20)]
    X = pd.DataFrame(features(rng, per_day), columns=names)
    pred, conf, lat = outputs(rng, per_day)
    end = pd.Timestamp.now(tz="UTC").floor("D")
    t0 = time.perf_counter()
    for day in range(365):
        start = end - pd.Timedelta(days=365 - day)
        stamps = start + pd.to_timedelta(np.linspace(0, 86_399, per_day), unit="s")
        mon.log(X, pred, version=1, confidence=conf, latency_ms=lat, timestamps=stamps)
    load_s = time.perf_counter() - t0
    ws.close() if hasattr(ws, "close") else None
    ws = mnb.open(root / "mlops.duckdb")
    mon = ws.monitor(MODEL)
    mon.metrics("1h", window="last 30d")
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        out = mon.metrics("1h", window="last 30d")
        times.append(time.perf_counter() - t)
    import duckdb

    glob = str(ws.logs_root / f"model={MODEL}" / "**" / "*.parquet")
    con = duckdb.connect()
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=30)
    base = []
    for _ in range(args.runs + 1):
        t = time.perf_counter()
        con.execute(
            "SELECT time_bucket(INTERVAL 1 HOUR, timestamp) b, count(*), "
            "quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.95), "
            "quantile_cont(latency_ms, 0.99), avg(confidence) FROM read_parquet(?, "
            "hive_partitioning = false) WHERE timestamp >= ? GROUP BY b",
            [glob, since],
        ).fetchall()
        base.append(time.perf_counter() - t)
    return {
        "metrics_rows": per_day * 365,
        "metrics_window_rows": int(out["count"].sum()),
        "metrics_load_s": round(load_s, 1),
        "metrics_files": len(mon.files()),
        "metrics_s": round(statistics.median(times), 3),
        "metrics_baseline_duckdb_glob_s": round(statistics.median(base[1:]), 3),
    }


def child_drift(args: argparse.Namespace) -> dict[str, Any]:

    _ws, mon, rng, names = _setup(args, 3)
    ref_rows, cur_rows = args.drift_ref_rows, args.drift_cur_rows

    def put(day: str, n: int, chunk: int = 1_000_000) -> None:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            X = pd.DataFrame(features(rng, m), columns=names)
            pred, conf, lat = outputs(rng, m)
            stamps = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(
                np.linspace(start, start + m - 1, m) * (86_399 / max(n, 1)), unit="s"
            )
            mon.log(X, pred, version=1, confidence=conf, latency_ms=lat, timestamps=stamps)
            del X

    put("2026-01-01", ref_rows)
    put("2026-01-02", ref_rows)
    put("2026-01-03", cur_rows)
    log(f"drift data logged: {ref_rows} + {ref_rows} + {cur_rows} rows")
    ref = ("2026-01-01", "2026-01-02")
    small = ("2026-01-02", "2026-01-03")
    big = ("2026-01-03", "2026-01-04")
    cpu = CpuMeter()

    def timed(cur: Any, exact: bool | None) -> tuple[float, Any]:
        mon.drift(ref, cur, store=False, exact=exact)
        times, rep = [], None
        for _ in range(args.runs):
            t = time.perf_counter()
            rep = mon.drift(ref, cur, store=False, exact=exact)
            times.append(time.perf_counter() - t)
        return statistics.median(times), rep

    big_s, big_rep = timed(big, None)
    peak_big = peak_rss_mb()
    small_s, small_rep = timed(small, None)
    streamed_s, streamed_rep = timed(small, False)
    same = bool(
        (small_rep.summary["drifted"].tolist() == streamed_rep.summary["drifted"].tolist())
        and small_rep.verdict == streamed_rep.verdict
    )
    gap = float(np.max(np.abs(small_rep.summary["statistic"] - streamed_rep.summary["statistic"])))
    return {
        "drift_10m_s": round(big_s, 3),
        "drift_10m_rows": [ref_rows, cur_rows],
        "drift_10m_peak_mb": peak_big,
        "drift_10m_verdict": big_rep.verdict,
        "drift_1m_s": round(small_s, 3),
        "drift_1m_streamed_s": round(streamed_s, 3),
        "drift_streamed_verdicts_equal_exact": same,
        "drift_streamed_max_statistic_gap": round(gap, 6),
        "drift_cpu_other_share": cpu.other_share(),
    }


def child_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from mlops_nb.monitor import logstore

    root = Path(args.dir)
    _ws, mon, rng, _names = _setup(args, 4)
    spool = root / "spool"
    rows = 50
    stamp = np.datetime64(pd.Timestamp.now(tz="UTC").tz_localize(None), "us")
    for i in range(args.spool_files):
        X = features(rng, rows)
        pred, conf, lat = outputs(rng, rows)
        table = pa.table({
            "id": [f"{i}-{j}" for j in range(rows)],
            "timestamp": pa.array(np.full(rows, stamp), pa.timestamp("us", tz="UTC")),
            "prediction": pred, "confidence": conf, "latency_ms": lat,
            **{f"feature.f{k:02d}": X[:, k] for k in range(20)},
        })  # fmt: skip
        logstore.write(spool, MODEL, 1, table)
    files = sorted(spool.rglob("*.parquet"))
    t = time.perf_counter()
    for f in files:
        pq.read_table(f)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    out = mon.ingest(spool)
    ingest_s = time.perf_counter() - t
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        again = mon.ingest(spool)
        times.append(time.perf_counter() - t)
    assert int(out["added"].sum()) == len(files) and not again["added"].any()
    return {
        "spool_files": len(files),
        "ingest_s": round(ingest_s, 3),
        "reingest_s": round(statistics.median(times), 3),
        "ingest_baseline_read_all_s": round(read_s, 3),
        "ingest_log_files": len(mon.files()),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every row count")
    p.add_argument("--parts", default="log,metrics,drift,ingest")
    p.add_argument("--log-batches", type=int, default=30)
    p.add_argument("--metrics-rows", type=int, default=100_000_000)
    p.add_argument("--drift-ref-rows", type=int, default=1_000_000)
    p.add_argument("--drift-cur-rows", type=int, default=10_000_000)
    p.add_argument("--spool-files", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and args.scale != 1.0:
        for name in ("metrics_rows", "drift_ref_rows", "drift_cur_rows", "spool_files"):
            setattr(args, name, max(int(getattr(args, name) * args.scale), 1000))
        args.log_batches = max(int(args.log_batches * args.scale), 5)
    return args


CHILDREN = {
    "log": child_log,
    "metrics": child_metrics,
    "drift": child_drift,
    "ingest": child_ingest,
}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)), flush=True)
        return
    result: dict[str, Any] = {"benchmark": "monitor_growth", "scale": args.scale}
    passed = {k: v for k, v in vars(args).items() if k not in ("child", "dir", "parts", "scale")}
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in passed.items()]
    for part in args.parts.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"mnb-growth-{part}-"))
        try:
            log(f"running {part}")
            result.update(run_child(part, [*extra, f"--dir={folder}"], __file__))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    result["targets"] = TARGETS
    result["versions"] = versions()
    result["load_avg_1m"] = os.getloadavg()[0]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
