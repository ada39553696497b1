"""Runs with real subprocesses: order, parallelism, retries, timeouts, isolation, outputs."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from pathlib import Path

import psutil
import pytest

import mlops_nb as mnb
from mlops_nb.pipelines import process
from mlops_nb.pipelines.records import read_tail

from .conftest import gone, write

PY = sys.executable


def run(p: mnb.Pipeline, ws: mnb.Workspace, **kwargs: object) -> mnb.pipelines.Run:
    return p.run(workspace=ws, **kwargs).wait(timeout=240)  # type: ignore[arg-type]


def test_dag_order_follows_dependencies(ws: mnb.Workspace, project: Path) -> None:
    log = project / "order.txt"
    stage = lambda name, deps=(): mnb.Stage(name, script=f"echo {name} >> {log}", dependencies=deps)  # noqa: E731
    p = mnb.Pipeline(name="order", max_parallel=1, base_dir=project, stages=[
        stage("report", ["evaluate"]), stage("evaluate", ["train"]), stage("train", ["validate"]),
        stage("validate"),
    ])  # fmt: skip
    r = run(p, ws)
    assert r.status().status == "succeeded"
    assert log.read_text().split() == ["validate", "train", "evaluate", "report"]


def test_independent_stages_run_in_parallel_and_the_bound_holds(
    ws: mnb.Workspace, project: Path
) -> None:
    # Each of a and b waits until the other has started: both succeed only if they overlap.
    barrier = write(
        project,
        "barrier.py",
        f"""\
