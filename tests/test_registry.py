"""The registry through its public API, on a real DuckDB file."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlops_nb as mnb
from mlops_nb import search


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def fitted(iris: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    X, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)


def test_register_records_everything(ws: mnb.Workspace, iris, fitted) -> None:
    X, _ = iris
    v = ws.model("churn").register(
        fitted,
        metrics={"accuracy": 0.91, "f1": np.float32(0.5)},
        params={"C": 1.0, "n": np.int64(3)},
        tags=["tabular", "baseline"],
        description="first",
        label="1.2.0",
        data_version="2026-11-01",
        resources={"cpu": "500m"},
        input_example=X[:5],
        reference_data=X,
    )
    assert (v.number, v.stage, v.label) == (1, "development", "1.2.0")
    assert v.metrics == {"accuracy": 0.91, "f1": 0.5}
    assert v.params == {"C": 1.0, "n": 3}
    assert v.tags == ["baseline", "tabular"]
    assert v.flavor == "sklearn"
    assert v.created_by == "tester"
    assert v.info()["algorithm"] == "Pipeline(StandardScaler > LogisticRegression)"
    assert v.info()["resources"] == {"cpu": "500m"}
    assert v.lineage["data_version"] == "2026-11-01"
    assert [i["name"] for i in v.signature["inputs"]] == list(X.columns)
    assert v.signature["inputs"][0]["datatype"] == "FP64"
    assert v.signature["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    assert v.digest.startswith("sha256:") and len(v.digest) == 71
    pd.testing.assert_frame_equal(v.reference_data(), X.reset_index(drop=True))
    pd.testing.assert_frame_equal(v.input_example(), X[:5].reset_index(drop=True))
    loaded = v.load()
    assert (loaded.predict(X) == fitted.predict(X)).all()


def test_lineage_records_git_commit_and_parent(
    ws: mnb.Workspace, tmp_path: Path, monkeypatch
) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (
        ["git", "init", "-q"],
        [
            "git",
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    ):
        subprocess.run(cmd, cwd=repo, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    monkeypatch.chdir(repo)
    v1 = ws.model("m").register({"w": 1})
    v2 = ws.model("m").register({"w": 2}, parent_version=1)
    assert v1.lineage["git_commit"] == head
    assert v2.lineage["parent_version"] == 1
    with pytest.raises(mnb.VersionNotFound):
        ws.model("m").register({"w": 3}, parent_version=9)
    assert len(ws.model("m").versions()) == 2


def test_numbers_are_consecutive_per_model(ws: mnb.Workspace) -> None:
    for i in range(3):
        ws.model("a").register({"i": i})
    ws.model("b").register({"i": 0})
    assert ws.model("a").versions()["version"].tolist() == [3, 2, 1]
    assert ws.model("b").versions()["version"].tolist() == [1]


def test_version_references(ws: mnb.Workspace) -> None:
    m = ws.model("churn")
    m.register({"v": 1}, label="1.0.0")
    m.register({"v": 2}, label="1.1.0")
    m.version(1).promote("production")
    m.set_alias("champion", 2)
    assert m.version("latest").number == 2
    assert m.version("2").number == 2
    assert m.version("@champion").number == 2
    assert m.version("1.0.0").number == 1
    assert m.version("production").number == 1
    assert m.version("@champion").load() == {"v": 2}


def test_handles_are_lazy(ws: mnb.Workspace) -> None:
    handle = ws.model("missing").version(7)  # no I/O, so no error yet
    with pytest.raises(mnb.ModelNotFound, match="no model named 'missing'"):
        _ = handle.stage
    assert repr(ws.model("missing")) == "<Model missing>"


def test_production_is_exclusive_and_archived_needs_opt_in(ws: mnb.Workspace) -> None:
    m = ws.model("churn")
    v1, v2 = m.register({"v": 1}), m.register({"v": 2})
    seen: list[mnb.Event] = []
    ws.on("*", seen.append)
    v1.promote("production", reason="first")
    v2.promote("production", reason="better")
    assert m.version(1).stage == "archived"
    assert m.version(2).stage == "production"
    assert m.version(1).load() == {"v": 1}  # archived stays loadable for rollbacks
    assert [(e.name, e.version) for e in seen] == [
        ("promoted", 1),
        ("archived", 1),
        ("promoted", 2),
    ]
    with pytest.raises(mnb.InvalidStage, match="allow_archived=True"):
        v1.promote("production")
    assert m.version(2).stage == "production"
    back = v1.promote("production", reason="rollback", allow_archived=True)
    assert back.stage == "production" and m.version(2).stage == "archived"
    audit = ws.audit(model="churn")
    assert audit["action"].tolist() == [
        "register",
        "register",
        "promote",
        "archive",
        "promote",
        "archive",
        "promote",
    ]
    last = audit.iloc[-1]
    assert (last["from_value"], last["to_value"], last["reason"], last["actor"]) == (
        "archived",
        "production",
        "rollback",
        "tester",
    )


def test_aliases_unique_and_movable(ws: mnb.Workspace) -> None:
    m = ws.model("churn")
    m.register({"v": 1})
    m.register({"v": 2})
    m.set_alias("champion", 1)
    m.set_alias("challenger", 2)
    m.set_alias("champion", 2)
    assert m.aliases() == {"challenger": 2, "champion": 2}
    assert m.version(2).aliases == ["challenger", "champion"]
    m.remove_alias("challenger", reason="the trial ended")
    assert m.aliases() == {"champion": 2}
    audit = ws.audit("churn")[["action", "reason"]].fillna("").values.tolist()
    assert audit[-2:] == [["alias", ""], ["alias_removed", "the trial ended"]]
    m.set_alias("champion", 1, reason="back to v1")
    assert ws.audit("churn").iloc[-1][["action", "reason"]].tolist() == ["alias", "back to v1"]
    m.set_alias("champion", 2)
    with pytest.raises(mnb.InvalidArgument, match="reason"):
        m.set_alias("champion", 1, reason=3)  # type: ignore[arg-type]
    with pytest.raises(mnb.AliasNotFound):
        m.remove_alias("challenger")
    with pytest.raises(mnb.VersionNotFound):
        _ = m.version("@challenger").stage
    for bad in ("latest", "production", "3", "1.0.0", "", "has space"):
        with pytest.raises(mnb.InvalidArgument):
            m.set_alias(bad, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"metrics": {"accuracy": float("nan")}}, mnb.InvalidMetric, "finite"),
        ({"metrics": {"accuracy": math.inf}}, mnb.InvalidMetric, "finite"),
        ({"metrics": {"accuracy": "high"}}, mnb.InvalidMetric, "must be a number"),
        ({"metrics": {"ok": True}}, mnb.InvalidMetric, "must be a number"),
        ({"metrics": [0.9]}, mnb.InvalidMetric, "dict"),
        ({"params": {"f": object()}}, mnb.InvalidArgument, "JSON"),
        ({"tags": [1, 2]}, mnb.InvalidArgument, "tags"),
        ({"label": "1.2"}, mnb.InvalidArgument, "MAJOR.MINOR.PATCH"),
        ({"flavor": "onnx"}, mnb.InvalidArgument, "unknown flavor"),
        ({"parent_version": "1"}, mnb.InvalidArgument, "parent_version"),
        ({"input_example": np.zeros((2, 2, 2))}, mnb.InvalidArgument, "tabular"),
    ],
)
def test_bad_register_input_writes_nothing(ws: mnb.Workspace, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        ws.model("churn").register({"v": 1}, **kwargs)
    assert ws.models().empty
    assert ws.audit().empty


def test_duplicate_label_and_missing_path(ws: mnb.Workspace, tmp_path: Path) -> None:
    m = ws.model("churn")
    m.register({"v": 1}, label="1.0.0")
    with pytest.raises(mnb.DuplicateLabel, match="already names churn v1"):
        m.register({"v": 2}, label="1.0.0")
    with pytest.raises(mnb.ArtifactMissing, match="does not exist"):
        m.register(tmp_path / "nope.bin")
    assert m.versions()["version"].tolist() == [1]


def test_unknown_names_are_clear(ws: mnb.Workspace) -> None:
    ws.model("churn").register({"v": 1})
    with pytest.raises(mnb.ModelNotFound, match=r"registered: churn"):
        ws.model("chrun").versions()
    with pytest.raises(mnb.VersionNotFound, match="has no version 5"):
        ws.model("churn").version(5).load()
    with pytest.raises(mnb.InvalidStage, match="use one of"):
        ws.model("churn").version(1).promote("prod")
    with pytest.raises(mnb.InvalidArgument):
        ws.model("bad name!")
    with pytest.raises(mnb.InvalidArgument):
        ws.model("churn").version(1.5)  # type: ignore[arg-type]
    assert isinstance(mnb.ModelNotFound("x"), LookupError)


def test_search_filters(ws: mnb.Workspace) -> None:
    m = ws.model("churn")
    m.register({"v": 1}, metrics={"accuracy": 0.80, "loss": 0.5}, tags=["tabular"])
    m.register({"v": 2}, metrics={"accuracy": 0.92, "loss": 0.3}, tags=["tabular", "gbm"])
    m.register({"v": 3}, metrics={"accuracy": 0.95}, tags=["gbm"])
    ws.model("other").register({"v": 1}, metrics={"accuracy": 0.99}, tags=["tabular"])
    m.version(2).promote("staging")
    m.set_alias("champion", 3)
    found = ws.search(metrics="accuracy >= 0.9")
    assert list(zip(found["model"], found["version"], strict=True)) == [
        ("churn", 3),
        ("churn", 2),
        ("other", 1),
    ]
    assert m.search(metrics=["accuracy > 0.9", "loss < 0.4"])["version"].tolist() == [2]
    assert m.search(tags="gbm")["version"].tolist() == [3, 2]
    assert m.search(tags=["gbm", "tabular"])["version"].tolist() == [2]
    assert m.search(stage="staging")["version"].tolist() == [2]
    assert m.search(alias="@champion")["version"].tolist() == [3]
    assert ws.search(metrics="accuracy == 0.99")["model"].tolist() == ["other"]
    assert ws.search(limit=1)["version"].tolist() == [3]
    with pytest.raises(mnb.InvalidMetric, match="name OP number"):
        ws.search(metrics="accuracy is high")
    with pytest.raises(mnb.InvalidArgument):
        ws.search(stage="prod")


def test_frames_and_reprs_are_deterministic(ws: mnb.Workspace) -> None:
    m = ws.model("churn")
    v = m.register({"v": 1}, metrics={"accuracy": 0.9, "version": 2.0}, label="0.1.0")
    frame = m.versions()
    assert list(frame.columns) == [
        "model",
        "version",
        "label",
        "stage",
        "aliases",
        "accuracy",
        "metric:version",
        "tags",
        "framework",
        "algorithm",
        "data_version",
        "created_at",
        "created_by",
        "digest",
    ]
    assert repr(v) == "<ModelVersion churn v1 development>"
    assert repr(m.version(9)) == "<ModelVersion churn 9 (not found)>"
    assert repr(ws).startswith("<Workspace ") and "0x" not in repr(ws)
    html = m._repr_html_()
    assert "v1" in html and "development" in html and "0.9" in html and "<script" not in html
    assert m._repr_html_() == html
    card = v._repr_html_()
    assert "sha256:" in card and "0.1.0" in card
    assert "churn" in ws._repr_html_()
    models = ws.models()
    assert models.to_dict("records")[0]["versions"] == 1


def test_flavors_python_and_files(ws: mnb.Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"\x00\x01")
    (folder / "sub" / "b.txt").write_text("hello")
    v = ws.model("files").register(folder)
    assert v.flavor == "files"
    path = v.load()
    assert (path / "a.bin").read_bytes() == b"\x00\x01"
    assert (path / "sub" / "b.txt").read_text() == "hello"
    single = tmp_path / "model.onnx"
    single.write_bytes(b"onnx")
    assert ws.model("onnx").register(single).load().read_bytes() == b"onnx"
    square = ws.model("fn").register(lambda x: x * x, flavor="python")
    assert square.load()(7) == 49
    out = square.download(tmp_path / "dl")
    assert (out / "model.pkl").is_file()


def _shift(x: np.ndarray) -> np.ndarray:
    return x + 1.0


def test_sklearn_custom_types_are_trusted_only_as_recorded(ws: mnb.Workspace, iris) -> None:
    from sklearn.preprocessing import FunctionTransformer

    X, y = iris
    pipe = make_pipeline(FunctionTransformer(_shift), LogisticRegression(max_iter=500)).fit(X, y)
    v = ws.model("custom").register(pipe)
    assert v.info()["manifest"]["trusted_types"] == [f"{__name__}._shift"]
    assert (v.load().predict(X) == pipe.predict(X)).all()


def test_policy_rules(ws: mnb.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    m = ws.model("churn")
    weak = m.register({"v": 1}, metrics={"accuracy": 0.80})
    strong = m.register({"v": 2}, metrics={"accuracy": 0.95})
    ws.set_policy(mnb.Policy(min_metrics={"accuracy": 0.9}, require_reason=True, approvals=2))
    assert ws.policy == mnb.Policy(min_metrics={"accuracy": 0.9}, require_reason=True, approvals=2)
    with pytest.raises(mnb.PromotionRefused) as err:
        strong.promote("staging")
    assert err.value.rule == "require_reason"
    with pytest.raises(mnb.PromotionRefused, match=r"below the minimum 0\.9") as err:
        weak.promote("staging", reason="try")
    assert err.value.rule == "min_metrics.accuracy"
    strong.promote("staging", reason="good")
    with pytest.raises(mnb.PromotionRefused, match="has 0") as err:
        strong.promote("production", reason="ship")
    assert err.value.rule == "approvals"
    strong.approve(comment="lgtm")
    strong.approve()  # the same person twice counts once
    with pytest.raises(mnb.PromotionRefused, match=r"has 1 \(tester\)"):
        strong.promote("production", reason="ship")
    monkeypatch.setenv("MLOPS_NB_USER", "reviewer2")
    strong.approve()
    assert strong.promote("production", reason="ship").stage == "production"
    assert strong.approvals()["approver"].tolist() == ["tester", "reviewer2"]
    refused = ws.audit(model="churn").query("action == 'promote_refused'")
    assert len(refused) == 4
    assert m.version(1).stage == "development"
    # A model policy replaces the workspace policy for that model.
    m.set_policy(mnb.Policy())
    assert m.policy == mnb.Policy()
    assert weak.promote("staging").stage == "staging"


def test_policy_validation() -> None:
    with pytest.raises(mnb.InvalidArgument):
        mnb.Policy(approvals=-1)
    with pytest.raises(mnb.InvalidArgument):
        mnb.Policy(min_metrics={"a": "x"})  # type: ignore[dict-item]
    with pytest.raises(mnb.InvalidArgument):
        mnb.Policy(stages=("prod",))


def test_memory_workspace_and_context_manager() -> None:
    with mnb.open(":memory:") as ws:
        v = ws.model("m").register([1, 2, 3])
        assert v.load() == [1, 2, 3]
        root = Path(ws.artifacts.uri)
        assert root.is_dir()
    assert not root.exists()
    with pytest.raises(mnb.WorkspaceError, match="closed"):
        ws.models()


def test_aliases_in_rows_and_frames(ws: mnb.Workspace) -> None:
    churn, other = ws.model("churn"), ws.model("other")
    for m in (churn, other):
        m.register({"v": 1})
        m.register({"v": 2})
    churn.set_alias("champion", 1)
    churn.set_alias("backup", 1)
    other.set_alias("champion", 2)
    churn.version(1).promote("production")
    assert churn.version("production").aliases == ["backup", "champion"]
    assert churn.version("latest").aliases == []
    assert other.version("@champion").info()["aliases"] == ["champion"]
    assert list(churn.version(1).info())[:6] == [
        "model",
        "version",
        "label",
        "stage",
        "aliases",
        "tags",
    ]
    frame = ws.search()
    assert list(zip(frame["model"], frame["version"], frame["aliases"], strict=True)) == [
        ("churn", 2, []),
        ("churn", 1, ["backup", "champion"]),
        ("other", 2, ["champion"]),
        ("other", 1, []),
    ]
    assert ws.search(alias="champion")["aliases"].tolist() == [["backup", "champion"], ["champion"]]
    assert ws.search(model="churn", stage="archived").empty
    with pytest.raises(mnb.ModelNotFound, match="registered: churn, other"):
        mnb.registry.ModelVersion(ws, "missing", 1.5).stage  # type: ignore[arg-type]  # noqa: B018
    with pytest.raises(mnb.InvalidArgument, match="int or a string"):
        mnb.registry.ModelVersion(ws, "churn", 1.5).stage  # type: ignore[arg-type]  # noqa: B018


_BUSY = """
import sys, time
from pathlib import Path
import mlops_nb as mnb
ws = mnb.open(sys.argv[1])
stop = Path(sys.argv[2])
print("busy", flush=True)
end = time.monotonic() + 60
while not stop.exists() and time.monotonic() < end:
    ws.model("m").version("latest").stage
