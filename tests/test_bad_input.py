"""Bad input at the registry's entry points: a clear MlopsError naming the fix, and the
workspace (tables and artifact files) read back exactly as it was."""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import mlops_nb as mnb
from mlops_nb import errors

_TABLES = ("models", "versions", "version_metrics", "aliases", "approvals", "audit", "webhooks",
           "meta")  # fmt: skip


def snapshot(ws: mnb.Workspace) -> dict[str, Any]:
    """Every registry table's rows and every artifact file, read back from disk."""

    def dump(con: Any) -> dict[str, Any]:
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall())) for t in _TABLES}

    root = Path(ws.artifacts.uri)
    files = sorted(
        (str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()
    )
    return {**ws._store.read(dump), "files": files}


@pytest.fixture
def seeded(ws: mnb.Workspace) -> mnb.Workspace:
    ws.model("iris").register({"w": 1}, metrics={"acc": 0.9}, tags=["tabular"], label="1.0.0")
    ws.model("iris").set_alias("champion", 1)
    return ws


def _mixed_frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1, "a", 2.5]})


CASES: list[tuple[str, type[Exception], str, Callable[[mnb.Workspace], Any]]] = [
    ("metric 10**400", mnb.InvalidMetric, "finite",
     lambda ws: ws.model("iris").register({"w": 2}, metrics={"acc": 10**400})),
    ("param NaN", mnb.InvalidArgument, "NaN and infinity",
     lambda ws: ws.model("iris").register({"w": 2}, params={"lr": math.nan})),
    ("param inf (numpy)", mnb.InvalidArgument, "NaN and infinity",
     lambda ws: ws.model("iris").register({"w": 2}, params={"lr": np.float64("inf")})),
    ("model name with newline", mnb.InvalidArgument, "model name",
     lambda ws: ws.model("iris\n").register({"w": 2})),
    ("alias with newline", mnb.InvalidArgument, "alias name",
     lambda ws: ws.model("iris").set_alias("champion\n", 1)),
    ("superscript digit", mnb.InvalidArgument, "non-ASCII digits",
     lambda ws: ws.model("iris").version("²").stage),
    ("arabic digit", mnb.InvalidArgument, "non-ASCII digits",
     lambda ws: ws.model("iris").version("\u0661").stage),
    ("version 0", mnb.InvalidArgument, "start at 1", lambda ws: ws.model("iris").version(0)),
    ("huge version", mnb.VersionNotFound, "no version",
     lambda ws: ws.model("iris").version("99999999999999999999").stage),
    ("search tags=123", mnb.InvalidArgument, r"tags=\['tabular'\]",
     lambda ws: ws.search(tags=123)),
    ("search alias=5", mnb.InvalidArgument, "alias name", lambda ws: ws.search(alias=5)),
    ("search stage=5", mnb.InvalidArgument, "stage", lambda ws: ws.search(stage=5)),
    ("search metrics=5", mnb.InvalidMetric, "condition", lambda ws: ws.search(metrics=5)),
    ("search metric inf", mnb.InvalidMetric, "finite",
     lambda ws: ws.search(metrics="acc > 1e999")),
    ("search limit=-1", mnb.InvalidArgument, "non-negative", lambda ws: ws.search(limit=-1)),
    ("audit limit=-1", mnb.InvalidArgument, "non-negative", lambda ws: ws.audit(limit=-1)),
    ("duplicate columns", mnb.InvalidArgument, "repeated column names",
     lambda ws: ws.model("iris").register(
         {"w": 2}, input_example=pd.DataFrame([[1, 2]], columns=["a", "a"]))),
    ("mixed object column in reference", mnb.InvalidArgument, "mixing types",
     lambda ws: ws.model("iris").register({"w": 2}, reference_data=_mixed_frame())),
    ("mixed object column in example", mnb.InvalidArgument, "mixing types",
     lambda ws: ws.model("iris").register({"w": 2}, input_example=_mixed_frame())),
    ("taken label", mnb.DuplicateLabel, "already names",
     lambda ws: ws.model("iris").register({"w": 2}, label="1.0.0")),
    ("unknown parent", mnb.VersionNotFound, "no version",
     lambda ws: ws.model("iris").register({"w": 2}, parent_version=7)),
    ("policy min inf", mnb.InvalidArgument, "finite number",
     lambda ws: ws.set_policy(mnb.Policy(min_metrics={"acc": math.inf}))),
    ("policy max nan", mnb.InvalidArgument, "finite number",
     lambda ws: ws.set_policy(mnb.Policy(max_metrics={"rmse": math.nan}))),
    ("policy min above max", mnb.InvalidArgument, "no version could pass",
     lambda ws: mnb.Policy(min_metrics={"a": 2}, max_metrics={"a": 1})),
    ("webhook http://", mnb.InvalidArgument, "no host",
     lambda ws: ws.add_webhook("http://", secret="a-long-secret")),
    ("webhook with spaces", mnb.InvalidArgument, "url",
     lambda ws: ws.add_webhook("http://a b/", secret="a-long-secret")),
    ("remove unknown alias", mnb.AliasNotFound, "no alias",
     lambda ws: ws.model("iris").remove_alias("@nope")),
]  # fmt: skip


