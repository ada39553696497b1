"""One stage of a run: the cache check, then attempts with timeout, retry and backoff.

The stage's working folder ``<run>/<stage>/`` is its current directory and its output:
files written there and the values in ``outputs.json`` are what dependents receive (and
what the cache keeps). Attempt ``n`` logs to ``<run>/.logs/<stage>.<n>.log``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from ..events import now
from . import cache, process, reaper
from .context import ENV, StageContext, StageOutputs, read_values
from .recorder import Recorder
from .records import Attempt

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .pipeline import Pipeline
    from .stage import Stage

log = logging.getLogger("mlops_nb.pipelines")


class StageRunner:
    def __init__(self, pipeline: Pipeline, ws: Workspace, recorder: Recorder, run_dir: Path,
                 params: dict[str, Any], force: bool, cancel: threading.Event) -> None:  # fmt: skip
        self.p, self.ws, self.rec, self.run_dir = pipeline, ws, recorder, run_dir
        self.params, self.force, self.cancel = params, force, cancel
        self.base = Path(str(pipeline.base_dir))
        self.cache = cache.Cache(ws._store, ws._sibling("pipelines") / "cache")
        (run_dir / ".ctx").mkdir(parents=True, exist_ok=True)
        (run_dir / ".logs").mkdir(parents=True, exist_ok=True)

    def folder(self, name: str) -> Path:
        return self.run_dir / name

    def run(self, name: str) -> str:
        stage = self.p.dag.stages[name]
        work = self.folder(name)
        work.mkdir(parents=True, exist_ok=True)
        env = {**self.p.environment_variables, **stage.env}
        if stage.image is not None:
            # An image is for the cluster (to_argo() runs the stage in it); here the stage
            # runs with this machine's interpreter and tools.
            log.warning("stage %r: environment %r is an image, used by to_argo(); this local "
                        "run uses this machine's environment", name, stage.image)  # fmt: skip
        key = None
        if stage.caches:
            upstream = {d: cache.folder_digest(self.folder(d)) for d in stage.dependencies}
            key = cache.key(stage, self.base, self.params, env, upstream)
            hit = None if self.force else self.cache.lookup(self.p.name, name, key)
            if hit is not None:
                shutil.rmtree(work)
                shutil.copytree(hit[1], work)
                self.rec.stage(name, "cached", cache_key=key, outputs=read_values(work),
                               cached_from=hit[0], started_at=now(),
                               finished_at=now(), duration_s=0.0)  # fmt: skip
                return "cached"
        attempt = 0
        while True:
            attempt += 1
            record, result = self._attempt(stage, attempt, env, key)
            if record.verdict == "succeeded":
                if key is not None:
                    self.cache.save(self.p.name, name, key, self.rec.run_id, work)
                status = "succeeded"
            elif (record.verdict != "cancelled" and attempt <= stage.retry_count
                  and stage.should_retry(record)):  # fmt: skip
                self.rec.attempt_finished(record, result, None)
                if not self.cancel.wait(stage.backoff(attempt)):
                    continue
                self.rec.stage(name, **self._final("cancelled", record))
                return "cancelled"
            else:
                status = "cancelled" if record.verdict == "cancelled" else "failed"
            self.rec.attempt_finished(record, result, self._final(status, record))
            return status

    def _final(self, status: str, record: Attempt) -> dict[str, Any]:
        return {"status": status, "exit_code": record.exit_code, "error": record.error,
                "outputs": read_values(self.folder(record.stage)), "finished_at": now(),
                "duration_s": record.duration_s}  # fmt: skip

    def _attempt(self, stage: Stage, n: int, env: dict[str, str],
                 key: str | None) -> tuple[Attempt, process.ProcessResult | None]:  # fmt: skip
        log = self.run_dir / ".logs" / f"{stage.name}.{n}.log"
        log.write_bytes(b"")
        self.rec.attempt_started(stage.name, n, str(log), key, stage.cache_note)
        try:
            argv = self._argv(stage, n)

            def started(pid: int) -> None:
                self.rec.attempt_process(stage.name, n, pid, reaper.start_time(pid))

            result = process.run(argv, cwd=self.folder(stage.name), env=self._env(stage, n, env),
                                 log=log, timeout=stage.timeout_seconds, cancel=self.cancel,
                                 on_start=started)  # fmt: skip
        except Exception as e:
            why = f"could not start: {type(e).__name__}: {e}"
            with open(log, "a") as f:
                f.write(traceback.format_exc())
            return Attempt(stage.name, n, "failed", None, None, str(log), None, None, why), None
        error: str | None
        if result.timed_out:
            verdict, error = (
                "timeout",
                f"timed out after {stage.timeout_minutes:g} min; process group killed",
            )
        elif result.cancelled:
            verdict, error = "cancelled", "cancelled; process group killed"
        elif result.exit_code == 0:
            verdict, error = "succeeded", None
        else:
            verdict, error = "failed", f"exit code {result.exit_code}"
        if result.leftovers:
            note = "killed processes it left running"
            error = f"{error}; {note}" if error else note
        attempt = Attempt(stage.name, n, verdict, result.exit_code, result.duration, str(log),
                          result.log_bytes, result.truncated, error)  # fmt: skip
        return attempt, result

    def _argv(self, stage: Stage, n: int) -> list[str]:
        ctx_dir = self.run_dir / ".ctx"
        if stage.kind == "callable":
            pickled = ctx_dir / f"{stage.name}.pkl"
            pickled.write_bytes(cloudpickle.dumps(stage.fn))
            return [sys.executable, "-m", "mlops_nb.pipelines.child", "callable", str(pickled)]
        file = str(self.base / stage.file) if stage.file else None
        if stage.kind == "notebook":
            assert file is not None
            values = {**self.params, **dict(stage.parameters)}
            params_file = ctx_dir / f"{stage.name}.params.json"
            params_file.write_text(json.dumps(values))
            executed = self.folder(stage.name) / Path(file).name
            return [sys.executable, "-m", "mlops_nb.pipelines.child", "notebook", file,
                    str(executed), str(params_file)]  # fmt: skip
        assert stage.script is not None
        if file is None:
            return ["/bin/sh", "-c", stage.script]
        rest = shlex.split(stage.script)[1:]
        return [sys.executable if stage.kind == "python" else "bash", file, *rest]

    def _env(self, stage: Stage, n: int, extra: dict[str, str]) -> dict[str, str]:
        inputs = {
            d: StageOutputs(self.folder(d), read_values(self.folder(d))) for d in stage.dependencies
        }
        path = self.ws._store.path
        ctx = StageContext(self.rec.run_id, self.p.name, stage.name, n, self.params, inputs,
                           self.folder(stage.name), None if self.ws._store.memory else path)  # fmt: skip
        ctx_file = self.run_dir / ".ctx" / f"{stage.name}.json"
        ctx_file.write_text(json.dumps(ctx.to_json()))
        env = {**os.environ, **extra}
        env.update({ENV: str(ctx_file), "MLOPS_NB_PIPELINE_RUN": self.rec.run_id,
                    "MLOPS_NB_OUTPUT_DIR": str(self.folder(stage.name)),
                    "MLOPS_NB_PIPELINE_DIR": str(self.base), "MLOPS_NB_PARAMS": json.dumps(self.params),
                    "PYTHONUNBUFFERED": "1"})  # fmt: skip
        for k, v in self.params.items():
            env[f"MLOPS_NB_PARAM_{k.upper()}"] = v if isinstance(v, str) else json.dumps(v)
        if not self.ws._store.memory:
            env["MLOPS_NB_WORKSPACE"] = path
            env["MLOPS_NB_ARTIFACTS"] = self.ws.artifacts.uri
        return env
