"""Trigger filters: does this commit on this branch touch the paths a pipeline watches?

Evaluated against the git repository holding the pipeline file, with git itself
(``git rev-parse``, ``git diff --name-only``). Branch and path patterns are globs;
``**`` matches across folders (``src/**`` matches ``src/a/b.py``).

>>> Trigger(branch=("main", "release/*"), paths=("src/**",)).matches_branch("release/1.2")
True
>>> Trigger(paths=("src/**", "*.yaml")).matching_paths(["README.md", "src/m/a.py"])
['src/m/a.py']
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PipelineError, PipelineSpecError


def _glob(pattern: str) -> re.Pattern[str]:
    # fnmatch's '*' already crosses '/', so 'src/**' and 'src/*' both match nested files;
    # a leading '**/' must also match files at the top.
    body = fnmatch.translate(pattern.removeprefix("**/"))
    return re.compile(("(?:.*/)?" if pattern.startswith("**/") else "") + body)


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise PipelineError(f"cannot run git to evaluate the trigger: {e}") from e
    if done.returncode != 0:
        raise PipelineError(
            f"git {' '.join(args)} failed in {str(repo)!r}: {done.stderr.strip()}; run the "
            "pipeline inside a git repository, or without trigger="
        )
    return done.stdout.strip()


@dataclass(frozen=True)
class TriggerResult:
    """Whether a run fires, and why."""

    fired: bool
    reason: str
    commit: str | None = None
    branch: str | None = None
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trigger:
    """Branch globs and path globs; empty means any."""

    branch: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, value: Any, line: int | None = None) -> Trigger:
        if value is None:
            return cls()
        if isinstance(value, Trigger):
            return value
        if not isinstance(value, Mapping):
            raise PipelineSpecError("trigger must be a mapping with 'branch' and/or 'paths'", line)
        unknown = set(value) - {"branch", "paths"}
        if unknown:
            raise PipelineSpecError(f"unknown trigger key {sorted(unknown)[0]!r}", line)

        def names(v: Any, what: str) -> tuple[str, ...]:
            items = [v] if isinstance(v, str) else list(v or [])
            if not all(isinstance(i, str) and i for i in items):
                raise PipelineSpecError(f"trigger {what} must be strings (globs)", line)
            return tuple(items)

        return cls(names(value.get("branch"), "branch"), names(value.get("paths"), "paths"))

    def matches_branch(self, branch: str) -> bool:
        return not self.branch or any(_glob(b).fullmatch(branch) for b in self.branch)

    def matching_paths(self, changed: Sequence[str]) -> list[str]:
        if not self.paths:
            return list(changed)
        return [c for c in changed if any(_glob(p).fullmatch(c) for p in self.paths)]

    def evaluate(self, repo: Path, given: Mapping[str, Any]) -> TriggerResult:
        """Decide for ``given`` = ``{"commit": sha, "branch": name, "before": sha}`` (each
        optional: HEAD, the checked-out branch and the commit's first parent by default)."""
        unknown = set(given) - {"commit", "branch", "before"}
        if unknown:
            raise PipelineSpecError(
                f"unknown trigger field {sorted(unknown)[0]!r}; use commit, branch and before"
            )
        top = Path(_git(repo, "rev-parse", "--show-toplevel"))
        commit = _git(top, "rev-parse", "--verify", f"{given.get('commit') or 'HEAD'}^{{commit}}")
        branch = given.get("branch") or _git(top, "rev-parse", "--abbrev-ref", "HEAD")
        if not self.matches_branch(branch):
            return TriggerResult(False, f"branch {branch!r} does not match {list(self.branch)}",
                                 commit, branch)  # fmt: skip
        before = given.get("before")
        if before:
            changed = _git(top, "diff", "--name-only", before, commit).splitlines()
        else:
            # The root commit has no parent: everything in it changed.
            changed = _git(top, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root",
                           commit).splitlines()  # fmt: skip
        hits = self.matching_paths(changed)
        if not hits:
            return TriggerResult(False, f"no changed path matches {list(self.paths)}", commit,
                                 branch, tuple(changed))  # fmt: skip
        return TriggerResult(True, f"{len(hits)} changed path(s) match", commit, branch,
                             tuple(hits))  # fmt: skip
