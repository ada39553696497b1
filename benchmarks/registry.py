"""Registry benchmark: register throughput, version lookups and searches at 100,000 versions,
and a tag search returning thousands of rows at 10,000 versions.

Prints exactly one JSON line on stdout; progress goes to stderr.

    python benchmarks/registry.py                    # a few minutes on 2 cores
    python benchmarks/registry.py --versions 10000   # the former default size

What it does, on a DuckDB file in a temporary folder (removed afterwards):

1. Registers ``--api-versions`` (default 300) small Python objects through the public API
   ``ws.model(name).register(obj, metrics=..., tags=...)``, round-robin over 20 models,
   and reports versions/s. The object is a dict of 8 floats and an int (cloudpickle,
   flavor "python", ~200 bytes), different each time so every registration stores new
   blobs: the run measures the registry, not a serializer.
2. Brings the workspace to ``--tag-versions`` (default 10,000) and measures a tag search
   that returns thousands of rows (``ws.search(tags=["tabular"])``, ~28% of versions), then
   to ``--versions`` (default 100,000). Registering that many through the API takes
   too long, so by default the remaining versions are
   bulk-inserted with SQL in one transaction into the same tables ``register()`` writes
   (``versions``, ``version_metrics``, ``audit``, ``models``), each row copied from an
   API-registered version of the same model (same artifact manifest, digest, flavor) with
   its own number, metrics, tags, label, stage and timestamp. ``--api-seed`` registers
   every version through the API instead.
3. Production versions, archiving and aliases (``champion``, ``challenger``) are then set
   through the API (``promote``, ``set_alias``), so each model has one production version,
   archived predecessors, staging and development versions.
4. Measures version lookups (``ws.model(m).version(ref).stage`` on a fresh handle, ref a
   random number, ``"@champion"`` or ``"latest"``) and filtered searches, with the default
   workspace settings ("warm": the file stays open between operations, see
   ``mlops_nb/store.py`` linger) and with ``mnb.open(path, linger=0)`` ("cold": DuckDB is
   opened for each operation). Targets (warm): lookup p95 <= 10 ms, filtered search p95
   <= 20 ms; the broad tag search at 10,000 versions p95 <= 20 ms.
5. Registers ``--scale-registrations`` (default 200) more versions into the full workspace
   to see whether register slows down with size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

import mlops_nb as mnb

TARGET_P95_MS = 10.0
TARGET_SEARCH_P95_MS = 20.0
TARGET_REGISTER_PER_S = 50.0
N_MODELS = 20
TAG_POOL = ["tabular", "nlp", "vision", "baseline", "candidate", "gpu", "nightly"]
METRICS = ("accuracy", "f1", "latency_ms")
SEED = 20240501


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def model_names() -> list[str]:
    return [f"model-{i:02d}" for i in range(N_MODELS)]


def random_metrics(rng: random.Random) -> dict[str, float]:
    return {
        "accuracy": round(rng.uniform(0.6, 0.99), 4),
        "f1": round(rng.uniform(0.5, 0.97), 4),
        "latency_ms": round(rng.uniform(1.0, 80.0), 2),
    }


def random_tags(rng: random.Random) -> list[str]:
    return sorted(rng.sample(TAG_POOL, rng.randint(1, 3)))


def label_for(number: int) -> str | None:
    """Every fifth version carries a semantic-version label."""
    return f"1.{number}.0" if number % 5 == 0 else None


def small_object(i: int) -> dict[str, Any]:
    return {"coef": [0.1 * k + i * 1e-6 for k in range(8)], "intercept": i}


def pct(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations in seconds, as milliseconds."""
    a = np.asarray(samples) * 1000.0
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": len(samples),
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(a.max()), 3),
    }


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- seeding -------------------------------------------------------------------------------


def register_many(
    ws: mnb.Workspace, count: int, rng: random.Random, counters: dict[str, int], start: int
) -> list[float]:
    """Register ``count`` small objects round-robin over the models; per-call durations."""
    names = model_names()
    durations = []
    for i in range(count):
        name = names[(start + i) % len(names)]
        number = counters[name] + 1
        obj = small_object(start + i)
        metrics = random_metrics(rng)
        tags = random_tags(rng)
        t0 = time.perf_counter()
        v = ws.model(name).register(obj, metrics=metrics, tags=tags, label=label_for(number))
        durations.append(time.perf_counter() - t0)
        counters[name] = number
        assert v.number == number, (name, v.number, number)
        if (i + 1) % 1000 == 0:
            log(f"registered {i + 1}/{count} through the API")
    return durations


