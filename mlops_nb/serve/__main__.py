"""``python -m mlops_nb.serve --spec spec.json --port 8080``: one model server process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import time
from types import FrameType

import uvicorn

from .app import create_app
from .driver import LoopDriver
from .spec import ServeSpec
from .workers import WorkerPool


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_nb.serve")
    parser.add_argument("--spec", required=True, help="ServeSpec JSON written by the deployer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="stop gracefully when this process (the router) is gone",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if args.parent_pid:
        _watch_parent(args.parent_pid)
    serve(ServeSpec.read(args.spec), args.host, args.port, args.log_level)


def _watch_parent(parent: int) -> None:
    """Replicas must not outlive their router: stop (gracefully) once it is gone."""

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=loop, name="mlops-nb-parent", daemon=True).start()


def serve(spec: ServeSpec, host: str, port: int, log_level: str = "warning") -> None:
    """uvicorn on a :class:`~.driver.LoopDriver`: lone requests predict on the loop's thread
    with the loop paused and watched. The loop runs in the driver's threads; this one
    keeps the signals (SIGTERM, SIGINT: a graceful stop, as ``uvicorn.run`` does)."""
    app = create_app(spec)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=30)  # fmt: skip
    server = uvicorn.Server(config)
    driver = LoopDriver(_new_loop())
    pool = app.state.server.pool
    if isinstance(pool, WorkerPool):
        pool.lone = driver
    caught: list[int] = []

    def on_signal(sig: int, frame: FrameType | None) -> None:
        caught.append(sig)
        server.handle_exit(sig, frame)

    handled = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, on_signal) for sig in handled}
    try:
        driver.serve(server.serve())
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    # Stopped by a signal: end as its default action would, as uvicorn.run does.
    for number in reversed(caught):
        signal.raise_signal(number)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (uvicorn[standard]), as uvicorn's loop="auto" picks."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main()
