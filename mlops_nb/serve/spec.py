"""What a model server needs to know, without opening the workspace's DuckDB file.

The deployer writes a :class:`ServeSpec` as JSON; the server reads it, fetches the
artifact from the artifact store and verifies every digest before it reports ready.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import log_features
from .redact import REDACT_PARAM, merge_rules

POOLS = ("threads", "processes")  # where predictions run: ServeSpec.pool

if TYPE_CHECKING:
    from ..registry import ModelVersion


@dataclass(frozen=True)
class ServeSpec:
    model: str
    version: int
    digest: str
    manifest: dict[str, Any]
    artifact_uri: str
    signature: dict[str, Any] | None = None
    s3_options: dict[str, Any] | None = None
    spool: str | None = None
    flush_rows: int = 10_000
    flush_seconds: float = 5.0
    max_buffer_rows: int = 200_000
    batching: bool = True
    max_batch: int = 64
    max_body_bytes: int = 10 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)
    # Predictions run on `workers` threads (or processes: pool="processes", for models
    # that hold the GIL; see mlops_nb.serve.processes), a lone request's on the event
    # loop's own thread while the loop is paused and watched (mlops_nb.serve.driver), at
    # most `workers` at once either way; at most `max_queue` requests wait for one
    # (then 503 with Retry-After); a request waits at most `timeout_s` (then 504); a
    # predict running longer than `stuck_after_s` makes the server report not ready.
    # (workers=0 predicts a lone request on the event loop: for benchmarks only.)
    workers: int = 2
    pool: str = "threads"
    max_queue: int = 256
    timeout_s: float | None = 60.0
    stuck_after_s: float = 30.0
    # /v2/health/live answers 503 once a predict has run longer than this, so a kubelet's
    # liveness probe restarts the container (a hung thread cannot be taken back). None:
    # live while the process runs. Kubernetes deployments set it to stuck_after_s plus
    # replace_unready_after_s, as the local target replaces a replica unready that long.
    live_stuck_after_s: float | None = None
    # Not ready (and 503 instead of an unlogged answer) while the spool cannot be written.
    log_required: bool = False
    spool_retry_max_s: float = 30.0  # backoff between failed spool writes grows to this
    # Per-feature redaction before the spool (see mlops_nb.serve.redact): the version's
    # `params["mlops.redact"]`, with these rules over them. The HMAC key is better left to
    # the environment.
    redact: dict[str, Any] | None = None
    redact_key: str | None = None

    @classmethod
    def of(cls, v: ModelVersion, **options: Any) -> ServeSpec:
        row = v.info()
        own = (row.get("params") or {}).get(REDACT_PARAM)
        if own is not None or options.get("redact") is not None:
            # The deployment's rules win, feature by feature, over the version's; checked
            # here, so no server is started with rules it cannot apply.
            options["redact"] = merge_rules(
                own, options.get("redact"), f"{v.model} v{row['version']}",
                log_features(row["signature"]),
            )  # fmt: skip
        return cls(
            model=v.model,
            version=int(row["version"]),
            digest=str(row["digest"]),
            manifest=row["manifest"],
            artifact_uri=str(row["artifact_uri"]),
            signature=row["signature"],
            s3_options=v._ws._s3_options,
            **options,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def write(self, path: Path) -> Path:
        tmp = path.with_suffix(".tmp")
        # S3 options may carry credentials: readable by the owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> ServeSpec:
        """The spec written by :meth:`write`; fields this version does not know (a spec
        written by a newer mlops_nb) are an error naming them, not ignored: one of them
        may be redaction.

        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "spec.json"
        >>> _ = p.write_text('{"model": "iris", "version": 1, "digest": "d", "manifest": {},'
        ...                  ' "artifact_uri": "a", "shiny": true}')
        >>> ServeSpec.read(p)
        Traceback (most recent call last):
        ...
        mlops_nb.errors.InvalidArgument: ... has field(s) ['shiny'] that mlops_nb ... does not know: ...
        """
        from .. import __version__
        from ..errors import InvalidArgument

        data = json.loads(Path(path).read_text())
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidArgument(
                f"server spec {path} has field(s) {unknown} that mlops_nb {__version__} does "
                "not know: it was written by a newer mlops_nb; install that version where the "
                "server runs (for Kubernetes, rebuild the image: Kubernetes.dockerfile(v))"
            )
        return cls(**data)