def bulk_seed(path: Path, per_model: int, counters: dict[str, int], rng: random.Random) -> int:
    """Insert the missing versions of each model in one transaction; rows inserted."""
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        templates = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT model, number, digest, created_by, created_at FROM versions v "
                "WHERE number = (SELECT max(number) FROM versions w WHERE w.model = v.model)"
            ).fetchall()
        }
        rows = []
        stages = ["development"] * 55 + ["staging"] * 15 + ["archived"] * 30
        for name in model_names():
            template_number, digest, _creator, created_at = templates[name]
            for number in range(counters[name] + 1, per_model + 1):
                metrics = random_metrics(rng)
                label = label_for(number)
                rows.append(
                    {
                        "model": name,
                        "number": number,
                        "template": template_number,
                        "label": label,
                        "stage": rng.choice(stages),
                        "data_version": f"data-v{number // 50}",
                        "metrics": json.dumps(metrics),
                        "accuracy": metrics["accuracy"],
                        "f1": metrics["f1"],
                        "latency_ms": metrics["latency_ms"],
                        "tags": ",".join(random_tags(rng)),
                        "created_at": created_at + timedelta(seconds=number),
                        "details": json.dumps({"digest": digest, "label": label}),
                    }
                )
            counters[name] = per_model
        seed = pd.DataFrame(rows)
        con.register("seed", seed)
        con.execute("BEGIN TRANSACTION")
        con.execute(
            """
            INSERT INTO versions
            SELECT s.model, s.number, s.label, s.stage, t.flavor, t.framework, t.algorithm,
                   s.data_version, NULL, t.git_commit, s.metrics, t.params, t.resources,
                   string_split(s.tags, ','), NULL, t.signature, t.artifact_uri, t.digest,
                   t.manifest, s.created_at, t.created_by
            FROM seed s JOIN versions t ON t.model = s.model AND t.number = s.template
            ORDER BY s.model, s.number
            """
        )
        con.execute(
            """
            INSERT INTO version_metrics
            SELECT model, number, unnest(['accuracy', 'f1', 'latency_ms']),
                   unnest([accuracy, f1, latency_ms])
            FROM seed
            """
        )
        con.execute(
            """
            INSERT INTO audit (happened_at, actor, action, model, version, from_value,
                               to_value, reason, details)
            SELECT s.created_at, t.created_by, 'register', s.model, s.number, NULL,
                   'development', NULL, s.details
            FROM seed s JOIN versions t ON t.model = s.model AND t.number = s.template
            ORDER BY s.created_at
            """
        )
        con.execute("COMMIT")
        con.unregister("seed")
        return len(rows)
    finally:
        con.close()


def promote_and_alias(ws: mnb.Workspace, rng: random.Random) -> dict[str, int]:
    """Through the API: 3 successive production versions per model (the earlier two get
    archived), champion on the last, challenger on a staging version. Returns champions."""
    champions = {}
    for i, name in enumerate(model_names()):
        model = ws.model(name)
        frame = model.search(stage=["development", "staging"])
        # Three models out of four have a production version matching the filtered search.
        good = frame[(frame["accuracy"] >= 0.9) & frame["tags"].map(lambda t: "tabular" in t)]
        pool = good if i % 4 and len(good) >= 3 else frame
        picks = sorted(rng.sample(list(pool["version"]), 3))
        for number in picks:
            model.version(int(number)).promote("staging", reason="offline eval passed")
            model.version(int(number)).promote("production", reason="benchmark seed")
        champions[name] = picks[-1]
        model.set_alias("champion", picks[-1])
        rest = frame[~frame["version"].isin(picks)].sort_values("stage", ascending=False)
        model.set_alias("challenger", int(rest["version"].iloc[0]))  # staging if any
    return champions


# -- measurements ----------------------------------------------------------------------------


