"""Caching by params, inputs and code; the concurrency policy; trigger filters on git."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mlops_nb as mnb

from .conftest import wait_for, write


def statuses(run: mnb.pipelines.Run) -> dict[str, str]:
    return {n: s.status for n, s in run.status().stages.items()}


@pytest.fixture
def cached(project: Path) -> mnb.Pipeline:
    write(project, "data/train.csv", "a,b\n1,2\n")
    write(
        project,
        "prep.py",
        """\
import os
from mlops_nb.pipelines import context, output
ctx = context()
with open(os.path.join(os.environ["MLOPS_NB_PIPELINE_DIR"], "runs.log"), "a") as f:
    f.write("prep\\n")
(ctx.output_dir / "features.csv").write_text(open(os.path.join(os.environ["MLOPS_NB_PIPELINE_DIR"], "data/train.csv")).read())
output("rows", 1)
""",
    )
    write(
        project,
        "train.py",
        """\
import os
from mlops_nb.pipelines import context, output
ctx = context()
with open(os.path.join(os.environ["MLOPS_NB_PIPELINE_DIR"], "runs.log"), "a") as f:
    f.write("train\\n")
output("features", (ctx.inputs["prep"].dir / "features.csv").read_text())
""",
    )
    return mnb.Pipeline(name="cached", base_dir=project, stages=[
        mnb.Stage("prep", script="prep.py", inputs=["data/*.csv"]),
        # No inputs of its own: cached by its code, params and prep's outputs, as asked.
        mnb.Stage("train", script="train.py", dependencies=["prep"], cache=True),
    ])  # fmt: skip


def _ran(project: Path) -> list[str]:
    log = project / "runs.log"
    out = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return out


def test_cache_hits_and_misses(ws: mnb.Workspace, project: Path, cached: mnb.Pipeline) -> None:
    first = cached.run(workspace=ws, params={"data": "2026-11"}).wait(240)
    assert statuses(first) == {"prep": "succeeded", "train": "succeeded"} and _ran(project) == [
        "prep",
        "train",
    ]

    hit = cached.run(workspace=ws, params={"data": "2026-11"}).wait(240)
    assert statuses(hit) == {"prep": "cached", "train": "cached"} and _ran(project) == []
    assert hit.status().stages["prep"].cached_from == first.id
    # Earlier outputs come with the hit: values and files.
    assert hit.status().stages["train"].outputs == {"features": "a,b\n1,2\n"}
    assert (Path(hit.status().run_dir) / "prep" / "features.csv").read_text() == "a,b\n1,2\n"

    other_params = cached.run(workspace=ws, params={"data": "2026-12"}).wait(240)
    assert statuses(other_params) == {"prep": "succeeded", "train": "succeeded"}
    assert _ran(project) == ["prep", "train"]

    write(project, "data/train.csv", "a,b\n1,2\n3,4\n")  # an input file changed
    changed = cached.run(workspace=ws, params={"data": "2026-11"}).wait(240)
    assert statuses(changed) == {"prep": "succeeded", "train": "succeeded"}
    assert changed.status().stages["train"].outputs == {"features": "a,b\n1,2\n3,4\n"}
    _ran(project)

    train = project / "train.py"
    train.write_text(train.read_text() + "\n# a code change\n")
    code = cached.run(workspace=ws, params={"data": "2026-11"}).wait(240)
    assert statuses(code) == {"prep": "cached", "train": "succeeded"} and _ran(project) == ["train"]

    forced = cached.run(workspace=ws, params={"data": "2026-11"}, force=True).wait(240)
    assert statuses(forced) == {"prep": "succeeded", "train": "succeeded"}
    assert _ran(project) == ["prep", "train"]
    assert ws.pipeline_runs()["cached"].tolist() == [0, 1, 0, 0, 2, 0]  # newest first


def test_failed_stages_are_not_cached(ws: mnb.Workspace, project: Path) -> None:
    marker = project / "ok"
    p = mnb.Pipeline(name="nocache", base_dir=project,
                     stages=[mnb.Stage("s", script=f"test -e {marker}", cache=True)])  # fmt: skip
    assert statuses(p.run(workspace=ws).wait(240)) == {"s": "failed"}
    marker.touch()
    assert statuses(p.run(workspace=ws).wait(240)) == {"s": "succeeded"}
    assert statuses(p.run(workspace=ws).wait(240)) == {"s": "cached"}


def test_a_stage_without_declared_inputs_runs_again_when_its_data_changes(
    ws: mnb.Workspace, project: Path,
) -> None:  # fmt: skip
    write(project, "data.csv", "a\n1\n")
    write(project, "count.sh", 'wc -l < "$MLOPS_NB_PIPELINE_DIR/data.csv" > rows.txt\n')
    write(project, "guide.yaml", "name: guide\nstages:\n  - {name: count, script: count.sh}\n")
    write(project, "declared.yaml", "name: declared\nstages:\n"
          "  - {name: count, script: count.sh, inputs: [data.csv]}\n")  # fmt: skip
    guide = mnb.Pipeline.from_yaml(project / "guide.yaml")
    declared = mnb.Pipeline.from_yaml(project / "declared.yaml")

    def rows(run: mnb.pipelines.Run) -> str:
        return (Path(run.status().run_dir) / "count" / "rows.txt").read_text().strip()

    assert statuses(guide.run(workspace=ws).wait(240)) == {"count": "succeeded"}
    assert statuses(declared.run(workspace=ws).wait(240)) == {"count": "succeeded"}
    write(project, "data.csv", "a\n1\n2\n")
    again = guide.run(workspace=ws).wait(240)
    assert statuses(again) == {"count": "succeeded"} and rows(again) == "3"
    assert again.status().stages["count"].cache_note == (
        "not cached: no inputs declared (declare inputs, or set cache: true)"
    )
    changed = declared.run(workspace=ws).wait(240)
    assert statuses(changed) == {"count": "succeeded"} and rows(changed) == "3"
    assert changed.status().stages["count"].cache_note is None
    hit = declared.run(workspace=ws).wait(240)
    assert statuses(hit) == {"count": "cached"} and rows(hit) == "3"
    assert hit.status().stages["count"].cached_from == changed.id


def test_cache_takes_only_booleans(project: Path) -> None:
    with pytest.raises(mnb.PipelineSpecError, match="cache must be true, false or left out"):
        mnb.Stage("s", script="true", cache="yes")  # type: ignore[arg-type]


def _blocking(project: Path, policy: str) -> mnb.Pipeline:
    release = project / "release"
    return mnb.Pipeline(name="nightly", concurrency=policy, base_dir=project, stages=[
        mnb.Stage("work", script=f"echo started; while [ ! -e {release} ]; do sleep 0.05; done",
                  cache=False),
    ])  # fmt: skip


def _running(ws: mnb.Workspace, run: mnb.pipelines.Run) -> None:
    wait_for(lambda: run.status().stages["work"].status == "running")


def test_policy_skip_and_refuse(ws: mnb.Workspace, project: Path) -> None:
    first = _blocking(project, "skip").run(workspace=ws)
    _running(ws, first)
    second = _blocking(project, "skip").run(workspace=ws)
    assert second.status().status == "skipped"
    assert second.status().reason == f"run {first.id} was in progress"
    with pytest.raises(mnb.PipelineBusy, match=f"running as {first.id}"):
        _blocking(project, "refuse").run(workspace=ws)
    allowed = _blocking(project, "allow").run(workspace=ws)
    _running(ws, allowed)
    (project / "release").touch()
    assert first.wait(240).status().status == "succeeded"
    assert allowed.wait(240).status().status == "succeeded"
    assert sorted(ws.pipeline_runs()["status"]) == ["skipped", "succeeded", "succeeded"]


def test_policy_wait_queues_behind_the_running_run(ws: mnb.Workspace, project: Path) -> None:
    first = _blocking(project, "wait").run(workspace=ws)
    _running(ws, first)
    second = _blocking(project, "wait").run(workspace=ws)
    assert second.status().status == "queued"
    assert second.status().stages["work"].status == "pending"
    (project / "release").touch()
    assert second.wait(240).status().status == "succeeded"
    one, two = first.attempts()[0], second.attempts()[0]
    assert two.started_at >= one.started_at + __import__("datetime").timedelta(
        seconds=one.duration_s or 0
    )


def test_the_policy_holds_across_processes(ws: mnb.Workspace, project: Path) -> None:
    first = _blocking(project, "refuse").run(workspace=ws)
    _running(ws, first)
    release = project / "release"
    (project / "nightly.yaml").write_text("""\
