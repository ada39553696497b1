"""Processes meant to outlive the process that started them.

A deployment's router and rollout controller are started with ``MLOPS_NB_DETACHED=1`` in
their environment; whatever reaps a finished job's leftover processes (a pipeline stage's,
see :mod:`mlops_nb.pipelines.reaper`) leaves such a process running.

>>> environment({"PATH": "/bin"})
{'PATH': '/bin', 'MLOPS_NB_DETACHED': '1'}
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DETACHED = "MLOPS_NB_DETACHED"


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) marked detached."""
    return {**(os.environ if base is None else base), DETACHED: "1"}
