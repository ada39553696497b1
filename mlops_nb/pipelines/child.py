"""The child process of a callable or notebook stage: ``python -m mlops_nb.pipelines.child``.

``callable <pickle>`` unpickles a function and calls it with the stage context (a returned
mapping is recorded as output values); ``notebook <in> <out> <params.json>`` executes a
notebook with papermill. Both exit non-zero with the error printed on failure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import cloudpickle

from .context import context


def main(argv: list[str]) -> int:
    ctx = context()
    if argv[0] == "callable":
        fn = cloudpickle.loads(Path(argv[1]).read_bytes())
        result = fn(ctx)
        if isinstance(result, Mapping):
            for key, value in result.items():
                ctx.output(str(key), value)
        return 0
    if argv[0] == "notebook":
        import papermill
        from papermill.exceptions import PapermillExecutionError

        params = json.loads(Path(argv[3]).read_text())
        try:
            papermill.execute_notebook(
                argv[1], argv[2], parameters=params, cwd=str(Path(argv[1]).parent),
                progress_bar=False, stdout_file=sys.stdout, stderr_file=sys.stderr,
            )  # fmt: skip
        except PapermillExecutionError as e:
            # The cell's own traceback says it all; papermill's frames add nothing.
            print(f"notebook failed; executed copy in {argv[2]}\n{e}", file=sys.stderr)
            return 1
        return 0
    print(f"unknown stage kind {argv[0]!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
