"""Monitoring benchmark: prediction-log ingest throughput and drift on 1M vs 1M rows.

Prints exactly one JSON line on stdout; progress goes to stderr.

    python benchmarks/monitor.py        # about 2-3 minutes on 2 cores

What it does, in a temporary folder (removed afterwards):

1. Ingest. Builds ``--ingest-rows`` (default 3,000,000) rows as DataFrames of
   ``--batch`` (100,000) rows x 20 float64 features, plus integer predictions (0/1),
   confidences and latencies, all before timing. One untimed warm-up call, then every batch
   goes through the public ``mon.log(X, y_pred, version=1, confidence=..., latency_ms=...)``
   into a DuckDB-file workspace (timestamps default to now, as in live logging). Reports
   the median per-batch rate and the overall rate (all timed rows / sum of call times).
   Target: >= 1,000,000 rows/s.
2. Baseline for ingest, same run: the reference design that logs row at a time, stdlib
   ``sqlite3`` with a file on disk in the same temporary folder (default settings: rollback
   journal, synchronous=FULL), one ``INSERT`` per prediction (a uuid4 id, an ISO UTC
   timestamp, model, version, prediction, confidence, latency and the 20 features as JSON
   text), committing every 1,000 rows, for ``--sqlite-rows`` (50,000) rows. The features
   are Python dicts built before timing; ``json.dumps``, the id, the timestamp, the
   INSERTs and the commits are timed. Target: ``ingest_rows_per_s`` over the rate of
   ``--sqlite-per-row-rows`` (5,000) rows committed one at a time (the reference design,
   which the issue measured at ~1,400 rows/s) >= 500; the ratio against batched commits is
   printed beside it as ``ingest_ratio_vs_batched_commits``.
3. Drift. Logs ``--drift-rows`` (1,000,000) rows with explicit timestamps spread over
   2026-01-01 and as many over 2026-01-02, drawn from the same distributions (20 numeric
   features: normal, lognormal, uniform, exponential, Student t, bimodal mixture, integer-
   valued floats; integer predictions 0/1, which drift compares as categories; confidence
   in [0.5, 1]). So the drift run compares 22 columns: 20 numeric features + prediction
   (categorical) + confidence (numeric). A fresh subprocess opens the workspace and runs
   ``mon.drift(reference=(day 1), current=(day 2), store=False)`` once as warm-up and
   ``--drift-runs`` (5) times timed; it reports the median seconds and its peak RSS
   (``ru_maxrss`` at the end). Targets: median <= 3 s, peak RSS <= 1 GB. The verdict must be
   "no drift" (same distributions). After measuring, the same subprocess checks that a
   shifted day (0.2 sd on half the features, 200,000 rows) is flagged, so "no drift" is
   not the answer of a broken detector.
4. Baseline for drift: another fresh subprocess loads the same two 1M x 22 samples (saved
   as ``.npy``) and runs, per column, ``scipy.stats.ks_2samp`` and
   ``scipy.stats.wasserstein_distance``, what a naive implementation does. One warm-up on
   small arrays, then ``--baseline-runs`` (3) timed runs; loading is reported apart and
   left out of the timing. The ratio is ``baseline_numpy_scipy_s / drift_median_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

N_FEATURES = 20
MODEL = "churn"
DAY1 = "2026-01-01"
DAY2 = "2026-01-02"
DAY3 = "2026-01-03"
DAY4 = "2026-01-04"
TARGETS = {
    "ingest_rows_per_s": 1_000_000,
    "ingest_ratio": 500,
    "drift_median_s": 3.0,
    "drift_peak_rss_mb": 1024,
}
SEED = 20260101


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def feature_names() -> list[str]:
    return [f"f{i:02d}" for i in range(N_FEATURES)]


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def vm_hwm_mb() -> float | None:
    """Peak RSS of this process image from /proc (a cross-check of ru_maxrss), or None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class CpuMeter:
    """Share of the machine's CPU that other processes used over an interval (Linux).

    Busy time of all CPUs from /proc/stat, minus the CPU time of this process and its
    waited-for children, over the interval's capacity (cores x wall time). Tells a slow
    figure on a loaded machine from a slow library.
    """

    def __init__(self) -> None:
        self.busy0, self.total0 = self._stat()
        self.own0 = self._own()

    @staticmethod
    def _stat() -> tuple[float, float]:
        try:
            with open("/proc/stat") as fh:
                fields = [float(x) for x in fh.readline().split()[1:]]
        except OSError:
            return 0.0, 0.0
        tick = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def other_share(self) -> float | None:
        busy, total = self._stat()
        if total <= self.total0:
            return None
        other = (busy - self.busy0) - (self._own() - self.own0)
        return round(max(0.0, other) / (total - self.total0), 3)


