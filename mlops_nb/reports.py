"""Run notebooks headless (papermill) and export them as self-contained HTML reports.

The executed notebook keeps no widget state: each view's output carries its own static
HTML copy (tables and SVG charts), which is what an export, GitHub's viewer or a reader
of the saved file sees. Widget state would add megabytes and show nothing offline.

The HTML export drops the live-widget output in favour of that static copy, and every
script (nbconvert's come from CDNs) and remote stylesheet, so the report opens offline
and makes no request at all.
"""

from __future__ import annotations

import copy
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidArgument, NotebookFailed

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# The report is static: scripts (MathJax, mermaid, require.js from CDNs) go, and so do
# stylesheets from the web. Tables and SVG charts need neither.
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.I | re.S)
_REMOTE_LINK = re.compile(r"<link[^>]*\bhref=[\"']https?://[^>]*>", re.I)


@dataclass(frozen=True)
class Run:
    notebook: Path
    html: Path
    error: NotebookFailed | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _require() -> None:
    try:
        import nbconvert  # noqa: F401
        import papermill  # noqa: F401
    except ImportError as e:
        raise InvalidArgument(
            "running notebooks needs papermill and nbconvert: pip install 'mlops-nb[notebooks]'"
        ) from e


def execute(
    notebook: str | Path, out_dir: str | Path, parameters: dict[str, Any] | None = None,
    *, cwd: str | Path | None = None, timeout: float = 600.0, name: str | None = None,
) -> Run:  # fmt: skip
    """Run ``notebook`` with ``parameters``; write ``<name>.ipynb`` and ``<name>.html``.

    A cell that raises does not raise here: the run comes back with ``error`` set, after
    both files were written (so a failed scheduled run still leaves its report).
    """
    _require()
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(notebook)
    if not source.is_file():
        raise InvalidArgument(f"notebook {str(source)!r} does not exist")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = name or source.stem
    executed, html = folder / f"{stem}.ipynb", folder / f"{stem}.html"
    error: NotebookFailed | None = None
    try:
        papermill.execute_notebook(
            str(source), str(executed), parameters=parameters or {}, kernel_name="python3",
            cwd=str(cwd or folder), progress_bar=False, start_timeout=120,
            execution_timeout=timeout, store_widget_state=False,
        )  # fmt: skip
    except PapermillExecutionError as e:
        error = NotebookFailed(f"{source.name} failed: {e.ename}: {e.evalue}", e.ename, e.evalue)
    except Exception as e:  # a cell past the timeout, a kernel that died: failed runs too
        ename = type(e).__name__
        error = NotebookFailed(f"{source.name} failed: {ename}: {e}", ename, str(e))
    if not executed.is_file():
        # Nothing was executed (the kernel never started): the notebook as it was given.
        shutil.copyfile(source, executed)
    export_html(executed, html)
    return Run(executed, html, error)


def static_copy(nb: Any) -> Any:
    """The notebook with live-widget outputs reduced to their static HTML copies."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                data.pop(WIDGET_MIME)
                if set(data) <= {"text/plain"}:
                    # A progress bar or a bare widget without a static copy: nothing to show.
                    continue
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    return nb


def export_html(executed: str | Path, html: str | Path, *, exclude_input: bool = False) -> Path:
    """An offline HTML report of an executed notebook (no remote scripts, no widgets)."""
    _require()
    import nbformat
    from nbconvert import HTMLExporter

    nb = static_copy(nbformat.read(str(executed), as_version=4))
    exporter = HTMLExporter(template_name="lab", exclude_input=exclude_input)
    body, _ = exporter.from_notebook_node(nb)
    for pattern in (_SCRIPT, _REMOTE_LINK):
        body = pattern.sub("", body)
    target = Path(html)
    target.write_text(body, encoding="utf-8")
    return target
