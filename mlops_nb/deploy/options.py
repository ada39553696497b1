"""Model server options a deployment passes to every replica: ``deploy(..., server={...})``.

Each option is a field of :class:`~mlops_nb.serve.spec.ServeSpec` (the server reads it;
``redact`` rules are merged over the version's own, feature by feature),
except ``replace_unready_after_s``, which the target reads: a replica that served, then
stays unready that long (for instance stuck on a prediction past ``stuck_after_s``) is
replaced.

>>> check_server({"workers": 4, "stuck_after_s": 10})
{'stuck_after_s': 10.0, 'workers': 4}
>>> check_server({"worker": 4})
Traceback (most recent call last):
...
mlops_nb.errors.InvalidArgument: unknown server option 'worker'; known: batching, ...
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import InvalidArgument
from ..serve.redact import check_rules
from ..serve.spec import POOLS

# name -> (kind, lowest, highest, what it does)
SERVER_OPTIONS: dict[str, tuple[str, float, float, str]] = {
    "batching": ("bool", 0, 1, "share one predict between concurrent requests"),
    "log_required": ("bool", 0, 1, "refuse (503) requests while the payload log cannot be written"),
    "max_batch": ("int", 1, 4096, "rows in one shared predict"),
    "max_body_bytes": ("int", 1024, 2**31, "largest request body (larger: 413)"),
    "max_queue": ("int", 1, 100_000, "requests waiting for a worker before 503 + Retry-After"),
    "pool": ("choice", 0, 0, "where predictions run: 'threads', or 'processes' for models "
                             "that hold the GIL"),
    "redact": ("rules", 0, 0, "per-feature redaction of the payload log, over the version's"),
    "replace_unready_after_s": ("float", 1.0, 86_400.0,
                                "replace a replica that served, then stays unready this long"),
    "stuck_after_s": ("float", 0.1, 86_400.0, "a predict running longer makes the replica unready"),
    "timeout_s": ("float", 0.01, 86_400.0, "a request waits at most this long (then 504)"),
    "workers": ("int", 1, 64, "threads (or processes) that run predictions"),
}  # fmt: skip
CHOICES = {"pool": POOLS}
REPLACE_UNREADY_AFTER = 30.0


def check_server(options: object) -> dict[str, Any]:
    """Validated server options (sorted), or :class:`InvalidArgument` naming the fix."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidArgument(
            f"server must be a dict of server options, e.g. {{'workers': 4}}, got {options!r}"
        )
    out: dict[str, Any] = {}
    for name in sorted(options):
        if name not in SERVER_OPTIONS:
            raise InvalidArgument(
                f"unknown server option {name!r}; known: {', '.join(sorted(SERVER_OPTIONS))}"
            )
        kind, low, high, what = SERVER_OPTIONS[name]
        value = options[name]
        if name == "timeout_s" and value is None:
            out[name] = None
            continue
        if kind == "rules":
            out[name] = check_rules(value)
            continue
        if kind == "choice":
            if value not in CHOICES[name]:
                raise InvalidArgument(f"server option {name!r} ({what}) must be one of "
                                      f"{', '.join(map(repr, CHOICES[name]))}, got {value!r}")  # fmt: skip
            out[name] = value
            continue
        if kind == "bool":
            if not isinstance(value, bool):
                raise InvalidArgument(f"server option {name!r} ({what}) must be True or False, "
                                      f"got {value!r}")  # fmt: skip
            out[name] = value
            continue
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind == "int" and not isinstance(value, int):
            number_ok = False
        if not number_ok or not math.isfinite(value) or not low <= value <= high:
            raise InvalidArgument(f"server option {name!r} ({what}) must be {'an integer' if kind == 'int' else 'a number'} "
                                  f"from {low:g} to {high:g}, got {value!r}")  # fmt: skip
        out[name] = int(value) if kind == "int" else float(value)
    return out


def spec_options(server: dict[str, Any]) -> dict[str, Any]:
    """The options the model server reads (all but the target's own)."""
    return {k: v for k, v in server.items() if k != "replace_unready_after_s"}
