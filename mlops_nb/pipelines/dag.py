"""The stage graph: validation (unknown names, cycles) and the orders it implies.

>>> from mlops_nb.pipelines.stage import Stage
>>> g = Dag([Stage("a", script="true"), Stage("b", script="true", dependencies=["a"]),
...          Stage("c", script="true", dependencies=["a"])])
>>> g.layers()
[['a'], ['b', 'c']]
>>> sorted(g.downstream("a"))
['b', 'c']
"""

from __future__ import annotations

import graphlib
from collections.abc import Sequence

from ..errors import PipelineSpecError
from .stage import Stage


class Dag:
    """Stages keyed by name with their dependency edges, checked on construction."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        if not stages:
            raise PipelineSpecError("a pipeline needs at least one stage")
        self.stages: dict[str, Stage] = {}
        for s in stages:
            if not isinstance(s, Stage):
                raise PipelineSpecError(
                    f"stages must be mlops_nb.Stage objects, got {type(s).__name__}"
                )
            if s.name in self.stages:
                raise PipelineSpecError(f"stage name {s.name!r} is used twice", s.line)
            self.stages[s.name] = s
        for s in stages:
            for dep in s.dependencies:
                if dep not in self.stages:
                    known = ", ".join(self.stages)
                    raise PipelineSpecError(
                        f"stage {s.name!r} depends on unknown stage {dep!r}; known stages: {known}",
                        s.line,
                    )
                if dep == s.name:
                    raise PipelineSpecError(f"stage {s.name!r} depends on itself", s.line)
        sorter = graphlib.TopologicalSorter({s.name: s.dependencies for s in stages})
        try:
            self.order = list(sorter.static_order())
        except graphlib.CycleError as e:
            cycle = " -> ".join(e.args[1])
            first = self.stages[e.args[1][0]]
            raise PipelineSpecError(
                f"stage dependencies form a cycle: {cycle}; remove one of these dependencies",
                first.line,
            ) from e

    def layers(self) -> list[list[str]]:
        """Stages grouped by depth (longest path from a root), in declaration order."""
        depth: dict[str, int] = {}
        for name in self.order:
            deps = self.stages[name].dependencies
            depth[name] = 1 + max((depth[d] for d in deps), default=-1)
        out: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
        for name in self.stages:
            out[depth[name]].append(name)
        return out

    def downstream(self, name: str) -> set[str]:
        """Every stage that depends on ``name``, directly or not."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for s in self.stages.values():
                if current in s.dependencies and s.name not in found:
                    found.add(s.name)
                    frontier.append(s.name)
        return found

    def edges(self) -> list[tuple[str, str]]:
        return [(d, s.name) for s in self.stages.values() for d in s.dependencies]
