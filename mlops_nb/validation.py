"""Checks on what users pass to register and friends; each error names the fix."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import semver

from .errors import InvalidArgument, InvalidMetric


def metrics(value: object) -> dict[str, float]:
    """Finite numbers keyed by name.

    >>> metrics({"accuracy": 0.91, "n": 3})
    {'accuracy': 0.91, 'n': 3.0}
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidMetric(f"metrics must be a dict of name -> number, got {type(value).__name__}")
    out: dict[str, float] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not name:
            raise InvalidMetric(f"metric names must be non-empty strings, got {name!r}")
        if isinstance(raw, bool | np.bool_) or not isinstance(raw, numbers.Real):
            raise InvalidMetric(
                f"metric {name!r} must be a number, got {type(raw).__name__} {raw!r}; "
                "log text as params or tags instead"
            )
        try:
            number = float(raw)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise InvalidMetric(
                f"metric {name!r} is {number}; metrics must be finite numbers (check the "
                "evaluation that produced it)"
            )
        out[name] = number
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def json_dict(value: object, what: str) -> dict[str, Any]:
    """A dict that survives a JSON round trip (numpy scalars become Python numbers)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), default=_jsonable, allow_nan=False)
    except ValueError as e:
        raise InvalidArgument(
            f"{what} must hold finite numbers: NaN and infinity have no JSON form ({e}); "
            "record a missing value as None, or the number as a string"
        ) from e
    except (TypeError, RecursionError) as e:
        raise InvalidArgument(
            f"{what} must hold JSON values (str, number, bool, None, lists, dicts): {e} "
            "is not; convert it with str() first"
        ) from e
    result: dict[str, Any] = json.loads(text)
    return result


def tags(value: object) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset) or not all(
        isinstance(t, str) and t for t in items
    ):
        raise InvalidArgument(f"tags must be a list of non-empty strings, got {value!r}")
    return sorted(set(items))


def version_ref(ref: object) -> int | str:
    """A version reference as given, refused when it cannot mean one version.

    >>> version_ref("3"), version_ref("@champion")
    ('3', '@champion')
    """
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise InvalidArgument(
            f"version reference must be an int or a string, got {type(ref).__name__}"
        )
    if isinstance(ref, int):
        if ref < 1:
            raise InvalidArgument(f"version numbers start at 1, got {ref}")
        return ref
    if not ref.isascii() and any(c.isdigit() or c.isnumeric() for c in ref):
        raise InvalidArgument(
            f"version reference {ref!r} has non-ASCII digits; write the number with 0-9 "
            "(e.g. '3' or 3)"
        )
    if ref != ref.strip() or not ref:
        raise InvalidArgument(
            f"version reference {ref!r} is empty or has surrounding whitespace; strip it"
        )
    return ref


def is_semver(text: str) -> bool:
    """Whether ``text`` reads as a semantic version (and so as a version reference)."""
    return bool(semver.Version.is_valid(text))


def label(value: object) -> str | None:
    """A semantic-version label, validated.

    >>> label("1.2.0")
    '1.2.0'
    """
    if value is None:
        return None
    if not isinstance(value, str) or not is_semver(value):
        raise InvalidArgument(
            f"label {value!r} is not a semantic version; use MAJOR.MINOR.PATCH such as '1.2.0'"
        )
    return value


def optional_str(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
