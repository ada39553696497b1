"""Writes of a run's progress to the workspace, each committed as it happens.

Another process (``mlops-nb pipeline runs``, a notebook watching the run) reads these
rows while the run goes on. A run's row carries its host and process id, so a run whose
process died is recognised and marked ``abandoned`` by the next run of the pipeline, which
also kills the process groups of that run's attempts that were still running.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import duckdb
import psutil

from ..errors import PipelineBusy
from ..events import now
from ..store import Store
from . import reaper, tables
from .process import ProcessResult
from .records import Attempt

HOST = socket.gethostname()


STARTED = psutil.Process().create_time()


def _alive(host: str, pid: int, started: float | None) -> bool:
    # A run on another machine cannot be checked from here: trust its row. The process's
    # start time tells a reused pid from the runner's own.
    if host != HOST:
        return True
    try:
        return started is None or abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.Error:
        return False


class Recorder:
    def __init__(self, store: Store, run_id: str) -> None:
        self.store = tables.ensure(store)
        self.run_id = run_id

    def create(
        self, pipeline: str, policy: str, row: dict[str, Any], skip_reason: str | None
    ) -> str:
        """Insert the run's row; returns its first status after applying ``policy``."""
        orphans: list[tuple[int, float]] = []

        def write(con: duckdb.DuckDBPyConnection) -> str:
            orphans.clear()
            active = con.execute(
                "SELECT id, host, pid, pid_started FROM pipeline_runs WHERE pipeline = ? AND status IN "
                "('running', 'queued') ORDER BY started_at",
                [pipeline],
            ).fetchall()
            busy = []
            for run_id, host, pid, started in active:
                if _alive(host, pid, started):
                    busy.append(run_id)
                else:
                    con.execute(
                        "UPDATE pipeline_runs SET status = 'abandoned', reason = 'its process "
                        "is gone', finished_at = ? WHERE id = ?",
                        [now(), run_id],
                    )
                    orphans.extend(self._abandon_attempts(con, run_id))
            status, reason = "running", None
            if skip_reason:
                status, reason = "skipped", skip_reason
            elif busy and policy == "refuse":
                raise PipelineBusy(
                    f"pipeline {pipeline!r} is running as {busy[0]}; wait for it "
                    "(run.wait()), or set concurrency to 'wait', 'skip' or 'allow'"
                )
            elif busy and policy in ("skip", "forbid"):
                status, reason = "skipped", f"run {busy[0]} was in progress"
            elif busy and policy == "wait":
                status, reason = "queued", f"waiting for {busy[0]}"
            con.execute(
                "INSERT INTO pipeline_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [self.run_id, pipeline, status, reason, json.dumps(row["params"]),
                 json.dumps(row["trigger"]) if row["trigger"] else None, row["commit"],
                 row["branch"], row["forced"], json.dumps(row["graph"]), row["run_dir"], HOST,
                 os.getpid(), STARTED, row["actor"], now(),
                 now() if status == "skipped" else None, 0.0 if status == "skipped" else None],
            )  # fmt: skip
            con.executemany(
                "INSERT INTO pipeline_stages (run_id, stage, status, attempts) VALUES (?, ?, ?, 0)",
                [[self.run_id, node["name"], "skipped" if status == "skipped" else "pending"]
                 for node in row["graph"]],
            )  # fmt: skip
            return status

        status = self.store.write(write)
        for pgid, started in orphans:
            reaper.reap(pgid, started)
        return status

    @staticmethod
    def _abandon_attempts(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[int, float]]:
        """Mark the run's running attempts abandoned; returns their (pgid, start time)."""
        rows = con.execute(
            "SELECT pid, pid_started FROM pipeline_attempts WHERE run_id = ? AND verdict = "
            "'running' AND pid IS NOT NULL AND pid_started IS NOT NULL",
            [run_id],
        ).fetchall()
        con.execute(
            "UPDATE pipeline_attempts SET verdict = 'abandoned', error = ? WHERE run_id = ? "
            "AND verdict = 'running'",
            ["the run's process is gone; the stage's processes were killed", run_id],
        )
        return [(int(pid), float(started)) for pid, started in rows]

    def try_start(self, pipeline: str) -> bool:
        """A queued run starts once no earlier run of the pipeline is in progress."""

        def write(con: duckdb.DuckDBPyConnection) -> bool:
            rows = con.execute(
                "SELECT id, host, pid, pid_started FROM pipeline_runs WHERE pipeline = ? AND id <> ? AND "
                "(status = 'running' OR (status = 'queued' AND started_at < "
                "(SELECT started_at FROM pipeline_runs WHERE id = ?)))",
                [pipeline, self.run_id, self.run_id],
            ).fetchall()
            if any(_alive(h, p, s) for _, h, p, s in rows):
                return False
            con.execute("UPDATE pipeline_runs SET status = 'running', reason = NULL WHERE id = ?",
                        [self.run_id])  # fmt: skip
            return True

        return self.store.write(write)

    def _set(self, con: duckdb.DuckDBPyConnection, stage: str, cols: dict[str, Any]) -> None:
        if "outputs" in cols:
            cols = {**cols, "outputs": json.dumps(cols["outputs"])}
        names = list(cols)
        sets = ", ".join(f"{n} = ?" for n in names)
        con.execute(f"UPDATE pipeline_stages SET {sets} WHERE run_id = ? AND stage = ?",
                    [*(cols[n] for n in names), self.run_id, stage])  # fmt: skip

    def stage(self, stage: str, status: str, **values: Any) -> None:
        self.store.write(lambda con: self._set(con, stage, {"status": status, **values}))

    def attempt_started(
        self, stage: str, attempt: int, log_path: str, cache_key: str | None,
        cache_note: str | None = None,
    ) -> None:  # fmt: skip
        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "INSERT INTO pipeline_attempts (run_id, stage, attempt, verdict, started_at, "
                "log_path) VALUES (?, ?, ?, 'running', ?, ?)",
                [self.run_id, stage, attempt, now(), log_path],
            )
            con.execute("UPDATE pipeline_stages SET attempts = ?, status = 'running', cache_key = ?, "
                        "cache_note = ?, started_at = coalesce(started_at, ?) "
                        "WHERE run_id = ? AND stage = ?",
                        [attempt, cache_key, cache_note, now(), self.run_id, stage])  # fmt: skip

        self.store.write(write)

    def attempt_process(self, stage: str, attempt: int, pid: int, started: float | None) -> None:
        """The attempt's process (also its process group) and when it started."""
        self.store.write(
            lambda con: con.execute(
                "UPDATE pipeline_attempts SET pid = ?, pid_started = ? "
                "WHERE run_id = ? AND stage = ? AND attempt = ?",
                [pid, started, self.run_id, stage, attempt],
            )
        )

    def attempt_finished(self, attempt: Attempt, result: ProcessResult | None,
                         final: dict[str, Any] | None) -> None:  # fmt: skip
        """The attempt's outcome and, when it is the stage's last, the stage's, together."""
        a, r = attempt, result

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "UPDATE pipeline_attempts SET verdict = ?, exit_code = ?, finished_at = ?, "
                "duration_s = ?, log_tail = ?, log_bytes = ?, truncated = ?, error = ? "
                "WHERE run_id = ? AND stage = ? AND attempt = ?",
                [a.verdict, a.exit_code, now(), a.duration_s, r.tail if r else None, a.log_bytes,
                 a.truncated, a.error, self.run_id, a.stage, a.attempt],
            )  # fmt: skip
            if final is not None:
                self._set(con, a.stage, final)

        self.store.write(write)

    def finish(self, status: str, reason: str | None) -> None:
        self.store.write(
            lambda con: con.execute(
                "UPDATE pipeline_runs SET status = ?, reason = ?, finished_at = ?, duration_s = "
                "epoch(? - started_at) WHERE id = ?",
                [status, reason, now(), now(), self.run_id],
            )
        )

    def notification(self, event: str, notifier: str, error: str | None) -> None:
        self.store.write(
            lambda con: con.execute(
                "INSERT INTO pipeline_notifications (run_id, event, notifier, ok, error, sent_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [self.run_id, event, notifier, error is None, error, now()],
            )
        )