# -- data ----------------------------------------------------------------------------------


def features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray[Any, Any]:
    """``n`` x 20 float64 features of varied shapes; ``shift`` (in sd) moves the even ones."""
    kinds = [
        lambda: rng.standard_normal(n),
        lambda: rng.lognormal(0.0, 1.0, n),
        lambda: rng.uniform(-3.0, 3.0, n),
        lambda: rng.exponential(2.0, n),
        lambda: rng.standard_t(3, n),
        lambda: np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(1.5, 1.0, n)),
        lambda: rng.poisson(4.0, n).astype(np.float64),
    ]
    out = np.empty((n, N_FEATURES), dtype=np.float64, order="F")
    for j in range(N_FEATURES):
        col = kinds[j % len(kinds)]()
        if shift and j % 2 == 0:
            col = col + shift * float(np.std(col))
        out[:, j] = col
    return out


def outputs(rng: np.random.Generator, n: int) -> tuple[np.ndarray[Any, Any], ...]:
    """Predictions (0/1), confidences in [0.5, 1] and latencies (ms) for ``n`` rows."""
    prediction = (rng.random(n) < 0.3).astype(np.int64)
    confidence = 0.5 + 0.5 * rng.beta(2.0, 2.0, n)
    latency = rng.gamma(2.0, 4.0, n)
    return prediction, confidence, latency


def day_timestamps(day: str, n: int) -> np.ndarray[Any, Any]:
    """``n`` sorted UTC timestamps spread over one day (naive datetime64[us], read as UTC)."""
    start = np.datetime64(day, "us")
    offsets = np.linspace(0, 86_400_000_000 - 1, n).astype(np.int64)
    return start + offsets.astype("timedelta64[us]")


# -- ingest --------------------------------------------------------------------------------


