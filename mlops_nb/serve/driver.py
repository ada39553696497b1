"""The event loop's own thread predicts a lone request, with the loop paused and watched.

Handing a prediction to a worker thread costs two thread wake-ups, each with its GIL
hand-over: about 7% of a one-row scikit-learn request on a one-core VM. A lone request
(nothing else in flight) does not need another thread to predict, only someone to keep
answering health checks and new requests if its prediction turns out slow. So the
:class:`LoopDriver` runs the event loop in turns: the coroutine of a lone request hands
its job over and stops the loop; the thread that ran the loop predicts (no wake-up, no
GIL hand-over), settles the request's future and runs the loop again. Predictions still
never run *on* the loop: while one runs, no callback is pending on that thread.

A standby thread watches each pause. A pause longer than ``rescue_after`` (a slow or
hung model) makes it take the loop over and run it, so health checks answer within a few
milliseconds (plus, for a model holding the GIL, the interpreter's switch interval); the
predicting thread hands its answer to the loop like any worker and becomes the standby.
While no standby is watching (the old runner is still in a hung predict) lone requests go
to the worker pool.

Watching must not cost the fast path a wake-up either: the standby is not told of a
pause, it polls every ``rescue_after`` (without waking anyone) while lone requests keep
coming, and after ``idle_after`` seconds without one it sleeps until the next.

The loop runs in daemon threads; :meth:`LoopDriver.serve` blocks the calling thread (the
process's main one, which keeps its signal handlers) until the server's coroutine ends.

>>> import asyncio
>>> driver = LoopDriver(asyncio.new_event_loop())
>>> async def main():
...     return await driver.run(sum, [1, 2])
>>> driver.serve(main())
3
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .workers import call, settle

T = TypeVar("T")
_Job = tuple[Callable[[Any], Any], Any, "asyncio.Future[Any]"]

RESCUE_AFTER = 0.005  # seconds a paused loop waits before the standby runs it
IDLE_AFTER = 1.0  # seconds without a lone request before the standby stops polling


class LoopDriver:
    """Runs one event loop in turns with lone predictions; see the module's docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        rescue_after: float = RESCUE_AFTER,
        idle_after: float = IDLE_AFTER,
        name: str = "mlops-nb-loop",
    ) -> None:
        self.loop = loop
        self.rescue_after = rescue_after
        self.idle_after = idle_after
        self._name = name
        self._lock = threading.Lock()  # guards every field below
        self._cond = threading.Condition(self._lock)  # the standby waits on it
        self._runner: int | None = None  # the thread that owns the loop
        self._job: _Job | None = None  # handed over by a coroutine, taken by the runner
        self._paused_since: float | None = None  # the loop is stopped for a predict
        self._predicting: dict[int, float] = {}  # thread -> since, rescued ones included
        self._watching = False  # a standby thread watches pauses
        self._asleep = False  # ... and sleeps until a lone request comes
        self._last_lone = 0.0
        self._main: asyncio.Task[Any] | None = None
        self._done = threading.Event()
        self._crash: BaseException | None = None
        self.paused = 0  # lone predicts run with the loop paused
        self.rescued = 0  # of which the standby took the loop over

    # -- from the loop -------------------------------------------------------------------

    def available(self) -> bool:
        """A lone request may predict here now (on the loop's thread, as a coroutine)."""
        return self._watching and self._job is None and not self._predicting

    def run(self, fn: Callable[[Any], T], arg: Any) -> asyncio.Future[T]:
        """``fn(arg)``'s future: it runs on this thread once this turn of the loop is over
        (the loop stops); only when :meth:`available`, on the driven loop."""
        loop = self.loop
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._job is not None:
                raise RuntimeError("a lone prediction is already handed over")
            self._job = (fn, arg, future)
            self._last_lone = time.monotonic()
            if self._asleep:
                self._cond.notify()
        loop.stop()  # after this turn of the loop: the runner takes the job
        return future

    # -- figures, from any thread --------------------------------------------------------

    @property
    def running(self) -> int:
        """Lone predicts running or handed over (0 or 1, or 2 while a rescued one runs)."""
        with self._lock:
            return (self._job is not None) + len(self._predicting)

    def longest(self) -> float:
        """Seconds the oldest lone predict has been running (0 when none runs)."""
        now = time.monotonic()
        return max((now - s for s in list(self._predicting.values())), default=0.0)

    # -- threads -------------------------------------------------------------------------

    def serve(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` on the loop to its end, in the driver's threads; then close the loop."""
        task = self._main = self.loop.create_task(main)
        task.add_done_callback(lambda _: self.loop.stop())
        with self._cond:
            self._runner = -1  # the first thread's, once it runs
        threads = [
            threading.Thread(target=self._guarded, args=(self._drive,), daemon=True,
                             name=f"{self._name}-0"),
            threading.Thread(target=self._guarded, args=(self._standby,), daemon=True,
                             name=f"{self._name}-1"),
        ]  # fmt: skip
        for t in threads:
            t.start()
        # Lock waits let signal handlers run: the calling thread keeps its signals.
        self._done.wait()
        crash = self._crash
        if isinstance(crash, SystemExit | KeyboardInterrupt):
            raise crash  # uvicorn's own exit (a port in use: sys.exit(3)), as it meant it
        if crash is not None:
            raise RuntimeError(f"the event loop's thread failed: {crash!r}") from crash
        out: T = task.result()
        return out

    def _guarded(self, target: Callable[[], None]) -> None:
        """A thread's work. If it fails, :meth:`serve` raises the error in the calling
        thread (it does not hang, and the thread does not report it a second time)."""
        try:
            target()
        except BaseException as e:
            with self._cond:
                if not self._done.is_set():
                    self._crash = e
                    self._done.set()
                self._cond.notify_all()
            with contextlib.suppress(Exception):  # another thread may still run it
                if not self.loop.is_running():
                    self.loop.close()

    def _drive(self) -> None:
        """Run the loop until the server ends or this thread loses it to the standby."""
        me, loop = threading.get_ident(), self.loop
        with self._cond:
            if self._runner == -1:
                self._runner = me
        asyncio.set_event_loop(loop)
        while True:
            loop.run_forever()
            assert self._main is not None
            if self._main.done():
                self._finish()
                return
            with self._lock:
                job = self._job
                if job is None:  # stopped by someone else: carry on
                    continue
                self._paused_since = self._predicting[me] = time.monotonic()
                self._job = None
                self.paused += 1
            fn, arg, future = job
            result, error = call(fn, arg)
            with self._lock:
                del self._predicting[me]
                mine = self._runner == me
                if mine:
                    self._paused_since = None
            if mine:
                settle(future, result, error)
                continue
            # The standby runs the loop now: answer through it, and watch in its place.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, future, result, error)
            self._standby()
            return

    def _standby(self) -> None:
        """Watch pauses; take the loop over when one is overdue, then drive it."""
        me = threading.get_ident()
        with self._cond:
            self._watching = True
            while not self._done.is_set():
                now = time.monotonic()
                since = self._paused_since
                if since is not None and now - since >= self.rescue_after:
                    self._runner, self._paused_since = me, None
                    self._watching = False
                    self.rescued += 1
                    break
                if since is not None:
                    self._cond.wait(self.rescue_after - (now - since))
                elif now - self._last_lone < self.idle_after or self._job is not None:
                    self._cond.wait(self.rescue_after)
                else:
                    self._asleep = True
                    self._cond.wait()
                    self._asleep = False
            else:
                self._watching = False
                return
        self._drive()

    def _finish(self) -> None:
        """The server's coroutine has ended: what asyncio.run does after it, then release
        the calling thread (and the standby)."""
        loop = self.loop
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            with self._cond:
                self._done.set()
                self._cond.notify_all()