import os, sys, time
me, other = sys.argv[1], sys.argv[2]
open(os.path.join({str(project)!r}, me), "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(os.path.join({str(project)!r}, other)):
    if time.monotonic() > deadline:
        sys.exit(9)
    time.sleep(0.02)
""",
    )
    p = mnb.Pipeline(name="par", max_parallel=2, base_dir=project, stages=[
        mnb.Stage("a", script="barrier.py a b"), mnb.Stage("b", script="barrier.py b a"),
    ])  # fmt: skip
    assert barrier.exists()
    assert run(p, ws).status().status == "succeeded"
    # With room for one stage at a time, never more than one runs: count the running ones.
    counter = write(
        project,
        "count.py",
        f"""\
import os, sys, time
d = os.path.join({str(project)!r}, "running"); os.makedirs(d, exist_ok=True)
mine = os.path.join(d, sys.argv[1]); open(mine, "w").close()
with open(os.path.join({str(project)!r}, "seen.txt"), "a") as f:
    f.write(str(len(os.listdir(d))) + "\\n")
time.sleep(0.3)
os.remove(mine)
""",
    )
    assert counter.exists()
    serial = mnb.Pipeline(name="serial", max_parallel=1, base_dir=project,
                          stages=[mnb.Stage(n, script=f"count.py {n}") for n in "abc"])  # fmt: skip
    assert run(serial, ws).status().status == "succeeded"
    assert (project / "seen.txt").read_text().split() == ["1", "1", "1"]


def test_retries_with_exponential_backoff(ws: mnb.Workspace, project: Path) -> None:
    write(
        project,
        "flaky.py",
        f"""\
import os, sys
path = os.path.join({str(project)!r}, "tries")
n = int(open(path).read()) + 1 if os.path.exists(path) else 1
open(path, "w").write(str(n))
print("try", n)
sys.exit(0 if n == 3 else 1)
""",
    )
    p = mnb.Pipeline(name="retry", base_dir=project, stages=[
        mnb.Stage("flaky", script="flaky.py", retry_count=3, retry_backoff=0.4, retry_backoff_max=10),
    ])  # fmt: skip
    r = run(p, ws)
    tries = r.attempts("flaky")
    assert [(a.attempt, a.verdict, a.exit_code) for a in tries] == [
        (1, "failed", 1), (2, "failed", 1), (3, "succeeded", 0)]  # fmt: skip
    starts = [a.started_at for a in tries]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.4 and gaps[1] >= 0.8  # waited at least the backoff, doubled
    assert r.logs("flaky").strip() == "try 3" and r.logs("flaky", attempt=1).strip() == "try 1"
    assert r.status().stages["flaky"].attempts == 3


def test_retry_condition_limits_what_is_retried(ws: mnb.Workspace, project: Path) -> None:
    p = mnb.Pipeline(name="cond", base_dir=project, stages=[
        mnb.Stage("permanent", script="exit 3", retry_count=2, retry_backoff=0, retry_on=[75]),
        mnb.Stage("transient", script="exit 75", retry_count=2, retry_backoff=0, retry_on=[75]),
    ])  # fmt: skip
    r = run(p, ws)
    assert len(r.attempts("permanent")) == 1
    assert [a.exit_code for a in r.attempts("transient")] == [75, 75, 75]


def test_a_timeout_is_retried_when_retry_on_names_it(ws: mnb.Workspace, project: Path) -> None:
    # The first attempt hangs past its timeout; the second finds the marker and finishes.
    marker = project / "tried"
    hang_once = f"if [ -e {marker} ]; then echo second; else touch {marker}; exec sleep 1000; fi"
    p = mnb.Pipeline(name="slow", base_dir=project, stages=[
        mnb.Stage("slow", script=hang_once, timeout_minutes=0.02, retry_count=1,
                  retry_backoff=0, retry_on=["timeout"], cache=False),
        mnb.Stage("broken", script="exit 1", retry_count=2, retry_backoff=0,
                  retry_on=["timeout"]),
    ])  # fmt: skip
    r = run(p, ws)
    assert [a.verdict for a in r.attempts("slow")] == ["timeout", "succeeded"]
    assert r.status().stages["slow"].status == "succeeded" and r.logs("slow").strip() == "second"
    # An ordinary failure is not a timeout: not retried.
    assert [a.verdict for a in r.attempts("broken")] == ["failed"]


def test_a_callable_retry_on_decides_from_the_attempt(ws: mnb.Workspace, project: Path) -> None:
    seen: list[tuple[str, int | None]] = []

    def transient(attempt: object) -> bool:
        seen.append((attempt.stage, attempt.exit_code))  # type: ignore[attr-defined]
        return attempt.exit_code == 75  # type: ignore[attr-defined]

    count = project / "count"
    flaky = f"echo x >> {count}; [ $(wc -l < {count}) -ge 3 ] || exit 75"
    p = mnb.Pipeline(name="decide", base_dir=project, stages=[
        mnb.Stage("flaky", script=flaky, retry_count=5, retry_backoff=0, retry_on=transient),
        mnb.Stage("fatal", script="exit 3", retry_count=5, retry_backoff=0, retry_on=transient),
    ])  # fmt: skip
    r = run(p, ws)
    assert [a.exit_code for a in r.attempts("flaky")] == [75, 75, 0]
    assert r.status().stages["flaky"].status == "succeeded"
    assert [a.exit_code for a in r.attempts("fatal")] == [3]
    assert sorted(seen) == [("fatal", 3), ("flaky", 75), ("flaky", 75)]


def test_a_stage_environment_mapping_reaches_its_process(ws: mnb.Workspace, project: Path) -> None:
    write(project, "pipeline.yaml", """\
name: envs
environment_variables: {REGION: eu, MODEL_NAME: iris}
stages:
  - name: show
    script: 'echo "$REGION $MODEL_NAME $THRESHOLD"'
    environment: {MODEL_NAME: iris-v2, THRESHOLD: 0.9}
""")  # fmt: skip
    r = run(mnb.Pipeline.from_yaml(project / "pipeline.yaml"), ws)
    # The stage's mapping adds to the pipeline's variables and wins where both name one.
    assert r.logs("show").strip() == "eu iris-v2 0.9"


def test_an_image_environment_runs_locally_and_says_so(
    ws: mnb.Workspace, project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = mnb.Pipeline(name="img", base_dir=project,
                     stages=[mnb.Stage("train", script="echo trained", environment="python:3.11")])  # fmt: skip
    with caplog.at_level("WARNING", logger="mlops_nb.pipelines"):
        r = run(p, ws)
    assert r.logs("train").strip() == "trained"
    assert "environment 'python:3.11' is an image, used by to_argo()" in caplog.text


def test_timeout_kills_the_whole_process_group(ws: mnb.Workspace, project: Path) -> None:
    pids = project / "pids"
    write(
        project,
        "hang.sh",
        f"""\
sleep 1000 &
echo $! >> {pids}
( sleep 1000 & echo $! >> {pids}; wait ) &
python3 -c "import os, time; open('{pids}', 'a').write(str(os.getpid()) + chr(10)); time.sleep(1000)" &
sleep 1000
""",
    )
    p = mnb.Pipeline(name="hang", base_dir=project, stages=[
        mnb.Stage("hang", script="hang.sh", timeout_minutes=0.04),
        mnb.Stage("after", script="true", dependencies=["hang"]),
    ])  # fmt: skip
    r = run(p, ws)
    status = r.status()
    assert status.status == "failed"
    assert (
        status.stages["hang"].status == "failed"
        and status.stages["after"].status == "upstream_failed"
    )
    (attempt,) = r.attempts("hang")
    assert attempt.verdict == "timeout" and "timed out after 0.04 min" in str(attempt.error)
    found = [int(x) for x in pids.read_text().split()]
    assert len(found) == 3
    assert all(gone(pid) for pid in found)


def test_children_left_running_are_killed_when_the_stage_exits(
    ws: mnb.Workspace, project: Path
) -> None:
    pid_file = project / "pid"
    p = mnb.Pipeline(name="orphans", base_dir=project,
                     stages=[mnb.Stage("fork", script=f"sleep 1000 & echo $! > {pid_file}; echo done")])  # fmt: skip
    r = run(p, ws)
    assert r.status().status == "succeeded"
    assert gone(int(pid_file.read_text()))
    assert "left running" in str(r.attempts("fork")[0].error)


@pytest.mark.parametrize("linger", ["", "sleep 0.5;"], ids=["exits-at-once", "lingers"])
def test_children_that_escape_with_setsid_are_killed_when_the_stage_exits(
    ws: mnb.Workspace, project: Path, linger: str
) -> None:
    # Once the stage has exited, the escaped sleep is nobody's child here: the fixture that
    # checks for leftovers cannot see it, so the test looks for it by pid.
    pid_file = project / "pid"
    p = mnb.Pipeline(name="escape", base_dir=project, stages=[
        mnb.Stage("fork", script=f"setsid sleep 1000 & echo $! > {pid_file}; {linger} exit 0"),
    ])  # fmt: skip
    r = run(p, ws)
    pid = int(pid_file.read_text())
    try:
        assert r.status().status == "succeeded"
        assert gone(pid), "the setsid child outlived its stage"
        assert "left running" in str(r.attempts("fork")[0].error)
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


@pytest.mark.parametrize("ends", ["exits", "times out"])
def test_a_detached_service_outlives_its_stage(ws: mnb.Workspace, project: Path, ends: str) -> None:
    """What a stage starts with MLOPS_NB_DETACHED=1 (a deployment's router) stays up, also
    when the stage is killed for running past its timeout."""
    pid_file = project / "pid"
    # Started the way a deployment starts its router: a session of its own, the marker set.
    hang = "import time; time.sleep(1000)" if ends == "times out" else ""
    write(project, "serve.py", f"""\
import os, subprocess
env = {{**os.environ, "MLOPS_NB_DETACHED": "1"}}
proc = subprocess.Popen(["sleep", "1000"], start_new_session=True, env=env)
open({str(pid_file)!r}, "w").write(str(proc.pid))
{hang}
""")  # fmt: skip
    timeout = 0.05 if ends == "times out" else None
    p = mnb.Pipeline(name="service", base_dir=project,
                     stages=[mnb.Stage("serve", script="serve.py", timeout_minutes=timeout)])  # fmt: skip
    r = run(p, ws)
    service = psutil.Process(int(pid_file.read_text()))
    try:
        assert service.is_running() and service.status() != psutil.STATUS_ZOMBIE
        if ends == "exits":
            assert r.status().status == "succeeded" and r.attempts("serve")[0].error is None
        else:
            assert r.status().status == "failed" and r.attempts("serve")[0].verdict == "timeout"
    finally:
        service.kill()
        service.wait(30)


def test_failure_stops_dependents_not_independent_branches(
    ws: mnb.Workspace, project: Path
) -> None:
    p = mnb.Pipeline(name="iso", base_dir=project, stages=[
        mnb.Stage("prep", script="true"),
        mnb.Stage("bad", script="echo broken >&2; exit 4", dependencies=["prep"]),
        mnb.Stage("after_bad", script="true", dependencies=["bad"]),
        mnb.Stage("deep", script="true", dependencies=["after_bad"]),
        mnb.Stage("good", script="true", dependencies=["prep"]),
        mnb.Stage("after_good", script="true", dependencies=["good"]),
    ])  # fmt: skip
    r = run(p, ws)
    got = {n: s.status for n, s in r.status().stages.items()}
    assert got == {"prep": "succeeded", "bad": "failed", "after_bad": "upstream_failed",
                   "deep": "upstream_failed", "good": "succeeded", "after_good": "succeeded"}  # fmt: skip
    assert r.status().stages["bad"].exit_code == 4 and r.logs("bad").strip() == "broken"
    assert r.status().reason == "stage(s) not done: bad, after_bad, deep"


def test_outputs_files_and_values_reach_dependents(ws: mnb.Workspace, project: Path) -> None:
    write(
        project,
        "produce.py",
        """\
from mlops_nb.pipelines import context, output
ctx = context()
(ctx.output_dir / "model.txt").write_text("weights for " + ctx.params["data"])
output("accuracy", 0.93)
""",
    )
    write(
        project,
        "consume.py",
        """\
import json
from mlops_nb.pipelines import context
ctx = context()
up = ctx.inputs["produce"]
print(json.dumps({"file": (up.dir / "model.txt").read_text(), "acc": up.values["accuracy"]}))
""",
    )

    def check(ctx: mnb.pipelines.StageContext) -> dict[str, object]:
        return {"doubled": ctx.inputs["produce"].values["accuracy"] * 2, "run": ctx.run_id}

    p = mnb.Pipeline(name="io", base_dir=project, stages=[
        mnb.Stage("produce", script="produce.py"),
        mnb.Stage("consume", script="consume.py", dependencies=["produce"]),
        mnb.Stage("check", fn=check, dependencies=["produce"]),
    ])  # fmt: skip
    r = run(p, ws, params={"data": "2026-11"})
    assert json.loads(r.logs("consume")) == {"file": "weights for 2026-11", "acc": 0.93}
    stages = r.status().stages
    assert stages["produce"].outputs == {"accuracy": 0.93}
    assert stages["check"].outputs == {"doubled": 1.86, "run": r.id}
    assert stages["check"].kind == "callable"


def test_a_stage_that_floods_its_output_does_not_block(tmp_path: Path) -> None:
    import threading

    log = tmp_path / "flood.log"
    script = "import sys\nfor _ in range(320): sys.stdout.write('x' * 65535 + '\\n')\nprint('END')"
    result = process.run([PY, "-c", script], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, log=log,
                         timeout=240, cancel=threading.Event(), max_log_bytes=1 << 20,
                         tail_bytes=4096)  # fmt: skip
    assert result.exit_code == 0 and not result.timed_out
    assert result.log_bytes == 320 * 65536 + 4 and result.truncated
    assert (
        log.stat().st_size < (1 << 20) + 200 and "log truncated at 1048576 bytes" in log.read_text()
    )
    assert len(result.tail) == 4096 and result.tail.endswith("END\n")


def test_flooding_stage_keeps_its_log_and_the_tail_in_the_store(
    ws: mnb.Workspace, project: Path
) -> None:
    script = "import sys\nfor i in range(200000): print('line', i)\n"
    write(project, "flood.py", script)
    r = run(
        mnb.Pipeline(
            name="flood", base_dir=project, stages=[mnb.Stage("flood", script="flood.py")]
        ),
        ws,
    )
    (a,) = r.attempts("flood")
    assert a.verdict == "succeeded" and a.log_bytes == Path(a.log_path).stat().st_size
    assert r.logs("flood").splitlines()[-1] == "line 199999"
    tail = read_tail(ws._store, r.id, "flood", 1)
    assert tail is not None and len(tail) <= 16 * 1024 and tail.endswith("line 199999\n")


def test_cancel_kills_running_stages(ws: mnb.Workspace, project: Path) -> None:
    pid_file = project / "pid"
    p = mnb.Pipeline(name="cancel", base_dir=project, stages=[
        mnb.Stage("long", script=f"echo $$ > {pid_file}; sleep 1000"),
        mnb.Stage("next", script="true", dependencies=["long"]),
    ])  # fmt: skip
    r = p.run(workspace=ws)
    from .conftest import wait_for

    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    r.cancel().wait(timeout=120)
    got = {n: s.status for n, s in r.status().stages.items()}
    assert r.status().status == "cancelled" and got == {"long": "cancelled", "next": "cancelled"}
    assert gone(int(pid_file.read_text()))


def test_bad_arguments_to_run(ws: mnb.Workspace, project: Path) -> None:
    p = mnb.Pipeline(name="x", base_dir=project, stages=[mnb.Stage("a", script="true")])
    with pytest.raises(mnb.PipelineError, match="must be an mlops_nb Workspace"):
        p.run(workspace="ws.duckdb")  # type: ignore[arg-type]
    with pytest.raises(mnb.PipelineSpecError, match="params must be JSON values"):
        p.run(workspace=ws, params={"when": object()})
    with pytest.raises(mnb.PipelineRunNotFound):
        ws.pipeline_run("nope")
    assert ws.pipeline_runs().empty
