"""Health checks while a model server takes a large JSON request.

Prints exactly one JSON line on stdout; progress goes to stderr.

    python benchmarks/serve_bulk.py        # about 1 minute on 2 cores

In a temporary folder (removed afterwards) it registers an iris ``LogisticRegression``
(one ``[n, 4]`` FP64 input) and starts one model server (``python -m mlops_nb.serve``,
defaults, ``max_body_bytes`` raised to 128 MiB), without and with a payload log. For
each body size (``--mib``) and server it sends one V2 JSON request of that size from another process and, until
it is answered, polls ``/v2/health/live`` from this one over a kept-alive connection:
the live latencies (median, p99, max) say how long the event loop was held. The request
is parsed, and its answer encoded, in the server's helper process
(``mlops_nb.serve.bulk``); ``inline_parse_ms`` is what the same parse takes here, in
one call (``json.loads`` plus decode), which is how long the loop would be held if it
parsed the body itself. Target (``met``): every live answer within 100 ms for bodies up
to the default ``max_body_bytes`` (10 MiB).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from serve_pool import free_port, log, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 100.0
DEFAULT_MIB = 10.0  # ServeSpec.max_body_bytes
CLIENT = """
import http.client, json, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
body = open(path, "rb").read()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
t = time.perf_counter()
c.request("POST", "/v2/models/iris/infer", body, {"content-type": "application/json"})
r = c.getresponse()
data = r.read()
print(json.dumps({"status": r.status, "seconds": time.perf_counter() - t,
                  "answer_bytes": len(data)}))
"""


def body_of(mib: float) -> bytes:
    """A V2 request of about ``mib`` MiB: iris-like rows of four 12-digit values."""
    row = [5.123456789012, 3.123456789012, 1.423456789012, 0.223456789012]
    per_row = len(json.dumps(row)) + 2
    n = int(mib * 2**20 / per_row)
    tensor = {"name": "input", "shape": [n, 4], "datatype": "FP64", "data": [row] * n}
    return json.dumps({"inputs": [tensor]}).encode()


def inline_parse_ms(raw: bytes, signature: Any) -> float:
    from mlops_nb.serve.bulk import parse_here

    start = time.perf_counter()
    parse_here(raw, None, signature, ["predict"])
    return (time.perf_counter() - start) * 1000


def poll_while(port: int, client: subprocess.Popen[bytes]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    while client.poll() is None:
        start = time.perf_counter()
        conn.request("GET", "/v2/health/live")
        r = conn.getresponse()
        r.read()
        latencies.append((time.perf_counter() - start) * 1000)
        if r.status != 200:
            raise RuntimeError(f"live answered {r.status}")
    conn.close()
    return latencies


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=float, nargs="+", default=[10.0, 60.0], help="body sizes")
    p.add_argument("--rounds", type=int, default=2, help="requests per size")
    args = p.parse_args(argv)
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import mlops_nb
    from mlops_nb.serve.spec import ServeSpec

    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-bulk-"))
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        ws = mlops_nb.open(tmp / "ws.duckdb", create=True)
        X, y = load_iris(return_X_y=True)
        v = ws.model("iris").register(LogisticRegression(max_iter=1000).fit(X, y),
                                      input_example=X[:5])  # fmt: skip
        ports = {}
        for logging in (False, True):
            spool = str(tmp / "spool") if logging else None
            spec = ServeSpec.of(v, spool=spool, max_body_bytes=2**27)
            ports[logging] = port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "mlops_nb.serve", "--spec",
                 str(spec.write(tmp / f"s-{logging}.json")), "--port", str(port)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            wait_ready(port, procs[-1])
        result: dict[str, Any] = {"benchmark": "serve_bulk", "sizes": []}
        for mib, logging in [(m, lg) for m in args.mib for lg in (False, True)]:
            port = ports[logging]
            raw = body_of(mib)
            path = tmp / f"body-{mib:g}.json"
            path.write_bytes(raw)
            rounds = []
            for r in range(args.rounds):
                client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(path)],
                                          stdout=subprocess.PIPE)  # fmt: skip
                procs.append(client)
                latencies = poll_while(port, client)
                out = json.loads(client.communicate(timeout=600)[0])
                if out["status"] != 200:
                    raise RuntimeError(f"the {mib:g} MiB request answered {out['status']}")
                lat = sorted(latencies)
                rounds.append({"request_s": out["seconds"], "polls": len(lat),
                               "live_p50_ms": statistics.median(lat),
                               "live_p99_ms": lat[int(0.99 * (len(lat) - 1))],
                               "live_max_ms": lat[-1]})  # fmt: skip
                log(f"{mib:g} MiB, payload log {'on' if logging else 'off'}, round {r + 1}: "
                    f"{out['seconds']:.2f} s, {len(lat)} live polls, max {lat[-1]:.1f} ms")  # fmt: skip
            result["sizes"].append({
                "mib": round(len(raw) / 2**20, 1), "payload_log": logging,
                "request_s": round(statistics.median(x["request_s"] for x in rounds), 2),
                "polls": min(x["polls"] for x in rounds),
                "live_p50_ms": round(statistics.median(x["live_p50_ms"] for x in rounds), 2),
                "live_p99_ms": round(statistics.median(x["live_p99_ms"] for x in rounds), 1),
                "live_max_ms": round(max(x["live_max_ms"] for x in rounds), 1),
                "inline_parse_ms": round(inline_parse_ms(raw, v.signature), 0),
            })  # fmt: skip
        result["target"] = (
            f"every live answer within {TARGET_MS:g} ms for bodies up to the default "
            f"max_body_bytes ({DEFAULT_MIB:g} MiB)"
        )
        result["met"] = all(
            s["live_max_ms"] <= TARGET_MS for s in result["sizes"] if s["mib"] <= DEFAULT_MIB
        )
        result["cpus"] = os.cpu_count()
        result["runtime_s"] = round(time.perf_counter() - start, 1)
        result["loadavg_1m"] = {"start": load_before, "end": os.getloadavg()[0]}
        print(json.dumps(result), flush=True)
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
