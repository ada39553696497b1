"""One stage of a pipeline: what runs, how long it may take, how often it is retried.

A stage runs one of three kinds of work, each as its own process group:

- ``script``: a ``.py`` file (run with this Python), a ``.sh`` file (bash), a ``.ipynb``
  notebook (papermill) or any other shell command line;
- ``notebook``: a notebook executed with papermill, ``parameters`` injected;
- ``fn``: a Python callable, pickled with cloudpickle and called in a child process as
  ``fn(ctx)`` with a :class:`~mlops_nb.pipelines.context.StageContext`.

>>> Stage("train", script="train.py", dependencies=["validate"], timeout_minutes=0.5)
<Stage train script=train.py after=validate>
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import PipelineSpecError

RETRY_CONDITIONS = ("error", "timeout")
SCRIPT_SUFFIXES = (".py", ".sh", ".ipynb")


def _names(value: str | Sequence[str] | None, what: str, stage: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(i, str) and i for i in items):
        raise PipelineSpecError(f"stage {stage!r}: {what} must be a list of non-empty strings")
    return tuple(items)


@dataclass(frozen=True)
class Stage:
    """A unit of work in a :class:`~mlops_nb.pipelines.Pipeline`.

    ``retry_count`` extra attempts are made after a failure that ``retry_on`` accepts
    ("error": a non-zero exit, "timeout", an exit code, or a callable taking the
    :class:`~mlops_nb.pipelines.records.Attempt`), waiting ``retry_backoff`` seconds,
    doubled each time up to ``retry_backoff_max``.

    Caching: a stage that declares ``inputs`` (file globs relative to the pipeline's
    folder) is skipped, with its earlier outputs, while the digests of those files, its
    code, the params, its environment and its dependencies' outputs are unchanged. A stage
    without ``inputs`` reads files nobody declared, so it runs every time unless
    ``cache=True`` says its code, params, environment and upstream outputs are all it
    depends on. ``cache=False`` always runs the stage.

    >>> Stage("prep", script="prep.py", inputs=["data/*.csv"]).caches
    True
    >>> Stage("prep", script="prep.py").caches, Stage("prep", script="prep.py", cache=True).caches
    (False, True)
    """

    name: str
    script: str | None = None
    fn: Callable[..., Any] | None = None
    notebook: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    environment: str | Mapping[str, str] | None = None
    dependencies: Sequence[str] = ()
    timeout_minutes: float | None = None
    retry_count: int = 0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 60.0
    retry_on: Sequence[str | int] | Callable[[Any], bool] = RETRY_CONDITIONS
    inputs: Sequence[str] = ()
    cache: bool | None = None
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        err = self._error
        if not isinstance(self.name, str) or not self.name.replace("-", "_").isidentifier():
            raise PipelineSpecError(
                f"stage name {self.name!r} must be letters, digits, '_' or '-' (not leading digit)",
                self.line,
            )
        kinds = [k for k in ("script", "fn", "notebook") if getattr(self, k) is not None]
        if len(kinds) != 1:
            err(
                "give exactly one of script=, notebook= or fn="
                + (f" (got {kinds})" if kinds else "")
            )
        if self.script is not None and (
            not isinstance(self.script, str) or not self.script.strip()
        ):
            err("script must be a non-empty string: a file (.py, .sh, .ipynb) or a command")
        if self.notebook is not None and not str(self.notebook).endswith(".ipynb"):
            err(f"notebook must be an .ipynb file, got {self.notebook!r}")
        if self.fn is not None and not callable(self.fn):
            err(f"fn must be callable, got {type(self.fn).__name__}")
        object.__setattr__(
            self, "dependencies", _names(self.dependencies, "dependencies", self.name)
        )
        object.__setattr__(self, "inputs", _names(self.inputs, "inputs", self.name))
        if self.cache is not None and not isinstance(self.cache, bool):
            err(
                f"cache must be true, false or left out (cached when inputs are declared), got {self.cache!r}"
            )
        if not isinstance(self.parameters, Mapping):
            err("parameters must be a mapping of names to values")
        if self.environment is not None and not isinstance(self.environment, str | Mapping):
            err("environment must be an image name or a mapping of environment variables")
        if self.timeout_minutes is not None and (
            isinstance(self.timeout_minutes, bool)
            or not isinstance(self.timeout_minutes, int | float)
            or not self.timeout_minutes > 0
        ):
            err(
                f"timeout_minutes must be a positive number (fractions allowed), got {self.timeout_minutes!r}"
            )
        if (
            isinstance(self.retry_count, bool)
            or not isinstance(self.retry_count, int)
            or self.retry_count < 0
        ):
            err(f"retry_count must be a non-negative integer, got {self.retry_count!r}")
        for what in ("retry_backoff", "retry_backoff_max"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                err(f"{what} must be a non-negative number of seconds, got {value!r}")
        if not callable(self.retry_on):
            conditions = (
                [self.retry_on] if isinstance(self.retry_on, str | int) else list(self.retry_on)
            )
            for c in conditions:
                if not (c in RETRY_CONDITIONS or (isinstance(c, int) and not isinstance(c, bool))):
                    err(f"retry_on entries must be 'error', 'timeout' or an exit code, got {c!r}")
            object.__setattr__(self, "retry_on", tuple(conditions))

    def _error(self, message: str) -> None:
        raise PipelineSpecError(f"stage {self.name!r}: {message}", self.line)

    @property
    def kind(self) -> str:
        """'python', 'shell', 'notebook' or 'callable'."""
        if self.fn is not None:
            return "callable"
        file = self.file or ""
        if self.notebook is not None or file.endswith(".ipynb"):
            return "notebook"
        return "python" if file.endswith(".py") else "shell"

    @property
    def caches(self) -> bool:
        """Whether a cache hit may skip this stage: ``cache``, else whether it has ``inputs``."""
        return bool(self.inputs) if self.cache is None else self.cache

    @property
    def cache_note(self) -> str | None:
        """Why this stage is never skipped as cached, or None when it may be."""
        if self.caches:
            return None
        if self.cache is False:
            return "not cached: cache is false"
        return "not cached: no inputs declared (declare inputs, or set cache: true)"

    @property
    def file(self) -> str | None:
        """The script or notebook file this stage needs, if it names one."""
        if self.notebook is not None:
            return self.notebook
        if self.script is None:
            return None
        first = self.script.split()[0]
        return first if first.endswith(SCRIPT_SUFFIXES) else None

    @property
    def env(self) -> dict[str, str]:
        return (
            {str(k): str(v) for k, v in self.environment.items()}
            if isinstance(self.environment, Mapping)
            else {}
        )

    @property
    def image(self) -> str | None:
        return self.environment if isinstance(self.environment, str) else None

    @property
    def timeout_seconds(self) -> float | None:
        return None if self.timeout_minutes is None else float(self.timeout_minutes) * 60.0

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        >>> Stage("s", script="x.sh", retry_backoff=2, retry_backoff_max=5).backoff(3)
        5.0
        """
        return float(min(self.retry_backoff * 2 ** (retry - 1), self.retry_backoff_max))

    def should_retry(self, attempt: Any) -> bool:
        """Whether the failed ``attempt`` (an Attempt record) qualifies for a retry."""
        if callable(self.retry_on):
            return bool(self.retry_on(attempt))
        conditions = tuple(self.retry_on)
        if attempt.verdict == "timeout":
            return "timeout" in conditions
        return "error" in conditions or attempt.exit_code in conditions

    def __repr__(self) -> str:
        what = self.script or self.notebook or getattr(self.fn, "__qualname__", "fn")
        after = f" after={','.join(self.dependencies)}" if self.dependencies else ""
        label = "fn" if self.fn else "notebook" if self.notebook else "script"
        return f"<Stage {self.name} {label}={what}{after}>"