def bench_ingest(root: Path, rows: int, batch: int, rng: np.random.Generator) -> dict[str, Any]:
    import mlops_nb as mnb

    n_batches = max(1, rows // batch)
    log(f"building {n_batches} batches of {batch:,} rows x {N_FEATURES} features")
    names = feature_names()
    batches = []
    for _ in range(n_batches + 1):  # +1 for the warm-up call
        frame = pd.DataFrame(features(rng, batch), columns=names)
        batches.append((frame, *outputs(rng, batch)))
    ws = mnb.open(root / "ingest.duckdb")
    try:
        ws.model(MODEL).register({"w": 1})
        mon = ws.monitor(MODEL)
        frame, pred, conf, lat = batches[0]
        t0 = time.perf_counter()
        mon.log(frame, pred, version=1, confidence=conf, latency_ms=lat)
        first = time.perf_counter() - t0
        log(f"warm-up call: {batch / first:,.0f} rows/s; timing {n_batches} calls")
        durations = []
        for i, (frame, pred, conf, lat) in enumerate(batches[1:], start=1):
            t0 = time.perf_counter()
            ids = mon.log(frame, pred, version=1, confidence=conf, latency_ms=lat)
            durations.append(time.perf_counter() - t0)
            assert len(ids) == batch
            if i % 10 == 0:
                log(f"  {i * batch:,} rows, last batch {batch / durations[-1]:,.0f} rows/s")
        files = mon.files()
        logged = int(files["rows"].sum())
        assert logged == batch * (n_batches + 1), (logged, batch, n_batches)
        rates = [batch / d for d in durations]
        disk = sum(f.stat().st_size for f in (ws.logs_root).rglob("*.parquet"))
    finally:
        ws.close()
    third = max(1, len(durations) // 3)
    return {
        "ingest_rows": batch * n_batches,
        "ingest_batch_rows": batch,
        "ingest_rows_per_s": round(batch * n_batches / sum(durations)),
        "ingest_batch_median_rows_per_s": round(statistics.median(rates)),
        "ingest_batch_min_rows_per_s": round(min(rates)),
        "ingest_batch_max_rows_per_s": round(max(rates)),
        "ingest_first_third_rows_per_s": round(batch * third / sum(durations[:third])),
        "ingest_last_third_rows_per_s": round(batch * third / sum(durations[-third:])),
        "ingest_warmup_call_rows_per_s": round(batch / first),
        "ingest_parquet_bytes_per_row": round(disk / logged, 1),
    }


def bench_sqlite(
    root: Path, rows: int, per_row_rows: int, rng: np.random.Generator
) -> dict[str, Any]:
    """The row-at-a-time reference design: one INSERT per prediction, features as JSON."""
    names = feature_names()

    def build(n: int) -> list[tuple[dict[str, float], int, float, float]]:
        X = features(rng, n)
        pred, conf, lat = outputs(rng, n)
        dicts = [dict(zip(names, r, strict=True)) for r in X.tolist()]
        return list(zip(dicts, pred.tolist(), conf.tolist(), lat.tolist(), strict=True))

    def connect(path: Path) -> sqlite3.Connection:
        con = sqlite3.connect(path)
        con.execute(
            "CREATE TABLE predictions (id TEXT PRIMARY KEY, model TEXT NOT NULL, "
            "version INTEGER NOT NULL, ts TEXT NOT NULL, prediction INTEGER, confidence REAL, "
            "latency_ms REAL, features TEXT NOT NULL)"
        )
        con.commit()
        return con

    sql = "INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

    def insert(con: sqlite3.Connection, row: tuple[dict[str, float], int, float, float]) -> None:
        feats, pred, conf, lat = row
        con.execute(
            sql,
            (uuid.uuid4().hex, MODEL, 1, datetime.now(UTC).isoformat(), pred, conf, lat,
             json.dumps(feats)),
        )  # fmt: skip

    data = build(rows)
    con = connect(root / "baseline.sqlite")
    log(f"sqlite baseline: {rows:,} rows, one INSERT each, commit every 1,000")
    t0 = time.perf_counter()
    for i, row in enumerate(data, start=1):
        insert(con, row)
        if i % 1000 == 0:
            con.commit()
    con.commit()
    seconds = time.perf_counter() - t0
    count = con.execute("SELECT count(*) FROM predictions").fetchone()
    con.close()
    assert count is not None and count[0] == rows, count

    data = build(per_row_rows)
    con = connect(root / "baseline-per-row.sqlite")
    log(f"sqlite, commit per row: {per_row_rows:,} rows")
    t0 = time.perf_counter()
    for row in data:
        insert(con, row)
        con.commit()
    per_row_seconds = time.perf_counter() - t0
    con.close()
    return {
        "sqlite_rows": rows,
        "sqlite_rows_per_s": round(rows / seconds),
        "sqlite_commit_per_row_rows_per_s": round(per_row_rows / per_row_seconds),
    }


# -- drift ---------------------------------------------------------------------------------


def setup_drift(root: Path, rows: int, batch: int, rng: np.random.Generator) -> dict[str, Any]:
    """Log two days of identically distributed traffic (and a shifted third day); save the
    two days' 22 compared columns as .npy for the numpy/scipy baseline."""
    import mlops_nb as mnb

    names = feature_names()
    ws = mnb.open(root / "drift.duckdb")
    seconds = 0.0
    logged = 0
    try:
        ws.model(MODEL).register({"w": 1})
        mon = ws.monitor(MODEL)
        for day in (DAY1, DAY2, DAY3):
            n = rows if day != DAY3 else min(rows, 200_000)
            shift = 0.2 if day == DAY3 else 0.0
            X = features(rng, n, shift)
            pred, conf, lat = outputs(rng, n)
            stamps = day_timestamps(day, n)
            if day != DAY3:
                sample = np.column_stack([X, pred.astype(np.float64), conf])
                np.save(root / f"sample-{day}.npy", sample)
                del sample
            log(f"logging {n:,} rows on {day} with explicit timestamps")
            for s in range(0, n, batch):
                frame = pd.DataFrame(X[s : s + batch], columns=names)
                t0 = time.perf_counter()
                mon.log(
                    frame, pred[s : s + batch], version=1, confidence=conf[s : s + batch],
                    latency_ms=lat[s : s + batch], timestamps=stamps[s : s + batch],
                )  # fmt: skip
                seconds += time.perf_counter() - t0
                logged += len(frame)
            del X
    finally:
        ws.close()
    return {"ingest_with_timestamps_rows_per_s": round(logged / seconds)}


def child_drift(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a fresh process: warm-up, timed drift runs, peak RSS, then a sanity check."""
    import mlops_nb as mnb

    rss_imported = peak_rss_mb()
    ws = mnb.open(Path(args.workspace))
    try:
        mon = ws.monitor(MODEL)

        def run() -> Any:
            return mon.drift(reference=(DAY1, DAY2), current=(DAY2, DAY3), store=False)

        t0 = time.perf_counter()
        report = run()
        warmup = time.perf_counter() - t0
        print(f"[drift child] warm-up {warmup:.2f} s: {report!r}", file=sys.stderr, flush=True)
        times = []
        cpu = []
        for _ in range(args.drift_runs):
            t0, c0 = time.perf_counter(), time.process_time()
            report = run()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            print(
                f"[drift child] run {times[-1]:.2f} s (CPU {cpu[-1]:.2f} s)",
                file=sys.stderr,
                flush=True,
            )
        rss = peak_rss_mb()
        frame = pd.concat([report.summary, report.outputs], ignore_index=True)
        result = {
            "runs_s": [round(t, 3) for t in times],
            "cpu_s": round(statistics.median(cpu), 3),
            "warmup_s": round(warmup, 3),
            "peak_rss_mb": rss,
            "vm_hwm_mb": vm_hwm_mb(),
            "rss_after_imports_mb": rss_imported,
            "verdict": report.verdict,
            "n_ref": report.n_ref,
            "n_cur": report.n_cur,
            "columns": len(frame),
            "methods": frame.groupby("method").size().to_dict(),
            "max_statistic": {
                m: round(float(g["statistic"].max()), 6) for m, g in frame.groupby("method")
            },
        }
        shifted = mon.drift(reference=(DAY1, DAY2), current=(DAY3, DAY4), store=False)
        result["shifted_check"] = {
            "verdict": shifted.verdict,
            "drifted_features": len(shifted.drifted_features),
            "expected_drifted_features": N_FEATURES // 2,
        }
        return result
    finally:
        ws.close()


def child_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a fresh process: per column ks_2samp + wasserstein_distance on 1M vs 1M."""
    from scipy import stats

    root = Path(args.data)
    small = np.random.default_rng(0).standard_normal(1000)
    stats.ks_2samp(small, small + 0.1)
    stats.wasserstein_distance(small, small + 0.1)
    t0 = time.perf_counter()
    ref = np.load(root / f"sample-{DAY1}.npy")
    cur = np.load(root / f"sample-{DAY2}.npy")
    load = time.perf_counter() - t0
    times = []
    results = []
    for _ in range(args.baseline_runs):
        t0 = time.perf_counter()
        results = []
        for j in range(ref.shape[1]):
            a, b = ref[:, j], cur[:, j]
            ks = stats.ks_2samp(a, b)
            wd = stats.wasserstein_distance(a, b)
            results.append((float(ks.statistic), float(ks.pvalue), float(wd)))
        times.append(time.perf_counter() - t0)
        print(f"[baseline child] run {times[-1]:.2f} s", file=sys.stderr, flush=True)
    return {
        "runs_s": [round(t, 3) for t in times],
        "load_s": round(load, 3),
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": vm_hwm_mb(),
        "shape": [list(ref.shape), list(cur.shape)],
        "min_ks_pvalue": round(min(r[1] for r in results), 6),
    }


def run_child(mode: str, extra: list[str], script: str = __file__) -> dict[str, Any]:
    """Run this script in a fresh Python process; its JSON result.

    Started through /bin/sh on purpose: Linux carries the peak RSS of the process that
    forks into the child's ``ru_maxrss`` across exec (subprocess forks this process, which
    holds hundreds of MB here), so a child started directly would report this process's
    peak. Forked from a small shell, the child's ``ru_maxrss`` is its own.
    """
    cmd = [sys.executable, os.path.abspath(script), "--child", mode, *extra]
    shell = ["/bin/sh", "-c", f"{shlex.join(cmd)}; exit $?"] if os.path.exists("/bin/sh") else cmd
    done = subprocess.run(shell, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- main ----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import duckdb
    import pyarrow
    import scipy

    return {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    whole = CpuMeter()
    rng = np.random.default_rng(SEED)
    out: dict[str, Any] = {"benchmark": "monitor"}

    out.update(bench_ingest(root, args.ingest_rows, args.batch, rng))
    log(f"ingest: {out['ingest_rows_per_s']:,} rows/s overall")
    out.update(bench_sqlite(root, args.sqlite_rows, args.sqlite_per_row_rows, rng))
    # The reference design logs a row at a time and commits it (~1,400 rows/s
    # there): that is the baseline of the ratio. Batched commits are reported beside it.
    out["ingest_ratio"] = round(
        out["ingest_rows_per_s"] / out["sqlite_commit_per_row_rows_per_s"], 1
    )
    out["ingest_ratio_vs_batched_commits"] = round(
        out["ingest_rows_per_s"] / out["sqlite_rows_per_s"], 1
    )
    out["ingest_batch_median_ratio"] = round(
        out["ingest_batch_median_rows_per_s"] / out["sqlite_commit_per_row_rows_per_s"], 1
    )
    log(
        f"sqlite per-row commit: {out['sqlite_commit_per_row_rows_per_s']:,} rows/s; "
        f"ratio {out['ingest_ratio']}x"
    )

    out.update(setup_drift(root, args.drift_rows, args.batch, rng))
    log(f"drift: fresh subprocess, 1 warm-up + {args.drift_runs} runs")
    meter = CpuMeter()
    drift = run_child(
        "drift", ["--workspace", str(root / "drift.duckdb"), "--drift-runs", str(args.drift_runs)]
    )
    drift_other = meter.other_share()
    log(f"baseline: fresh subprocess, {args.baseline_runs} runs of ks_2samp + wasserstein")
    base = run_child("baseline", ["--data", str(root), "--baseline-runs", str(args.baseline_runs)])
    drift_median = statistics.median(drift["runs_s"])
    base_median = statistics.median(base["runs_s"])
    out.update(
        {
            "drift_rows_per_side": args.drift_rows,
            "drift_columns": "20 numeric features + prediction (0/1, categorical) + confidence",
            "drift_median_s": round(drift_median, 3),
            "drift_runs_s": drift["runs_s"],
            "drift_cpu_s_median": drift["cpu_s"],
            "drift_warmup_s": drift["warmup_s"],
            "drift_phase_other_cpu_share": drift_other,
            "drift_peak_rss_mb": drift["peak_rss_mb"],
            "drift_vm_hwm_mb": drift["vm_hwm_mb"],
            "drift_rss_after_imports_mb": drift["rss_after_imports_mb"],
            "drift_verdict": drift["verdict"],
            "drift_n_ref": drift["n_ref"],
            "drift_n_cur": drift["n_cur"],
            "drift_columns_compared": drift["columns"],
            "drift_methods": drift["methods"],
            "drift_max_statistic": drift["max_statistic"],
            "drift_shifted_check": drift["shifted_check"],
            "baseline_numpy_scipy_s": round(base_median, 3),
            "baseline_runs_s": base["runs_s"],
            "baseline_load_npy_s": base["load_s"],
            "baseline_peak_rss_mb": base["peak_rss_mb"],
            "baseline_vm_hwm_mb": base["vm_hwm_mb"],
            "drift_speedup_vs_baseline": round(base_median / drift_median, 2),
            "drift_rss_ratio_vs_baseline": round(drift["peak_rss_mb"] / base["peak_rss_mb"], 2),
        }
    )
    out["targets"] = TARGETS
    out["met"] = {
        "ingest_rows_per_s": out["ingest_rows_per_s"] >= TARGETS["ingest_rows_per_s"],
        "ingest_ratio": out["ingest_ratio"] >= TARGETS["ingest_ratio"],
        "drift_median_s": drift_median <= TARGETS["drift_median_s"],
        "drift_peak_rss_mb": drift["peak_rss_mb"] <= TARGETS["drift_peak_rss_mb"],
        "drift_verdict_no_drift": drift["verdict"] == "no drift",
        "shifted_day_flagged": drift["shifted_check"]["verdict"].startswith("drifted"),
    }
    out["cpus"] = os.cpu_count()
    out.update(versions())
    out["other_cpu_share"] = whole.other_share()
    out["loadavg_1m_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    out["total_s"] = round(time.perf_counter() - started, 1)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ingest-rows", type=int, default=3_000_000)
    p.add_argument("--batch", type=int, default=100_000)
    p.add_argument("--sqlite-rows", type=int, default=50_000)
    p.add_argument("--sqlite-per-row-rows", type=int, default=5_000)
    p.add_argument("--drift-rows", type=int, default=1_000_000, help="rows per day (side)")
    p.add_argument("--drift-runs", type=int, default=5)
    p.add_argument("--baseline-runs", type=int, default=3)
    p.add_argument("--child", choices=["drift", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--workspace", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        result = child_drift(args) if args.child == "drift" else child_baseline(args)
        print(json.dumps(result), flush=True)
        return
    root = Path(tempfile.mkdtemp(prefix="mnb-bench-monitor-"))
    try:
        result = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