name: nightly
concurrency: refuse
stages:
  - name: work
    script: echo never
""")  # fmt: skip
    cli = [sys.executable, "-m", "mlops_nb.cli", "-w", ws.path, "pipeline", "run",
           str(project / "nightly.yaml")]  # fmt: skip
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=120, cwd=project)
    assert refused.returncode != 0 and f"running as {first.id}" in refused.stderr, refused.stderr
    release.touch()
    assert first.wait(240).status().status == "succeeded"
    assert ws.pipeline_runs()["status"].tolist() == ["succeeded"]  # nothing else started


def test_another_process_sees_the_running_pipeline_and_a_dead_one_is_abandoned(
    ws: mnb.Workspace, project: Path,
) -> None:  # fmt: skip
    first = _blocking(project, "skip").run(workspace=ws)
    _running(ws, first)
    cli = [sys.executable, "-m", "mlops_nb.cli", "-w", ws.path, "pipeline", "runs"]
    shown = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=True)
    assert first.id in shown.stdout and "running" in shown.stdout
    other = subprocess.run([sys.executable, "-m", "mlops_nb.cli", "-w", ws.path, "pipeline", "show",
                            first.id], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert "work  running  1 attempt" in other.stdout
    (project / "release").touch()
    first.wait(240)
    # A run whose process died does not block: rows left by a process that is gone, and by
    # one whose pid now belongs to another process (pid 1 started long before this one).
    for pid in (999999999, 1):
        ws._store.write(lambda con, pid=pid: con.execute(
            "UPDATE pipeline_runs SET status = 'running', pid = ? WHERE id = ?", [pid, first.id]))  # fmt: skip
        again = _blocking(project, "skip").run(workspace=ws)
        assert again.status().status == "running"
        assert ws.pipeline_run(first.id).status().status == "abandoned"
        again.cancel().wait(240)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                               "PATH": "/usr/bin:/bin", "HOME": str(repo)})  # fmt: skip
    return done.stdout.strip()


def test_trigger_filters_on_branch_and_changed_paths(ws: mnb.Workspace, project: Path) -> None:
    _git(project, "init", "-q", "-b", "main")
    write(project, "src/train.py", "print(1)\n")
    write(
        project,
        "pipeline.yaml",
        """\