def measure_lookups(
    ws: mnb.Workspace, per_kind: int, per_model: int, rng: random.Random
) -> dict[str, Any]:
    names = model_names()
    kinds = ["number", "alias", "latest"] * per_kind
    rng.shuffle(kinds)
    samples: dict[str, list[float]] = {"number": [], "alias": [], "latest": []}
    for kind in kinds:
        name = rng.choice(names)
        ref: int | str
        if kind == "number":
            ref = rng.randint(1, per_model)
        elif kind == "alias":
            ref = "@champion"
        else:
            ref = "latest"
        t0 = time.perf_counter()
        stage = ws.model(name).version(ref).stage
        samples[kind].append(time.perf_counter() - t0)
        assert stage in {"development", "staging", "production", "archived"}
    every = [s for values in samples.values() for s in values]
    out: dict[str, Any] = {"all": pct(every)}
    out.update({kind: pct(values) for kind, values in samples.items()})
    out["over_10ms"] = sum(s > TARGET_P95_MS / 1000 for s in every)
    return out


def measure_searches(ws: mnb.Workspace, count: int, rng: random.Random) -> dict[str, Any]:
    names = model_names()
    one: list[float] = []
    across: list[float] = []
    rows_one: list[int] = []
    rows_across: list[int] = []
    for _ in range(count):
        name = rng.choice(names)
        t0 = time.perf_counter()
        frame = ws.search(
            model=name, stage="production", metrics="accuracy >= 0.9", tags=["tabular"]
        )
        one.append(time.perf_counter() - t0)
        rows_one.append(len(frame))
        t0 = time.perf_counter()
        frame = ws.search(stage="production", metrics="accuracy >= 0.9", tags=["tabular"])
        across.append(time.perf_counter() - t0)
        rows_across.append(len(frame))
    return {
        "all": pct(one + across),
        "one_model": {**pct(one), "rows_mean": round(statistics.fmean(rows_one), 2)},
        "all_models": {**pct(across), "rows_mean": round(statistics.fmean(rows_across), 2)},
    }


def measure_broad(ws: mnb.Workspace, count: int, rng: random.Random) -> dict[str, Any]:
    """Searches returning many rows: one model's versions, a metric filter on all models."""
    names = model_names()
    versions: list[float] = []
    metric: list[float] = []
    rows = {}
    for _ in range(count):
        name = rng.choice(names)
        t0 = time.perf_counter()
        frame = ws.model(name).versions()
        versions.append(time.perf_counter() - t0)
        rows["model_versions_rows"] = len(frame)
        t0 = time.perf_counter()
        frame = ws.search(metrics="accuracy >= 0.95")
        metric.append(time.perf_counter() - t0)
        rows["metric_all_models_rows"] = len(frame)
    return {"model_versions": pct(versions), "metric_all_models": pct(metric), **rows}


def measure_tag_search(path: Path, count: int) -> dict[str, Any]:
    """``ws.search(tags=["tabular"])`` on the whole workspace (warm), and the same query's
    SQL alone through DuckDB as the floor measured in the same run."""
    ws = mnb.open(path)
    try:
        ws.search(tags=["tabular"])  # warm-up
        samples = []
        rows = 0
        for _ in range(count):
            t0 = time.perf_counter()
            rows = len(ws.search(tags=["tabular"]))
            samples.append(time.perf_counter() - t0)
        floor = []
        for _ in range(count):
            t0 = time.perf_counter()
            ws._store.read(
                lambda con: con.execute(
                    "SELECT model, number, tags, created_at FROM versions "
                    "WHERE list_contains(tags, 'tabular')"
                ).fetchnumpy()
            )
            floor.append(time.perf_counter() - t0)
    finally:
        ws.close()
    out = pct(samples)
    return {
        **out,
        "rows": rows,
        "sql_floor": pct(floor),
        "ratio_to_floor_p50": round(out["p50_ms"] / max(pct(floor)["p50_ms"], 1e-9), 2),
    }


