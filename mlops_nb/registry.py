"""Model and ModelVersion handles.

Handles are lazy: ``ws.model("churn").version(3)`` does no I/O. Reading an attribute
fetches the version's row once; actions (``promote``, ``set_alias``, ``approve``) write
in one transaction and return a refreshed handle.

>>> import mlops_nb as mnb
>>> ws = mnb.open(":memory:")
>>> v = ws.model("double").register(lambda x: 2 * x, metrics={"mse": 0.0})
>>> v
<ModelVersion double v1 development>
>>> v.promote("staging").stage
'staging'
>>> ws.model("double").version("latest").load()(21)
42
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import flavors, query, render, search, validation
from .artifacts import manifest_digest
from .errors import (
    AliasNotFound,
    DestinationExists,
    DuplicateLabel,
    InvalidArgument,
    InvalidStage,
    PromotionRefused,
    VersionNotFound,
)
from .policy import STAGES, Policy, check, may_approve, may_promote
from .signature import as_frame, infer_inputs, infer_outputs
from .staging import staging

if TYPE_CHECKING:
    import duckdb

    from .deploy.core import Deployment
    from .widgets.registry import RegistryView
    from .workspace import Workspace

_RESERVED_ALIASES = {"latest", *STAGES}


class Model:
    """A named model in a workspace: a lazy handle, no I/O until an action runs."""

    def __init__(self, ws: Workspace, name: str) -> None:
        self._ws = ws
        self.name = query.check_name(name)

    def __repr__(self) -> str:
        return f"<Model {self.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and (other._ws, other.name) == (self._ws, self.name)

    def __hash__(self) -> int:
        return hash((id(self._ws), self.name))

    def _repr_html_(self) -> str:
        return render.versions_table(self.name, self.versions())

    def view(self) -> RegistryView:
        """A live view of this model's versions with promote, archive, alias, approve."""
        from .widgets.registry import RegistryView

        return RegistryView(self._ws, self.name)

    # -- lookups -------------------------------------------------------------------------

    def version(self, ref: int | str) -> ModelVersion:
        """A handle on one version: a number, 'latest', '@alias', a stage or a semver label."""
        return ModelVersion(self._ws, self.name, validation.version_ref(ref))

    def exists(self) -> bool:
        return self._ws._store.read(lambda con: query.model_exists(con, self.name))

    def versions(self) -> pd.DataFrame:
        """Every version, newest first, one column per metric."""

        def run(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
            frame = search.search(con, model=self.name)
            if frame.empty:
                query.require_model(con, self.name)
            return frame

        return self._ws._store.read(run)

    def search(self, **filters: Any) -> pd.DataFrame:
        """Versions of this model matching ``stage``, ``tags``, ``alias``, ``metrics``."""
        return self._ws.search(model=self.name, **filters)

    def aliases(self) -> dict[str, int]:
        rows = self._ws._store.read(
            lambda con: con.execute(
                "SELECT alias, version FROM aliases WHERE model = ? ORDER BY alias", [self.name]
            ).fetchall()
        )
        return {str(a): int(v) for a, v in rows}

    @property
    def policy(self) -> Policy | None:
        """The policy set on this model (not the workspace's)."""
        row = self._ws._store.read(
            lambda con: con.execute(
                "SELECT policy FROM models WHERE name = ?", [self.name]
            ).fetchone()
        )
        return Policy.from_json(row[0]) if row and row[0] else None

    # -- actions -------------------------------------------------------------------------

    def register(
        self,
        model: Any,
        *,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        label: str | None = None,
        data_version: str | None = None,
        parent_version: int | None = None,
        resources: dict[str, Any] | None = None,
        input_example: Any = None,
        reference_data: Any = None,
        flavor: str | None = None,
    ) -> ModelVersion:
        """Store the model's files and record a new version in one transaction.

        ``model`` is an estimator, any picklable object, or a path (registered as files).
        ``reference_data`` is a sample kept as the drift baseline for monitoring.
        """
        ws = self._ws
        metric_values = validation.metrics(metrics)
        param_values = validation.json_dict(params, "params")
        resource_values = validation.json_dict(resources, "resources")
        tag_values = validation.tags(tags)
        label_value = validation.label(label)
        validation.optional_str(description, "description")
        validation.optional_str(data_version, "data_version")
        if parent_version is not None and (
            isinstance(parent_version, bool) or not isinstance(parent_version, int)
        ):
            raise InvalidArgument(f"parent_version must be an int, got {parent_version!r}")
        chosen = flavor or flavors.detect(model)
        if chosen not in flavors.FLAVORS:
            raise InvalidArgument(
                f"unknown flavor {chosen!r}; use one of {', '.join(flavors.FLAVORS)}"
            )
        framework, algorithm = flavors.describe(model, chosen)
        # Refusals that need the database come before any file is stored.
        ws._store.read(lambda con: self._check_new(con, label_value, parent_version))
        # git runs while the files are saved and stored, not before or while holding the
        # database.
        commit: list[str | None] = []
        git = threading.Thread(target=lambda: commit.append(ws.git_commit()), daemon=True)
        git.start()
        signature: dict[str, Any] | None = None
        written: list[str] = []
        with staging() as folder:
            files, extra = flavors.save(model, chosen, folder)
            roles = dict.fromkeys(files, "model")
            if input_example is not None:
                example = _frame(input_example, "input_example")
                files["input_example.parquet"] = _write_parquet(
                    example, folder / "example.parquet", "input_example"
                )
                roles["input_example.parquet"] = "input_example"
                signature = {
                    "inputs": infer_inputs(input_example),
                    "outputs": infer_outputs(model, input_example),
                }
            if reference_data is not None:
                reference = _frame(reference_data, "reference_data")
                files["reference.parquet"] = _write_parquet(
                    reference, folder / "reference.parquet", "reference_data"
                )
                roles["reference.parquet"] = "reference"
            try:
                manifest = ws.artifacts.put_files(files, roles, extra, written, scratch=folder)
            except BaseException:
                ws.artifacts.discard(written)
                raise
        digest = manifest_digest(manifest)
        actor = ws.actor()
        now = ws.now()
        git.join()

        def write(con: duckdb.DuckDBPyConnection) -> int:
            if not query.model_exists(con, self.name):
                con.execute(
                    "INSERT INTO models (name, created_at, created_by) VALUES (?, ?, ?)",
                    [self.name, now, actor],
                )
            # Checked again: another process may have taken the label meanwhile.
            self._check_new(con, label_value, parent_version)
            row = con.execute(
                "SELECT coalesce(max(number), 0) + 1 FROM versions WHERE model = ?", [self.name]
            ).fetchone()
            number = int(row[0]) if row else 1
            con.execute(
                "INSERT INTO versions VALUES "
                "(?, ?, ?, 'development', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.name,
                    number,
                    label_value,
                    chosen,
                    framework,
                    algorithm,
                    data_version,
                    parent_version,
                    commit[0] if commit else None,
                    json.dumps(metric_values),
                    json.dumps(param_values),
                    json.dumps(resource_values),
                    tag_values,
                    description,
                    json.dumps(signature) if signature else None,
                    ws.artifacts.uri,
                    digest,
                    json.dumps(manifest),
                    now,
                    actor,
                ],
            )
            if metric_values:
                # One statement (executemany prepares and runs one per metric).
                con.execute(
                    "INSERT INTO version_metrics SELECT ?, ?, unnest(?::VARCHAR[]), "
                    "unnest(?::DOUBLE[])",
                    [self.name, number, list(metric_values), list(metric_values.values())],
                )
            ws._audit(
                con,
                "register",
                self.name,
                number,
                None,
                "development",
                None,
                {"digest": digest, "label": label_value},
            )
            return number

        try:
            number = ws._store.write(write)
        except BaseException:
            # Nothing was recorded: blobs this call stored and no version uses go again.
            _discard_unreferenced(ws, written)
            raise
        ws._emit("registered", self.name, number, {"digest": digest, "label": label_value})
        return ModelVersion(ws, self.name, number)

    def _check_new(
        self, con: duckdb.DuckDBPyConnection, label: str | None, parent: int | None
    ) -> None:
        if label is not None:
            taken = con.execute(
                "SELECT number FROM versions WHERE model = ? AND label = ?", [self.name, label]
            ).fetchone()
            if taken:
                raise DuplicateLabel(
                    f"label {label!r} already names {self.name} v{taken[0]}; labels are "
                    "unique per model, pick the next version number"
                )
        if parent is not None:
            query.resolve(con, self.name, parent)

    def set_alias(
        self, alias: str, version: int | str, *, reason: str | None = None
    ) -> ModelVersion:
        """Point ``alias`` (e.g. 'champion') at a version; moves it if it exists.

        ``reason`` goes into the audit log:
        ``m.set_alias("champion", 3, reason="best on the holdout")``.
        """
        alias = _check_alias(alias)
        validation.optional_str(reason, "reason")
        ws = self._ws

        def write(con: duckdb.DuckDBPyConnection) -> tuple[int, int | None]:
            number = query.resolve(con, self.name, version)
            old = con.execute(
                "SELECT version FROM aliases WHERE model = ? AND alias = ?", [self.name, alias]
            ).fetchone()
            con.execute(
                "INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", [self.name, alias, number]
            )
            ws._audit(
                con,
                "alias",
                self.name,
                number,
                f"v{old[0]}" if old else None,
                f"@{alias}",
                reason,
                None,
            )
            return number, int(old[0]) if old else None

        number, previous = ws._store.write(write)
        ws._emit("alias_set", self.name, number, {"alias": alias, "previous": previous})
        return ModelVersion(ws, self.name, number)

    def remove_alias(self, alias: str, *, reason: str | None = None) -> None:
        """Remove ``alias`` ('champion' or '@champion'); ``reason`` goes into the audit log."""
        alias = _check_alias(alias)
        validation.optional_str(reason, "reason")
        ws = self._ws

        def write(con: duckdb.DuckDBPyConnection) -> int:
            query.require_model(con, self.name)
            row = con.execute(
                "DELETE FROM aliases WHERE model = ? AND alias = ? RETURNING version",
                [self.name, alias],
            ).fetchone()
            if row is None:
                raise AliasNotFound(f"model {self.name!r} has no alias {alias!r}")
            ws._audit(con, "alias_removed", self.name, int(row[0]), f"@{alias}", None, reason, None)
            return int(row[0])

        number = ws._store.write(write)
        ws._emit("alias_removed", self.name, number, {"alias": alias})

    def set_policy(self, policy: Policy | None) -> Model:
        """Set (or clear with None) this model's promotion policy."""
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidArgument(f"expected mlops_nb.Policy or None, got {type(policy).__name__}")
        ws = self._ws

        def write(con: duckdb.DuckDBPyConnection) -> None:
            query.require_model(con, self.name)
            con.execute(
                "UPDATE models SET policy = ? WHERE name = ?",
                [policy.to_json() if policy else None, self.name],
            )
            ws._audit(
                con,
                "policy",
                self.name,
                None,
                None,
                policy.to_json() if policy else None,
                None,
                None,
            )

        ws._store.write(write)
        return self