ws.close()
"""


def test_a_busy_process_lets_a_waiting_one_in(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    path, stop = tmp_path / "busy.duckdb", tmp_path / "stop"
    with mnb.open(path) as ws:
        ws.model("m").register({"v": 1})
    busy = subprocess.Popen(
        [sys.executable, "-c", _BUSY, str(path), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "busy"
        time.sleep(0.3)  # the busy process holds the file: it never idles for linger
        start = time.monotonic()
        # It lets this process in once it has held the file for max_hold (1 s) and sees us
        # waiting; without that this open would wait for the whole minute and fail.
        with mnb.open(path, busy_timeout=20) as ws:
            assert ws.model("m").version(1).stage == "development"
        assert time.monotonic() - start < 10
    finally:
        stop.touch()
        busy.communicate(timeout=60)
    assert busy.returncode == 0
    assert not Path(f"{path}.waiting").exists()


def test_a_search_builds_its_frame_with_one_young_collection(ws: mnb.Workspace) -> None:
    for i in range(3):
        ws.model("m").register({"w": i}, metrics={"acc": i / 10}, tags=["tabular"])
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with search._one_collection():
            # Far more containers than the youngest generation's threshold.
            kept = [[j] for j in range(20 * gc.get_threshold()[0])]
            frame = ws.search(tags="tabular")
        assert passes == [0] and len(kept) > 0 and len(frame) == 3
        passes.clear()
        gc.disable()
        ws.search(tags="tabular")  # a caller's own pause is left alone
        assert not gc.isenabled() and passes == []
    finally:
        gc.enable()
        gc.callbacks.remove(count)
    with pytest.raises(RuntimeError), search._one_collection():
        raise RuntimeError("the collector runs again after an error")
    assert gc.isenabled()