def measure_mode(
    path: Path, linger: float | None, args: argparse.Namespace, per_model: int, seed: int
) -> dict[str, Any]:
    ws = mnb.open(path) if linger is None else mnb.open(path, linger=linger)
    try:
        rng = random.Random(seed)
        # Warm-up: imports, first queries, DuckDB caches.
        for name in model_names()[:5]:
            ws.model(name).version("latest").stage  # noqa: B018
            ws.search(model=name, stage="production")
        t0 = time.perf_counter()
        lookups = measure_lookups(ws, args.lookups_per_kind, per_model, rng)
        searches = measure_searches(ws, args.searches, rng)
        broad = measure_broad(ws, args.broad_searches, rng)
        return {
            "lookups": lookups,
            "searches": searches,
            "broad_searches": broad,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    finally:
        ws.close()


def duckdb_open_ms(path: Path, times: int = 10) -> float:
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        duckdb.connect(str(path)).close()
        samples.append(time.perf_counter() - t0)
    return round(statistics.median(samples) * 1000, 2)


# -- main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    path = root / "bench.duckdb"
    per_model = args.versions // N_MODELS
    total = per_model * N_MODELS
    rng = random.Random(SEED)
    counters = dict.fromkeys(model_names(), 0)

    ws = mnb.open(path, create=True)
    git_ms = round(statistics.median(timed(ws.git_commit) for _ in range(5)) * 1000, 2)
    api_count = total if args.api_seed else min(args.api_versions, total)
    log(f"registering {api_count} versions through ws.model(name).register(...)")
    t0 = time.perf_counter()
    durations = register_many(ws, api_count, rng, counters, start=0)
    api_seconds = time.perf_counter() - t0
    # The first registration imports cloudpickle and warms caches: left out of the rate.
    head = durations[1 : min(len(durations), args.api_versions)] or durations
    register_per_s = len(head) / sum(head)
    ws.close()

    bulk_rows = 0
    bulk_seconds = 0.0
    tag_search: dict[str, Any] | None = None
    tag_total = min(args.tag_versions, total) // N_MODELS * N_MODELS
    if tag_total and api_count < tag_total:
        log(f"bulk-inserting up to {tag_total} versions for the broad tag search")
        t0 = time.perf_counter()
        bulk_rows += bulk_seed(path, tag_total // N_MODELS, counters, rng)
        bulk_seconds += time.perf_counter() - t0
        log("measuring the broad tag search")
        tag_search = {"versions": tag_total, **measure_tag_search(path, args.searches)}
    if api_count < total:
        log(
            f"bulk-inserting {total - api_count - bulk_rows} versions with SQL (same tables as register)"
        )
        t0 = time.perf_counter()
        bulk_rows += bulk_seed(path, per_model, counters, rng)
        bulk_seconds += time.perf_counter() - t0

    ws = mnb.open(path)
    log("promoting and aliasing through the API")
    t0 = time.perf_counter()
    champions = promote_and_alias(ws, rng)
    promote_seconds = time.perf_counter() - t0
    models = ws.models()
    assert int(models["versions"].sum()) == total, models
    assert (models["production"].notna()).all(), models
    sample = ws.model(model_names()[3]).version(per_model - 1)
    assert set(sample.metrics) == set(METRICS) and sample.tags, sample.info()
    assert ws.model(model_names()[0]).version("@champion").number == champions[model_names()[0]]
    stage_counts = (
        ws.search()["stage"]
        .value_counts()
        .reindex(["development", "staging", "production", "archived"], fill_value=0)
        .astype(int)
        .to_dict()
    )
    ws.close()
    seed_seconds = api_seconds + bulk_seconds + promote_seconds
    db_mb = round(path.stat().st_size / 1e6, 2)
    open_ms = duckdb_open_ms(path)

    log("measuring warm (default linger)")
    warm = measure_mode(path, None, args, per_model, SEED + 1)
    log(f"warm done in {warm['seconds']} s; measuring cold (linger=0)")
    cold = measure_mode(path, 0.0, args, per_model, SEED + 2)
    log(f"cold done in {cold['seconds']} s")

    scale_per_s = None
    if args.scale_registrations:
        log(f"registering {args.scale_registrations} more versions at {total} versions")
        ws = mnb.open(path)
        scale = register_many(ws, args.scale_registrations, rng, counters, start=total)
        ws.close()
        scale_per_s = round(len(scale) / sum(scale), 1)

    met = {
        "lookup_warm": warm["lookups"]["all"]["p95_ms"] <= TARGET_P95_MS,
        "search_warm": warm["searches"]["all"]["p95_ms"] <= TARGET_SEARCH_P95_MS,
        "register_at_scale": scale_per_s is not None and scale_per_s >= TARGET_REGISTER_PER_S,
        "tag_search": tag_search is not None and tag_search["p95_ms"] <= TARGET_SEARCH_P95_MS,
    }
    return {
        "benchmark": "registry",
        "versions": total,
        "models": N_MODELS,
        "register_object": "dict of 8 floats + int, cloudpickle (flavor 'python'), ~200 B, "
        "new blobs each time; 3 metrics, 1-3 tags, a label on every 5th version",
        "register_per_s": round(register_per_s, 1),
        "register_n": len(head),
        "register_note": "first registration (imports, caches) excluded",
        "register_latency_ms": {k: v for k, v in pct(head).items() if k != "n"},
        "register_per_s_at_scale": scale_per_s,
        "register_at_scale_n": args.scale_registrations,
        "lookup_p50_ms": warm["lookups"]["all"]["p50_ms"],
        "lookup_p95_ms": warm["lookups"]["all"]["p95_ms"],
        "search_p50_ms": warm["searches"]["all"]["p50_ms"],
        "search_p95_ms": warm["searches"]["all"]["p95_ms"],
        "cold_lookup_p50_ms": cold["lookups"]["all"]["p50_ms"],
        "cold_lookup_p95_ms": cold["lookups"]["all"]["p95_ms"],
        "cold_search_p50_ms": cold["searches"]["all"]["p50_ms"],
        "cold_search_p95_ms": cold["searches"]["all"]["p95_ms"],
        "tag_search_p50_ms": tag_search["p50_ms"] if tag_search else None,
        "tag_search_p95_ms": tag_search["p95_ms"] if tag_search else None,
        "tag_search": tag_search,
        "targets": {
            "lookup_p95_ms": TARGET_P95_MS,
            "search_p95_ms": TARGET_SEARCH_P95_MS,
            "tag_search_p95_ms": TARGET_SEARCH_P95_MS,
            "register_per_s": TARGET_REGISTER_PER_S,
        },
        "met": met,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "warm": {"settings": "mnb.open(path) defaults (linger 0.2 s, max_hold 1 s)", **warm},
        "cold": {"settings": "mnb.open(path, linger=0): DuckDB opened per operation", **cold},
        "lookup": "ws.model(m).version(ref).stage on a fresh handle; ref a random number, "
        "'@champion' or 'latest' (equal shares, random model)",
        "search": "ws.search(model=m, stage='production', metrics='accuracy >= 0.9', "
        "tags=['tabular']) and the same without model=, alternating",
        "seed": {
            "method": "api" if bulk_rows == 0 else "api+sql_bulk",
            "api_registrations": api_count,
            "api_seconds": round(api_seconds, 2),
            "sql_bulk_rows": bulk_rows,
            "sql_bulk_seconds": round(bulk_seconds, 2),
            "promote_alias_api_seconds": round(promote_seconds, 2),
            "api_estimate_all_s": round(total / register_per_s, 1),
            "note": "every version registered through the API"
            if bulk_rows == 0
            else "bulk rows go into the tables register() writes (versions, "
            "version_metrics, audit), copied from an API-registered version of the same "
            "model; promotions and aliases go through the API",
            "stages": stage_counts,
        },
        "seed_s": round(seed_seconds, 2),
        "db_mb": db_mb,
        "duckdb_open_ms": open_ms,
        "git_commit_ms": git_ms,
        "total_s": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "mlops_nb": getattr(mnb, "__version__", None),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument(
        "--tag-versions",
        type=int,
        default=10_000,
        help="workspace size for the broad tag search (0 to skip)",
    )
    parser.add_argument(
        "--api-versions",
        type=int,
        default=300,
        help="registrations through the API (measured for throughput)",
    )
    parser.add_argument(
        "--api-seed",
        action="store_true",
        help="register every version through the API (no SQL bulk insert)",
    )
    parser.add_argument("--lookups-per-kind", type=int, default=500)
    parser.add_argument(
        "--searches", type=int, default=200, help="searches of each kind (one model, all models)"
    )
    parser.add_argument("--broad-searches", type=int, default=20)
    parser.add_argument("--scale-registrations", type=int, default=200)
    args = parser.parse_args(argv)
    if args.versions < N_MODELS * 10 or args.api_versions < 1:
        parser.error(f"--versions must be at least {N_MODELS * 10}, --api-versions at least 1")

    os.environ.setdefault("MLOPS_NB_USER", "bench")
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-"))
    try:
        result = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
