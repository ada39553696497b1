"""Large request bodies parsed, and large answers encoded, in a helper process.

``json.loads`` and ``json.dumps`` hold the GIL for their whole call: a body of tens of
megabytes would take the event loop's thread, and with it health checks and every other
request, for seconds, and a thread would not help. A body over :data:`OFF_LOOP_BYTES`
(or an answer of more than :data:`OFF_LOOP_ROWS` rows) goes to one helper process
(``concurrent.futures.ProcessPoolExecutor``, spawned at the first such request), which
sends the decoded batch (numpy arrays: a copy, no parse) or the encoded body back.

A request error found there comes back as its status and messages (an exception's
pickle would drop what a redacted log may keep); a helper process that dies (out of
memory) fails only its request, with a 503, and the next large one starts a new helper.
The helper exits when the server does, even one that was killed.

>>> parse(b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]}]}',
...       None, None, ["predict"])[1].columns["x"].tolist()
[1.0, 2.0]
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from . import binary
from .v2 import BadRequest, Batch, check_outputs, decode

# Smaller bodies take the loop a few milliseconds at most: parsed where they arrive.
OFF_LOOP_BYTES = 256 * 1024
OFF_LOOP_ROWS = 10_000


class HelperDied(Exception):
    """The helper process ended during a request (HTTP 503, Retry-After)."""


def parse_here(
    raw: bytes, header: str | None, signature: dict[str, Any] | None, available: list[str]
) -> tuple[Batch, list[str]]:
    """The request's batch and the outputs it asks for, or :class:`BadRequest`."""
    head, blob = binary.split(raw, header)
    try:
        body = json.loads(head)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"body is not valid JSON (or nested too deeply): {e}") from e
    batch = decode(body, signature, blob)
    return batch, check_outputs(batch, available)


def parse(
    raw: bytes, header: str | None, signature: dict[str, Any] | None, available: list[str]
) -> tuple[str, Any, Any]:
    """In the helper: ``("ok", batch, outputs)``, or ``("bad", status, (message,
    withheld))`` for a request error."""
    try:
        return "ok", *parse_here(raw, header, signature, available)
    except BadRequest as e:
        return "bad", e.status, (str(e), e.withheld)


def _watch_parent(parent: int) -> None:
    """In the helper: exit once the server is gone (it may have been killed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="mlops-nb-bulk-parent", daemon=True).start()


class Bulk:
    """The helper process of one server, started at its first large request."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent, initargs=(os.getpid(),),
            )  # fmt: skip
        return self._pool

    async def _call(self, fn: Any, *args: Any) -> Any:
        pool = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool as e:
            if self._pool is pool:
                self._pool = None  # the next large request starts a new helper
            pool.shutdown(wait=False)
            raise HelperDied(f"the process decoding large requests ended: {e}") from e

    async def parse(
        self, raw: bytes, header: str | None, signature: dict[str, Any] | None,
        available: list[str],
    ) -> tuple[Batch, list[str]]:  # fmt: skip
        outcome, first, second = await self._call(parse, raw, header, signature, available)
        if outcome == "bad":
            message, withheld = second
            error = BadRequest(message, withheld=withheld)
            error.status = first
            raise error
        return first, second

    async def encode(
        self, payload: dict[str, Any], outputs: list[tuple[str, np.ndarray[Any, Any]]],
        binary_out: Any,
    ) -> tuple[bytes, int | None]:  # fmt: skip
        content, header = await self._call(binary.encode, payload, outputs, binary_out)
        return content, header

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
