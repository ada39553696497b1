"""Progress bars for long work: a widget in notebooks, a text bar in terminals, quiet when piped.

``MLOPS_NB_PROGRESS`` chooses explicitly: ``auto`` (default), ``notebook``, ``text`` or
``off``. A bar appears only once the work has run for ``delay`` seconds, so quick calls
leave no trace in a notebook's saved outputs.

>>> sum(progress(range(3), desc="adding"))  # piped (as doctests are): no bar, same values
3
>>> mode({"MLOPS_NB_PROGRESS": "off"}, tty=True, notebook=True)
'off'
>>> mode({}, tty=False, notebook=False)
'off'
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from .errors import InvalidArgument

T = TypeVar("T")
MODES = ("auto", "notebook", "text", "off")
DELAY = 0.5


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Voila, papermill)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel always brings IPython
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def mode(
    env: Mapping[str, str] | None = None, *, tty: bool | None = None, notebook: bool | None = None
) -> str:
    """Which kind of bar this process shows: ``notebook``, ``text`` or ``off``."""
    env = os.environ if env is None else env
    chosen = env.get("MLOPS_NB_PROGRESS", "auto").strip().lower() or "auto"
    if chosen not in MODES:
        raise InvalidArgument(
            f"MLOPS_NB_PROGRESS={chosen!r} is not understood; use one of {', '.join(MODES)}"
        )
    if chosen != "auto":
        return chosen
    if _in_notebook() if notebook is None else notebook:
        return "notebook"
    is_tty = sys.stderr.isatty() if tty is None else tty
    return "text" if is_tty else "off"


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    delay: float = DELAY,
) -> Iterator[T]:
    """Iterate ``iterable`` with a progress bar fitting where the code runs."""
    chosen = mode()
    if chosen == "off":
        yield from iterable
        return
    bar = _bar(chosen, total=total, desc=desc, unit=unit, delay=delay, iterable=iterable)
    try:
        yield from bar
    finally:
        bar.close()


def _bar(chosen: str, **kwargs: Any) -> Any:
    if chosen == "notebook":
        from tqdm.notebook import tqdm as notebook_tqdm

        # The widget bar goes away when done (leave=False): saved notebooks stay small.
        return notebook_tqdm(leave=False, **kwargs)
    from tqdm import tqdm as text_tqdm

    return text_tqdm(file=sys.stderr, **kwargs)


class Bar:
    """A bar moved to a position (a rollout's weight), drawn once ``delay`` seconds have
    passed (quick waits leave nothing behind); nothing at all when progress is off.

    >>> bar = Bar(total=100, desc="rollout")  # piped: off
    >>> bar.move(50, "progressing"); bar.close()
    """

    def __init__(self, *, total: float, desc: str, unit: str = "%", delay: float = DELAY) -> None:
        self._mode = mode()
        self._kwargs = {"total": total, "desc": desc, "unit": unit}
        self._show_at = time.monotonic() + delay
        self._bar: Any = None

    def move(self, position: float, text: str = "") -> None:
        if self._mode == "off":
            return
        if self._bar is None:
            if time.monotonic() < self._show_at:
                return
            self._bar = _bar(self._mode, delay=0.0, **self._kwargs)
        self._bar.n = min(position, self._bar.total)
        self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def wait_until(
    done: Callable[[], tuple[bool, float, str]],
    *,
    total: float = 100.0,
    desc: str = "waiting",
    timeout: float = 120.0,
    poll: float = 0.25,
    delay: float = 0.0,
) -> bool:
    """Poll ``done()`` -> (finished, position out of ``total``, status text) with a bar.

    Returns True when finished, False at the timeout. Used for waits that have no
    iterable, such as a canary moving from weight to weight.
    """
    bar = Bar(total=total, desc=desc, delay=delay)
    deadline = time.monotonic() + timeout
    try:
        while True:
            finished, position, text = done()
            bar.move(position, text)
            if finished:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
    finally:
        bar.close()


def watch_rollout(dep: Any, timeout: float = 120.0) -> Any:
    """Wait for ``dep``'s rollout with a bar of its traffic weight, then ``dep.wait()``
    (which raises if the rollout failed).

    Reads only ``dep.status()["rollout"]`` (strategy, weight, phase, message).
    """
    from .deploy.state import TERMINAL

    def done() -> tuple[bool, float, str]:
        rollout = dep.status()["rollout"]
        if not rollout:
            return True, 100.0, "no rollout"
        r = dict(rollout)
        return r.get("phase") in TERMINAL, float(r.get("weight") or 0), str(r.get("phase"))

    wait_until(done, desc=f"rollout {dep.name}", timeout=timeout)
    return dep.wait(timeout=timeout)
