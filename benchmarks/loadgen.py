"""HTTP load for the benchmarks: ``wrk`` when it is on PATH, else a Python generator.

``run(port, path, body, concurrency, warmup, duration)`` returns requests/s, p50/p99 in
ms and the request count. The Python generator (``python benchmarks/loadgen.py PORT ...``
in a subprocess, uvloop, raw keep-alive connections, one request in flight per
connection) is slower than wrk and competes harder for the CPU: prefer wrk
(``apt-get install wrk``); the result says which one ran.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(port: int, path: str, body: bytes, concurrency: int, warmup: float,
        duration: float) -> dict[str, Any]:  # fmt: skip
    exe = shutil.which("wrk")
    if exe:
        _wrk(exe, port, path, body, concurrency, warmup)  # warm-up, discarded
        return _wrk(exe, port, path, body, concurrency, duration)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(port), path, body.decode(),
         str(concurrency), str(warmup), str(duration)],
        capture_output=True, text=True, check=True, timeout=warmup + duration + 120,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def _wrk(exe: str, port: int, path: str, body: bytes, concurrency: int,
         duration: float) -> dict[str, Any]:  # fmt: skip
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        out = subprocess.run(
            [exe, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency",
             "-s", fh.name, f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, check=True, timeout=duration + 60,
        ).stdout  # fmt: skip
    finally:
        Path(fh.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": _wrk_ms(out, "50%"), "p99_ms": _wrk_ms(out, "99%"),
            "requests": count, "non_2xx": int(errors.group(1)) if errors else 0,
            "generator": "wrk"}  # fmt: skip


def _wrk_ms(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def _client(port: int, request: bytes, stop: float, record: list[float] | None,
                  counts: list[int]) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            if record is not None:
                record.append((time.perf_counter() - t0) * 1000)
                counts[0] += 1
                if not head.startswith(b"HTTP/1.1 200"):
                    counts[1] += 1
    finally:
        writer.close()


async def _load(port: int, path: str, body: bytes, concurrency: int, warmup: float,
                duration: float) -> dict[str, Any]:  # fmt: skip
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    counts = [0, 0]
    await asyncio.gather(*(_client(port, request, time.perf_counter() + warmup, None, counts)
                           for _ in range(concurrency)))  # fmt: skip
    latencies: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(port, request, t0 + duration, latencies, counts)
                           for _ in range(concurrency)))  # fmt: skip
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / wall, "p50_ms": q[49], "p99_ms": q[98],
            "requests": counts[0], "non_2xx": counts[1], "generator": "python"}  # fmt: skip


def main() -> None:
    port, path, body, concurrency, warmup, duration = sys.argv[1:7]
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    result = runner(_load(int(port), path, body.encode(), int(concurrency), float(warmup),
                          float(duration)))  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
