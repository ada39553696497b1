"""``python -m mlops_nb.serve --spec spec.json --port 8080``: one model server process."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time

import uvicorn

from .app import create_app
from .spec import ServeSpec


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
    uvicorn.run(
        create_app(spec), host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=30,
    )  # fmt: skip


if __name__ == "__main__":
    main()
