"""``python -m mlops_nb.kube.emulator --port 8001``: an emulated cluster until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from . import Emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_nb.kube.emulator")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--namespace", action="append", default=[], help="create this namespace")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    parser.add_argument("--simulate", action="store_true", help="simulate pods, run no process")
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    emu = Emulator(args.port, processes=not args.simulate,
                   namespaces=("default", *args.namespace))  # fmt: skip
    if args.kubeconfig:  # before the port opens, so a client that sees the port finds it
        emu.kubeconfig(args.kubeconfig)
    with emu:
        print(f"Kubernetes API emulator on {emu.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()


if __name__ == "__main__":
    main()