@pytest.mark.parametrize(("error", "match", "action"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_refused_and_nothing_changes(
    seeded: mnb.Workspace, error: type[Exception], match: str, action: Callable[[Any], Any]
) -> None:
    before = snapshot(seeded)
    with pytest.raises(error, match=match) as caught:
        action(seeded)
    assert isinstance(caught.value, mnb.MlopsError)
    assert snapshot(seeded) == before


def test_sklearn_model_that_cannot_load_is_refused(seeded: mnb.Workspace) -> None:
    X = np.random.default_rng(0).random((20, 2))
    model = LogisticRegression().fit(X, np.arange(20) % 2)
    model.pattern_ = re.compile("a+")  # skops writes it but refuses to read it back
    before = snapshot(seeded)
    with pytest.raises(mnb.FlavorError, match=r"cannot load it back.*flavor='python'"):
        seeded.model("iris").register(model)
    assert snapshot(seeded) == before
    # The same object registers with the flavor the message names, and loads.
    v = seeded.model("iris").register(model, flavor="python")
    assert v.load().pattern_.pattern == "a+"


def test_remove_alias_takes_the_at_form(seeded: mnb.Workspace) -> None:
    seeded.model("iris").remove_alias("@champion")
    assert seeded.model("iris").aliases() == {}
    assert seeded.audit()["action"].tolist()[-1] == "alias_removed"


def test_download_never_overwrites(seeded: mnb.Workspace, tmp_path: Path) -> None:
    v = seeded.model("iris").version(1)
    taken = tmp_path / "a-file"
    taken.write_text("mine")
    with pytest.raises(mnb.DestinationExists, match="not a folder") as err:
        v.download(taken)
    assert isinstance(err.value, FileExistsError)
    out = v.download(tmp_path / "copy")
    assert (out / "model.pkl").is_file()
    with pytest.raises(mnb.DestinationExists, match=r"already holds model\.pkl"):
        v.download(tmp_path / "copy")
    assert taken.read_text() == "mine"


def _instances() -> list[mnb.MlopsError]:
    out: list[mnb.MlopsError] = []
    for name in errors.__all__:
        cls = getattr(errors, name)
        out.append(cls("boom", "rule") if cls is mnb.PromotionRefused else cls("boom"))
    return out


@pytest.mark.parametrize("exc", _instances(), ids=lambda e: type(e).__name__)
def test_every_error_survives_pickle(exc: mnb.MlopsError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert getattr(back, "rule", None) == getattr(exc, "rule", None)


def test_promotion_refused_is_not_an_os_error() -> None:
    assert not issubclass(mnb.PromotionRefused, OSError)
