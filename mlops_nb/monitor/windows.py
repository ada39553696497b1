"""Time windows over prediction logs.

A window is written as a string or built with :class:`Window`:

- ``"all"`` (or None): every logged prediction;
- ``"last 24h"``, ``"last 30m"``, ``"last 7d"``, ``"last 90s"``: a span ending now;
- ``"last 5000"``: the newest N predictions;
- ``(start, end)``: timestamps (anything pandas reads), start inclusive, end exclusive.

>>> parse("last 24h")
Window(last='24h')
>>> parse("last 500").describe()
'last 500 predictions'
>>> parse(("2026-11-01", "2026-11-02")).describe()
'2026-11-01T00:00:00+00:00 .. 2026-11-02T00:00:00+00:00'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ..errors import InvalidArgument

_SPAN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Longer spans reach before year 1 when subtracted from now: say so instead of overflowing.
MAX_SPAN = timedelta(days=365 * 1000)


def parse_span(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"`` as a timedelta.

    >>> parse_span("1h")
    datetime.timedelta(seconds=3600)
    """
    match = _SPAN_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise InvalidArgument(
            f"cannot read duration {text!r}: write a number and a unit s, m, h, d or w, "
            "such as '30m' or '24h'"
        )
    value, unit = match.groups()
    try:
        span = timedelta(**{_UNITS[unit]: float(value)})
    except OverflowError:
        span = timedelta.max
    if span > MAX_SPAN:
        raise InvalidArgument(
            f"duration {text!r} is longer than {MAX_SPAN.days // 365} years; use 'all' for "
            "every logged prediction"
        )
    return span


def _ts(value: Any) -> datetime:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"cannot read timestamp {value!r}: {e}") from e
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    result: datetime = stamp.tz_convert("UTC").to_pydatetime()
    return result


@dataclass(frozen=True, repr=False)
class Window:
    """Which logged predictions to look at: a span ending now, the newest N, or a range."""

    last: str | None = None
    last_n: int | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.last, self.last_n)) + (
            self.start is not None or self.end is not None
        )
        if given > 1:
            raise InvalidArgument("give one of last=, last_n= or start=/end= for a window")
        if self.last is not None:
            parse_span(self.last)
        if self.last_n is not None and (
            isinstance(self.last_n, bool) or not isinstance(self.last_n, int) or self.last_n < 1
        ):
            raise InvalidArgument(f"last_n must be a positive integer, got {self.last_n!r}")
        if self.start is not None:
            object.__setattr__(self, "start", _ts(self.start))
        if self.end is not None:
            object.__setattr__(self, "end", _ts(self.end))
        if self.start and self.end and self.start >= self.end:
            raise InvalidArgument(f"window start {self.start} is not before its end {self.end}")

    def __repr__(self) -> str:
        fields = {"last": self.last, "last_n": self.last_n, "start": self.start, "end": self.end}
        shown = ", ".join(f"{k}={v!r}" for k, v in fields.items() if v is not None)
        return f"Window({shown})"

    def describe(self) -> str:
        if self.last is not None:
            return f"last {self.last}"
        if self.last_n is not None:
            return f"last {self.last_n} predictions"
        if self.start is not None or self.end is not None:
            start = self.start.isoformat() if self.start else "-inf"
            end = self.end.isoformat() if self.end else "now"
            return f"{start} .. {end}"
        return "all"

    def bounds(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """(start, end) of the window in time, None where open (used to skip files)."""
        if self.last is not None:
            return now - parse_span(self.last), None
        return self.start, self.end

    def sql(self, now: datetime) -> tuple[str, list[Any], int | None]:
        """(WHERE clause over ``timestamp``, parameters, newest-N limit or None)."""
        if self.last is not None:
            return "timestamp >= ?", [now - parse_span(self.last)], None
        if self.last_n is not None:
            return "TRUE", [], self.last_n
        clauses, params = [], []
        if self.start is not None:
            clauses.append("timestamp >= ?")
            params.append(self.start)
        if self.end is not None:
            clauses.append("timestamp < ?")
            params.append(self.end)
        return (" AND ".join(clauses) or "TRUE"), params, None


def parse(spec: Any) -> Window:
    """A :class:`Window` from a string, a (start, end) pair, a Window or None."""
    if spec is None or isinstance(spec, Window):
        return spec or Window()
    if isinstance(spec, tuple) and len(spec) == 2:
        return Window(start=spec[0], end=spec[1])
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            return Window()
        if text.startswith("last "):
            rest = text[5:].strip()
            if rest.isdigit():
                return Window(last_n=int(rest))
            parse_span(rest)
            return Window(last=rest)
    raise InvalidArgument(
        f"cannot read window {spec!r}: use 'all', 'last 24h', 'last 5000', a (start, end) "
        "pair or mlops_nb.Window(...)"
    )
