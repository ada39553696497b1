"""One scheduled monitoring run, headless: what ``mlops-nb monitor`` does.

The notebook runs with papermill; its executed copy and HTML report go to ``out``: a
folder (``<out>/<model>-<start>.ipynb`` and ``.html``) or ``s3://bucket/prefix``, where
they are written to a temporary folder first and then uploaded under one key per run,
``<prefix>/<model>/<start>/<notebook>.ipynb`` and ``.html`` (``<start>`` is the start
time in UTC, ``20260102T030405Z``). Both are written and uploaded for breached and
failed runs too: a failed run's notebook is the evidence.

The exit status tells a scheduler a breach from a crash:

- ``HEALTHY`` (0): every check passed;
- ``BREACHED`` (1): the notebook raised :class:`~mlops_nb.errors.ThresholdBreached`;
- ``FAILED`` (2): anything else (no such model or workspace, a cell raised, bad
  parameters, the upload failed).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from ..errors import InvalidArgument, StorageError

HEALTHY, BREACHED, FAILED = 0, 1, 2


@dataclass(frozen=True)
class Outcome:
    """Where a run's executed notebook and report went, and how it ended."""

    notebook: str
    html: str
    status: int
    message: str = ""


def run(source: str, model: str, parameters: dict[str, Any], out: str) -> Outcome:
    """Run ``source`` (a path, or ``s3://...``) for ``model`` and put its files in ``out``."""
    from .. import s3

    if out.startswith("s3://") and not urlparse(out).netloc:
        raise InvalidArgument(f"expected s3://bucket/prefix, got {out!r}")
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    scratch = Path(tempfile.mkdtemp(prefix="mlops-nb-monitor-"))
    try:
        notebook = Path(source)
        if source.startswith("s3://"):
            notebook = s3.download(source, scratch / source.rstrip("/").rsplit("/", 1)[-1])
        if not out.startswith("s3://"):
            return _execute(notebook, out, parameters, name=f"{model}-{stamp}")
        local = _execute(notebook, scratch / "out", parameters, name=notebook.stem)
        key = f"{model}/{stamp}"
        files = {f"{key}/{Path(p).name}": Path(p) for p in (local.notebook, local.html)}
        try:
            uploaded = s3.upload(files, out)
        except StorageError as e:
            # Kept on local disk instead, so the run's evidence is not lost with the folder.
            kept = Path(tempfile.mkdtemp(prefix=f"mlops-nb-monitor-{model}-{stamp}-"))
            paths = [str(shutil.copy2(path, kept / path.name)) for path in files.values()]
            found = f" (the run itself: {local.message})" if local.message else ""
            return Outcome(paths[0], paths[1], FAILED, f"upload failed: {e}{found}")
        return Outcome(uploaded[0], uploaded[1], local.status, local.message)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _execute(notebook: Path, folder: str | Path, parameters: dict[str, Any], name: str) -> Outcome:
    from ..reports import execute

    result = execute(notebook, folder, parameters, name=name)
    if result.error is None:
        return Outcome(str(result.notebook), str(result.html), HEALTHY)
    status = BREACHED if result.error.ename == "ThresholdBreached" else FAILED
    message = f"{result.error.ename}: {result.error.evalue}"
    return Outcome(str(result.notebook), str(result.html), status, message)
