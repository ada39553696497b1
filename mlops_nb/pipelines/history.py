"""Past and running pipeline runs of a workspace, as a DataFrame and as handles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import InvalidArgument
from . import records, tables
from .run import Run

if TYPE_CHECKING:
    from ..workspace import Workspace


def runs(ws: Workspace, pipeline: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """One row per run, newest first: verdict, stage counts, timing, trigger and commit."""
    store = tables.ensure(ws._store)
    where, params = "", []
    if pipeline is not None:
        where, params = "WHERE r.pipeline = ?", [pipeline]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"limit must be a non-negative integer, got {limit!r}")
    sql = f"""
        SELECT r.id AS run_id, r.pipeline, r.status,
               count(s.stage)::INTEGER AS stages,
               count(s.stage) FILTER (WHERE s.status IN ('succeeded', 'cached'))::INTEGER AS done,
               count(s.stage) FILTER (WHERE s.status = 'cached')::INTEGER AS cached,
               count(s.stage) FILTER (WHERE s.status IN ('failed', 'upstream_failed'))::INTEGER
                   AS failed,
               r.started_at, r.duration_s, r.git_commit, r.reason, r.created_by
        FROM pipeline_runs r LEFT JOIN pipeline_stages s ON s.run_id = r.id
        {where}
        GROUP BY ALL ORDER BY r.started_at DESC, r.id DESC
        {"" if limit is None else f"LIMIT {limit}"}
    """
    return store.query_df(sql, params)


def run(ws: Workspace, run_id: str) -> Run:
    records.read_status(ws._store, run_id)  # raises PipelineRunNotFound
    return Run(ws, run_id)


def notifications(ws: Workspace, run_id: str | None = None) -> pd.DataFrame:
    store = tables.ensure(ws._store)
    params: list[Any] = []
    sql = "SELECT id, run_id, event, notifier, ok, error, sent_at FROM pipeline_notifications"
    if run_id is not None:
        sql += " WHERE run_id = ?"
        params.append(run_id)
    return store.query_df(sql + " ORDER BY id", params)