class ModelVersion:
    """One version of a model. Attributes load the row once; actions refresh it."""

    def __init__(self, ws: Workspace, model: str, ref: int | str) -> None:
        self._ws = ws
        self.model = model
        self._ref = ref
        self._row: dict[str, Any] | None = None

    # -- the row -------------------------------------------------------------------------

    def _info(self) -> dict[str, Any]:
        if self._row is None:
            self._row = self._ws._store.read(lambda con: query.lookup(con, self.model, self._ref))
        return self._row

    def refresh(self) -> ModelVersion:
        """A new handle on the same version number with the current row."""
        return ModelVersion(self._ws, self.model, self.number)

    @property
    def number(self) -> int:
        if isinstance(self._ref, int):
            return self._ref
        return int(self._info()["version"])

    stage = property(lambda self: str(self._info()["stage"]), doc="Lifecycle stage.")
    label = property(lambda self: self._info()["label"], doc="Semantic-version label or None.")
    metrics = property(lambda self: dict(self._info()["metrics"]), doc="Recorded metrics.")
    params = property(lambda self: dict(self._info()["params"]), doc="Training parameters.")
    tags = property(lambda self: list(self._info()["tags"]), doc="Tags, sorted.")
    aliases = property(lambda self: list(self._info()["aliases"]), doc="Aliases, sorted.")
    digest = property(lambda self: str(self._info()["digest"]), doc="sha256 of the manifest.")
    flavor = property(lambda self: str(self._info()["flavor"]), doc="How the model is saved.")
    signature = property(lambda self: self._info()["signature"], doc="Input/output schema.")
    created_at = property(lambda self: self._info()["created_at"], doc="When registered (UTC).")
    created_by = property(lambda self: self._info()["created_by"], doc="Who registered it.")

    @property
    def lineage(self) -> dict[str, Any]:
        """Training data version, parent version, git commit and the pipeline run that
        registered it (None outside a pipeline)."""
        row = self._info()
        out = {k: row[k] for k in ("data_version", "parent_version", "git_commit")}
        run = self._ws._store.read(
            lambda con: con.execute(
                "SELECT json_extract_string(details, '$.pipeline_run') FROM audit "
                "WHERE action = 'register' AND model = ? AND version = ?",
                [self.model, self.number],
            ).fetchone()
        )
        out["pipeline_run"] = run[0] if run else None
        return out

    def info(self) -> dict[str, Any]:
        """Everything recorded about this version, as a dict."""
        return dict(self._info())

    def __repr__(self) -> str:
        try:
            return f"<ModelVersion {self.model} v{self.number} {self.stage}>"
        except VersionNotFound:
            return f"<ModelVersion {self.model} {self._ref!r} (not found)>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ModelVersion)
            and other._ws is self._ws
            and (other.model, other.number) == (self.model, self.number)
        )

    def __hash__(self) -> int:
        return hash((id(self._ws), self.model, self.number))

    def _repr_html_(self) -> str:
        return render.version_card(self._info())

    # -- artifacts -----------------------------------------------------------------------

    def _fetch(self, roles: set[str], dest: Path) -> dict[str, Path]:
        row = self._info()
        store = self._ws._artifact_store(str(row["artifact_uri"]))
        return store.fetch(row["manifest"], str(row["digest"]), dest, roles)

    def load(self) -> Any:
        """The model object, after every model file's sha256 is verified.

        A ``files`` version returns the path of a verified local copy.
        """
        row = self._info()
        if row["flavor"] == "files":
            dest = Path(tempfile.mkdtemp(prefix=f"mlops-nb-{self.model}-v{self.number}-"))
            self._fetch({"model"}, dest)
            return flavors.load(row["manifest"], dest)
        with staging() as tmp:
            self._fetch({"model"}, tmp)
            return flavors.load(row["manifest"], tmp)

    def download(self, dest: str | Path) -> Path:
        """Copy every verified artifact file of this version into ``dest``: a new folder
        or an existing one without files of the same names (nothing is overwritten)."""
        if not isinstance(dest, str | Path):
            raise InvalidArgument(f"dest must be a str or Path, got {type(dest).__name__}")
        target = Path(dest).expanduser()
        if target.exists() and not target.is_dir():
            raise DestinationExists(
                f"{str(target)!r} exists and is not a folder; pass a new folder name or an "
                "existing folder to download into"
            )
        with staging() as tmp:
            paths = self._fetch({"model", "input_example", "reference"}, tmp)
            clashes = sorted(rel for rel in paths if (target / rel).exists())
            if clashes:
                raise DestinationExists(
                    f"{str(target)!r} already holds {', '.join(clashes)}; download into an "
                    "empty or new folder, or remove those files first"
                )
            flavors.copy_tree(tmp, target)
        return target

    def _frame_artifact(self, role: str, name: str) -> pd.DataFrame | None:
        if not any(f["role"] == role for f in self._info()["manifest"]["files"]):
            return None
        with staging() as tmp:
            paths = self._fetch({role}, tmp)
            return pd.read_parquet(paths[name])

    def input_example(self) -> pd.DataFrame | None:
        """The input example given at registration, or None."""
        return self._frame_artifact("input_example", "input_example.parquet")

    def reference_data(self) -> pd.DataFrame | None:
        """The reference sample kept for drift baselines, or None."""
        return self._frame_artifact("reference", "reference.parquet")

    # -- actions -------------------------------------------------------------------------

    def promote(
        self, stage: str, *, reason: str | None = None, allow_archived: bool = False
    ) -> ModelVersion:
        """Move this version to ``stage``; promoting to production archives the current one.

        A policy rule that fails raises :class:`PromotionRefused`, changes nothing, and
        leaves an audit record of the attempt.
        """
        if stage not in STAGES:
            raise InvalidStage(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
        validation.optional_str(reason, "reason")
        ws = self._ws
        refused: list[tuple[str, str]] = []

        def write(con: duckdb.DuckDBPyConnection) -> tuple[int, str, list[int]]:
            row = query.lookup(con, self.model, self._ref)
            number = int(row["version"])
            current = str(row["stage"])
            if current == stage:
                return number, current, []
            if current == "archived" and not allow_archived:
                raise InvalidStage(
                    f"{self.model} v{number} is archived; pass allow_archived=True to bring "
                    f"it back to {stage}"
                )
            approvers = [
                r[0]
                for r in con.execute(
                    "SELECT approver FROM approvals WHERE model = ? AND version = ?",
                    [self.model, number],
                ).fetchall()
            ]
            policy = ws._policy_for(con, self.model)
            broken = may_promote(policy, stage, ws.actor()) or check(
                policy, stage, row["metrics"], reason, approvers
            )
            if broken:
                refused.append(broken)
                return number, current, []
            archived: list[int] = []
            if stage == "production":
                archived = [
                    int(r[0])
                    for r in con.execute(
                        "UPDATE versions SET stage = 'archived' WHERE model = ? AND "
                        "stage = 'production' RETURNING number",
                        [self.model],
                    ).fetchall()
                ]
                for old in archived:
                    ws._audit(
                        con,
                        "archive",
                        self.model,
                        old,
                        "production",
                        "archived",
                        f"replaced by v{number}",
                        None,
                    )
            con.execute(
                "UPDATE versions SET stage = ? WHERE model = ? AND number = ?",
                [stage, self.model, number],
            )
            ws._audit(con, "promote", self.model, number, current, stage, reason, None)
            return number, current, archived

        number, previous, archived = ws._store.write(write)
        if refused:
            rule, why = refused[0]
            ws._store.write(
                lambda con: ws._audit(
                    con,
                    "promote_refused",
                    self.model,
                    number,
                    previous,
                    stage,
                    reason,
                    {"rule": rule},
                )
            )
            ws._emit("promotion_refused", self.model, number, {"stage": stage, "rule": rule})
            raise PromotionRefused(
                f"promotion of {self.model} v{number} to {stage} refused by rule {rule!r}: {why}",
                rule,
            )
        for old in archived:
            ws._emit("archived", self.model, old, {"replaced_by": number})
        if previous != stage:
            ws._emit(
                "promoted", self.model, number, {"from": previous, "to": stage, "reason": reason}
            )
        return ModelVersion(ws, self.model, number)

    def archive(self, *, reason: str | None = None) -> ModelVersion:
        return self.promote("archived", reason=reason)

    def approve(self, *, comment: str | None = None) -> ModelVersion:
        """Record the current user's approval of this version (counted once per person)."""
        validation.optional_str(comment, "comment")
        ws = self._ws
        actor = ws.actor()

        refused: list[tuple[str, str]] = []

        def write(con: duckdb.DuckDBPyConnection) -> int:
            number = query.resolve(con, self.model, self._ref)
            broken = may_approve(ws._policy_for(con, self.model), actor)
            if broken:
                refused.append(broken)
                ws._audit(
                    con, "approve_refused", self.model, number, None, None, comment,
                    {"rule": broken[0]},
                )  # fmt: skip
                return number
            con.execute(
                "INSERT OR IGNORE INTO approvals VALUES (?, ?, ?, ?, ?)",
                [self.model, number, actor, ws.now(), comment],
            )
            ws._audit(con, "approve", self.model, number, None, None, comment, None)
            return number

        number = ws._store.write(write)
        if refused:
            rule, why = refused[0]
            raise PromotionRefused(f"approval of {self.model} v{number} refused: {why}", rule)
        ws._emit("approved", self.model, number, {"comment": comment})
        return ModelVersion(ws, self.model, number)

    def deploy(
        self,
        target: Any = "local",
        *,
        replicas: int | None = None,
        strategy: Any = None,
        name: str | None = None,
        timeout: float = 120.0,
        server: dict[str, Any] | None = None,
    ) -> Deployment:
        """Serve this version: a new deployment (named after the model unless ``name``),
        or a new revision of the existing one, rolled out by ``strategy`` (default
        :class:`mlops_nb.Rolling`) on ``target`` (``"local"``, :class:`mlops_nb.Local` or
        :class:`mlops_nb.Kubernetes`). ``replicas`` defaults to the deployment's current
        count (1 for a new one); ``server`` sets model server options such as
        ``{"workers": 4, "timeout_s": 10}`` (see :mod:`mlops_nb.deploy.options`). See
        :mod:`mlops_nb.deploy.core`."""
        from .deploy.core import deploy

        return deploy(self, target=target, replicas=replicas, strategy=strategy, name=name,
                      timeout=timeout, server=server)  # fmt: skip

    def approvals(self) -> pd.DataFrame:
        return self._ws._store.query_df(
            "SELECT approver, approved_at, comment FROM approvals WHERE model = ? AND version = ? "
            "ORDER BY approved_at",
            [self.model, self.number],
        )

    def set_alias(self, alias: str) -> ModelVersion:
        return Model(self._ws, self.model).set_alias(alias, self.number)


def _check_alias(alias: object) -> str:
    name = alias[1:] if isinstance(alias, str) and alias.startswith("@") else alias
    query.check_name(name, "alias")
    assert isinstance(name, str)
    if name in _RESERVED_ALIASES or name.isdigit() or validation.is_semver(name):
        raise InvalidArgument(
            f"alias {name!r} would be read as a version reference; choose a word such as "
            "'champion' or 'challenger'"
        )
    return name


def used_blobs(con: duckdb.DuckDBPyConnection, uri: str) -> set[str]:
    """Hex digests of every blob a recorded version in artifact store ``uri`` uses."""
    used = set()
    for digest, manifest in con.execute(
        "SELECT digest, manifest FROM versions WHERE artifact_uri = ?", [uri]
    ).fetchall():
        used.add(str(digest).removeprefix("sha256:"))
        used.update(str(f["sha256"]) for f in json.loads(manifest)["files"])
    return used


def _discard_unreferenced(ws: Workspace, hexdigests: list[str]) -> None:
    """Delete blobs a failed registration stored, unless a recorded version uses them
    (another registration of the same bytes may have committed meanwhile)."""
    if not hexdigests:
        return

    def unused(con: duckdb.DuckDBPyConnection) -> list[str]:
        rows = con.execute(
            "SELECT h FROM unnest(?::VARCHAR[]) t(h) WHERE NOT EXISTS (SELECT 1 FROM versions "
            "WHERE contains(manifest::VARCHAR, h) OR digest = 'sha256:' || h)",
            [hexdigests],
        ).fetchall()
        return [str(r[0]) for r in rows]

    try:
        doomed = ws._store.read(unused)
    except Exception:
        return  # the workspace cannot say: keeping a stray blob is the safe side
    ws.artifacts.discard(doomed)


def _frame(data: Any, what: str) -> pd.DataFrame:
    try:
        frame = as_frame(data)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"{what} must be tabular (DataFrame or 2-D array): {e}") from e
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgument(
            f"{what} has repeated column names {repeated}; rename them so each column has "
            "its own name"
        )
    return frame


def _write_parquet(frame: pd.DataFrame, path: Path, what: str) -> Path:
    import pyarrow as pa

    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    try:
        frame.to_parquet(path, index=False)
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise InvalidArgument(
            f"{what} cannot be stored as Parquet: {e}. A column mixing types (numbers and "
            "text in one object column) is the usual cause: convert it with "
            "df[col].astype(str) or to one numeric type"
        ) from e
    return path
