"""Running a pipeline locally: the scheduler of one run, on a background thread.

Stages whose dependencies all succeeded (or were cached) start, up to ``max_parallel`` at
a time; a failed stage marks everything downstream ``upstream_failed`` while independent
branches go on. Each stage runs in its own folder under the run's folder; see
:mod:`mlops_nb.pipelines.attempts` for how one stage is executed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError, PipelineSpecError
from ..events import now
from .attempts import StageRunner
from .recorder import Recorder
from .run import Run

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .pipeline import Pipeline

log = logging.getLogger("mlops_nb.pipelines")

OK = ("succeeded", "cached")
BAD = ("failed", "upstream_failed", "cancelled")


def _run_id(name: str) -> str:
    return f"{name}-{now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def start(
    pipeline: Pipeline, ws: Workspace, params: dict[str, Any], trigger: Any, *, force: bool
) -> Run:
    from ..workspace import Workspace

    if not isinstance(ws, Workspace):
        raise PipelineError(f"workspace must be an mlops_nb Workspace (mnb.open(...)), got {ws!r}")
    params = {**pipeline.params, **params}
    try:
        json.dumps(params)
    except (TypeError, ValueError) as e:
        raise PipelineSpecError(f"params must be JSON values (str, number, list, dict): {e}") from e
    pipeline.check_files()
    skip_reason: str | None = None
    commit = branch = None
    given: dict[str, Any] | None = None
    if trigger is not None and trigger is not False:
        given = {} if trigger is True else dict(trigger)
        result = pipeline.trigger.evaluate(Path(str(pipeline.base_dir)), given)  # type: ignore[union-attr]
        commit, branch = result.commit, result.branch
        if not result.fired:
            skip_reason = f"not triggered: {result.reason}"
    run_id = _run_id(pipeline.name)
    run_dir = ws._sibling("pipelines") / "runs" / run_id
    recorder = Recorder(ws._store, run_id)
    row = {"params": params, "trigger": given, "commit": commit or ws.git_commit(),
           "branch": branch, "forced": force, "graph": pipeline.graph(),
           "run_dir": str(run_dir), "actor": ws.actor()}  # fmt: skip
    status = recorder.create(pipeline.name, pipeline.concurrency, row, skip_reason)
    if status == "skipped":
        return Run(ws, run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    cancel = threading.Event()
    scheduler = _Scheduler(pipeline, ws, recorder, run_dir, params, force, cancel)
    thread = threading.Thread(target=scheduler.main, args=(status == "queued",),
                              name=f"mlops-nb-run-{run_id}")  # fmt: skip
    thread.start()
    return Run(ws, run_id, done=scheduler.done, cancel=cancel)


class _Scheduler:
    def __init__(self, pipeline: Pipeline, ws: Workspace, recorder: Recorder, run_dir: Path,
                 params: dict[str, Any], force: bool, cancel: threading.Event) -> None:  # fmt: skip
        self.p, self.ws, self.rec, self.cancel = pipeline, ws, recorder, cancel
        self.stages = StageRunner(pipeline, ws, recorder, run_dir, params, force, cancel)
        self.state: dict[str, str] = {}
        self.done = threading.Event()

    def main(self, queued: bool) -> None:
        try:
            if queued:
                while not self.rec.try_start(self.p.name):
                    if self.cancel.wait(0.5):
                        self.rec.finish("cancelled", "cancelled while queued")
                        return
            self._schedule()
            bad = [n for n, s in self.state.items() if s not in OK]
            if self.cancel.is_set():
                verdict, reason = "cancelled", "cancelled"
            elif bad:
                verdict, reason = "failed", f"stage(s) not done: {', '.join(bad)}"
            else:
                verdict, reason = "succeeded", None
            self.rec.finish(verdict, reason)
        except Exception as e:
            # Recorded where possible; the thread has no caller to raise to.
            log.exception("pipeline run %s failed in the runner", self.rec.run_id)
            with contextlib.suppress(Exception):
                self.rec.finish("failed", f"runner error: {type(e).__name__}: {e}")
        finally:
            from .alerts import send_all

            with contextlib.suppress(Exception):
                send_all(self.p, self.ws, self.rec.run_id)
            self.done.set()

    def _schedule(self) -> None:
        dag = self.p.dag
        pending = list(dag.order)
        running: dict[Future[str], str] = {}
        with ThreadPoolExecutor(self.p.max_parallel, thread_name_prefix="mlops-nb-stage") as pool:
            while pending or running:
                progressed = True
                while progressed:
                    progressed = False
                    for name in list(pending):
                        deps = dag.stages[name].dependencies
                        if self.cancel.is_set() or any(self.state.get(d) in BAD for d in deps):
                            pending.remove(name)
                            status = "cancelled" if self.cancel.is_set() else "upstream_failed"
                            self.state[name] = status
                            self.rec.stage(name, status, finished_at=now())
                            progressed = True
                        elif (
                            all(self.state.get(d) in OK for d in deps)
                            and len(running) < self.p.max_parallel
                        ):
                            pending.remove(name)
                            self.state[name] = "running"
                            running[pool.submit(self.stages.run, name)] = name
                if not running:
                    if pending:  # pragma: no cover - the DAG was validated
                        raise PipelineError(f"stages cannot start: {pending}")
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    try:
                        self.state[name] = future.result()
                    except Exception as e:
                        self.state[name] = "failed"
                        self.rec.stage(name, "failed", error=f"{type(e).__name__}: {e}",
                                       finished_at=now())  # fmt: skip


def wait_until(predicate: Any, timeout: float | None, interval: float = 0.2) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    while not predicate():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
