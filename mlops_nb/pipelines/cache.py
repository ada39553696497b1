"""Stage caching: a key from the code, the params and the input files' digests.

A stage whose key matches an earlier successful run is not run again: its outputs (files
and values) are copied from the cache into the new run. The key covers the stage's kind,
command and code (the script or notebook file's bytes, a callable's source), the run's
params, the environment it gets, the digests of the files its ``inputs`` globs match, and
the outputs its dependencies produced in this run (so an upstream change reruns it).

Files a stage reads without declaring them are not in the key. So only a stage that
declares ``inputs`` is cached by default; ``cache=True`` caches a stage without them, on
the promise that its code, params, environment and upstream outputs are all it reads
(see :attr:`~mlops_nb.pipelines.stage.Stage.caches`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cloudpickle
import duckdb

from ..events import now
from ..store import Store
from .stage import Stage


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_digest(folder: Path) -> str:
    """Digest of every file's relative path and bytes under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + file_digest(p).encode())
    return h.hexdigest()


def code_digest(stage: Stage, base: Path) -> str:
    if stage.fn is not None:
        try:
            source = inspect.getsource(stage.fn).encode()
        except (OSError, TypeError):
            source = cloudpickle.dumps(stage.fn)
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256(str(stage.script or stage.notebook).encode())
    if stage.file and (base / stage.file).is_file():
        digest.update(file_digest(base / stage.file).encode())
    return digest.hexdigest()


def input_digests(stage: Stage, base: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for pattern in stage.inputs:
        matches = sorted(p for p in base.glob(pattern) if p.is_file())
        if not matches:
            found[pattern] = "missing"
        for p in matches:
            found[str(p.relative_to(base))] = file_digest(p)
    return found


def key(
    stage: Stage, base: Path, params: Mapping[str, Any], env: Mapping[str, str],
    upstream: Mapping[str, str],
) -> str:  # fmt: skip
    """The cache key of ``stage`` for this run; ``upstream`` maps dependencies to the
    digests of the outputs they produced."""
    material = {
        "kind": stage.kind,
        "code": code_digest(stage, base),
        "parameters": dict(stage.parameters),
        "params": dict(params),
        "env": dict(env),
        "inputs": input_digests(stage, base),
        "upstream": dict(upstream),
    }
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Cache:
    """Cached stage outputs: folders under ``root``, indexed in the workspace."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store, self.root = store, root

    def lookup(self, pipeline: str, stage: str, cache_key: str) -> tuple[str, Path] | None:
        """The run that produced this key and the cached folder, if still present."""
        row = self.store.read(
            lambda con: con.execute(
                "SELECT run_id, output_dir FROM pipeline_cache WHERE pipeline = ? AND stage = ? "
                "AND key = ?",
                [pipeline, stage, cache_key],
            ).fetchone()
        )
        if row is None or not Path(row[1]).is_dir():
            return None
        return str(row[0]), Path(row[1])

    def save(self, pipeline: str, stage: str, cache_key: str, run_id: str, outputs: Path) -> None:
        target = self.root / pipeline / stage / cache_key
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(outputs, target)

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "INSERT OR REPLACE INTO pipeline_cache VALUES (?, ?, ?, ?, ?, ?)",
                [pipeline, stage, cache_key, run_id, str(target), now()],
            )

        self.store.write(write)
