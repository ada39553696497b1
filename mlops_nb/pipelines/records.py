"""Typed records of a run as stored: attempts, stage states, the run's status.

Each reads as a mapping too (``status["stages"]["train"]["status"]``), where users index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from ..errors import PipelineRunNotFound
from ..store import Store
from . import tables

FINISHED = ("succeeded", "failed", "skipped", "cancelled", "abandoned")
STAGE_DONE = ("succeeded", "cached", "failed", "upstream_failed", "cancelled")


class _Mapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def _keys(self) -> list[str]:
        return [f.name for f in fields(self)]  # type: ignore[arg-type]


@dataclass(frozen=True, eq=True)
class Attempt(_Mapping):
    stage: str
    attempt: int
    verdict: str
    exit_code: int | None
    duration_s: float | None
    log_path: str
    log_bytes: int | None
    truncated: bool | None
    error: str | None
    started_at: datetime | None = None


@dataclass(frozen=True, eq=True)
class StageStatus(_Mapping):
    name: str
    status: str
    attempts: int
    exit_code: int | None
    duration_s: float | None
    outputs: dict[str, Any]
    error: str | None
    dependencies: tuple[str, ...] = ()
    kind: str = ""
    cached_from: str | None = None
    cache_note: str | None = None


@dataclass(frozen=True, eq=True)
class RunStatus(_Mapping):
    """The state of one run, with every stage (in graph order)."""

    run_id: str
    pipeline: str
    status: str
    reason: str | None
    params: dict[str, Any]
    git_commit: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    stages: dict[str, StageStatus]
    run_dir: str

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for k in ("started_at", "finished_at"):
            data[k] = data[k].isoformat() if data[k] else None
        return data


def read_status(store: Store, run_id: str) -> RunStatus:
    tables.ensure(store)

    def read(con: Any) -> tuple[Any, list[Any]]:
        run = con.execute(
            "SELECT id, pipeline, status, reason, params, git_commit, started_at, finished_at, "
            "duration_s, graph, run_dir FROM pipeline_runs WHERE id = ?",
            [run_id],
        ).fetchone()
        rows = con.execute(
            "SELECT stage, status, attempts, exit_code, duration_s, outputs, error, cached_from, "
            "cache_note FROM pipeline_stages WHERE run_id = ?",
            [run_id],
        ).fetchall()
        return run, rows

    run, rows = store.read(read)
    if run is None:
        raise PipelineRunNotFound(f"no pipeline run {run_id!r}; see ws.pipeline_runs()")
    graph = json.loads(run[9])
    by_name = {r[0]: r for r in rows}
    stages: dict[str, StageStatus] = {}
    for node in graph:
        r = by_name.get(node["name"])
        stages[node["name"]] = StageStatus(
            node["name"], r[1] if r else "pending", r[2] if r else 0, r[3] if r else None,
            r[4] if r else None, json.loads(r[5]) if r and r[5] else {}, r[6] if r else None,
            tuple(node["dependencies"]), node["kind"], r[7] if r else None, r[8] if r else None,
        )  # fmt: skip
    return RunStatus(run[0], run[1], run[2], run[3], json.loads(run[4]), run[5], run[6], run[7],
                     run[8], stages, run[10])  # fmt: skip


def read_attempts(store: Store, run_id: str, stage: str | None = None) -> list[Attempt]:
    tables.ensure(store)
    sql = (
        "SELECT stage, attempt, verdict, exit_code, duration_s, log_path, log_bytes, truncated, "
        "error, started_at FROM pipeline_attempts WHERE run_id = ?"
    )
    params: list[Any] = [run_id]
    if stage is not None:
        sql += " AND stage = ?"
        params.append(stage)
    rows = store.read(
        lambda con: con.execute(sql + " ORDER BY started_at, attempt", params).fetchall()
    )
    return [Attempt(*r) for r in rows]


def read_tail(store: Store, run_id: str, stage: str, attempt: int) -> str | None:
    row = store.read(
        lambda con: con.execute(
            "SELECT log_tail FROM pipeline_attempts WHERE run_id = ? AND stage = ? AND attempt = ?",
            [run_id, stage, attempt],
        ).fetchone()
    )
    return row[0] if row else None
