"""nbval runs these notebooks in kernels started from this process, and their checked
cells compare what they print: a progress bar's widget would join that output. The bars
are off in these kernels (users see them; ``tests/widgets/test_progress.py`` tests them)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # The kernel starts with the notebook's first cell, from this process's environment.
    before = os.environ.get("MLOPS_NB_PROGRESS")
    os.environ["MLOPS_NB_PROGRESS"] = "off"
    try:
        return (yield)
    finally:
        if before is None:
            os.environ.pop("MLOPS_NB_PROGRESS", None)
        else:
            os.environ["MLOPS_NB_PROGRESS"] = before