name: triggered
trigger: {branch: main, paths: ["src/**"]}
stages: [{name: train, script: src/train.py}]
""",
    )
    _git(project, "add", ".")
    _git(project, "commit", "-qm", "first")
    write(project, "README.md", "docs\n")
    _git(project, "add", ".")
    _git(project, "commit", "-qm", "docs only")
    docs = _git(project, "rev-parse", "HEAD")
    p = mnb.Pipeline.from_yaml(project / "pipeline.yaml")

    skipped = p.run(workspace=ws, trigger={"commit": docs}).wait(240)
    assert skipped.status().status == "skipped"
    assert skipped.status().reason == "not triggered: no changed path matches ['src/**']"

    write(project, "src/train.py", "print(2)\n")
    _git(project, "commit", "-qam", "code")
    fired = p.run(workspace=ws, trigger=True).wait(240)
    assert fired.status().status == "succeeded"
    assert fired.status().git_commit == _git(project, "rev-parse", "HEAD")
    # The same commit seen on another branch does not fire.
    other = p.run(workspace=ws, trigger={"commit": docs, "branch": "feature/x"}).wait(240)
    assert "branch 'feature/x' does not match ['main']" in str(other.status().reason)
    # A range: everything between two commits.
    first = _git(project, "rev-list", "--max-parents=0", "HEAD")
    ranged = p.run(workspace=ws, trigger={"before": first, "commit": docs}).wait(240)
    assert ranged.status().status == "skipped"
    with pytest.raises(mnb.PipelineError, match="git rev-parse"):
        p.run(workspace=ws, trigger={"commit": "deadbeef"})
