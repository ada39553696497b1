"""Per-feature redaction of logged payloads, applied before anything reaches the spool.

A rule per input feature::

    {"email": "drop",               # the column is not logged at all
     "user_id": "hash",             # keyed HMAC-SHA256 (hex): equal values still join
     "age": {"coarse": 10},         # numbers floored to a multiple of 10
     "zip": {"prefix": 3}}          # strings cut to their first 3 characters

Rules come from the version (``params={"mlops.redact": {...}}``) and the deployment
(``deploy(server={"redact": {...}})``, which wins per feature). The HMAC key comes from
the environment (``MLOPS_NB_REDACT_KEY``) or the server spec's ``redact_key``; it is never
logged. The rules (not the key) are recorded in each spool file's Parquet metadata under
``mlops_nb.redaction``, and by ``mon.ingest()`` in the workspace (``mon.redaction()``).
A hashed feature is a string column, so drift treats it as categorical; against raw
values (``reference="training"`` or a DataFrame) drift applies the same coarse and prefix
rules to the raw side first, and gives hashed or dropped features no verdict.

>>> r = Redactor.of({"age": {"coarse": 10}, "email": "drop"}, None)
>>> t = r.apply(pa.table({"feature.age": [37, 41], "feature.email": ["a@x", "b@y"]}))
>>> t.column_names, t.column("feature.age").to_pylist()
(['feature.age'], [30, 40])
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgument

KEY_ENV = "MLOPS_NB_REDACT_KEY"
METADATA_KEY = b"mlops_nb.redaction"
_FEATURE = "feature."


def _rule(feature: str, rule: Any) -> tuple[str, float | int | None]:
    if rule in ("drop", "hash"):
        return str(rule), None
    if isinstance(rule, dict) and len(rule) == 1:
        ((kind, arg),) = rule.items()
        if (
            kind == "coarse"
            and isinstance(arg, int | float)
            and not isinstance(arg, bool)
            and arg > 0
        ):
            return "coarse", arg
        if kind == "prefix" and isinstance(arg, int) and not isinstance(arg, bool) and arg >= 0:
            return "prefix", arg
    raise InvalidArgument(
        f"redaction rule for {feature!r} is {rule!r}; use 'drop', 'hash', "
        "{'coarse': <bin width > 0>} or {'prefix': <characters kept>}"
    )


def check_rules(config: object) -> dict[str, Any]:
    """The rules, checked (not yet keyed): :class:`InvalidArgument` naming the fix.

    >>> check_rules({"age": {"coarse": 10}, "email": "drop"})
    {'age': {'coarse': 10}, 'email': 'drop'}
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidArgument(
            f"redact must be a dict of feature -> rule, e.g. {{'email': 'drop'}}, got {config!r}"
        )
    for feature, rule in config.items():
        _rule(str(feature), rule)
    return {str(f): config[f] for f in sorted(config, key=str)}


REDACT_PARAM = "mlops.redact"


def merge_rules(
    own: object, given: dict[str, Any] | None, version: str, features: list[str] | None = None
) -> dict[str, Any] | None:
    """A version's rules (its ``params["mlops.redact"]``) with the deployment's over them,
    feature by feature; checked, naming the fix. None when neither sets any. With the
    version's ``features`` known (its signature), a rule for any other name is refused: a
    misspelled rule would leave the feature it meant unredacted.

    >>> merge_rules({"age": "drop", "zip": "drop"}, {"age": {"coarse": 10}}, "churn v1")
    {'age': {'coarse': 10}, 'zip': 'drop'}
    >>> merge_rules(None, {"emial": "drop"}, "churn v1", ["age", "email"])
    Traceback (most recent call last):
    ...
    mlops_nb.errors.InvalidArgument: redaction rule for 'emial', which churn v1 has no feature of: its features are ['age', 'email']; name one of them (a misspelled rule redacts nothing)
    """
    merged = _merged(own, given, version)
    unknown = sorted(set(merged or {}) - set(features)) if features is not None else []
    if unknown:
        raise InvalidArgument(
            f"redaction rule for {', '.join(map(repr, unknown))}, which {version} has no "
            f"feature of: its features are {features}; name one of them (a misspelled rule "
            "redacts nothing)"
        )
    return merged


def _merged(own: object, given: dict[str, Any] | None, version: str) -> dict[str, Any] | None:
    if own is None:
        return None if given is None else check_rules(given)
    if given and not isinstance(own, dict):
        return check_rules(given)  # the deployment's rules replace the unusable ones whole
    try:
        kept = check_rules(
            {f: r for f, r in own.items() if f not in given}
            if given and isinstance(own, dict) else own
        )  # fmt: skip
    except InvalidArgument as e:
        raise InvalidArgument(
            f"{version} has params['{REDACT_PARAM}'] the server cannot use: {e}; register the "
            "version with valid rules, or deploy with server={'redact': {...}} naming a valid "
            "rule for each of those features"
        ) from e
    return check_rules({**kept, **(given or {})})


def parse_described(described: str) -> Any:
    """A rule back from its description in a log's metadata (``"coarse:10"``)."""
    kind, _, arg = described.partition(":")
    if kind == "coarse":
        number = float(arg)
        return {"coarse": int(number) if number.is_integer() and "." not in arg else number}
    if kind == "prefix":
        return {"prefix": int(arg)}
    return "hash" if kind == "hmac-sha256" else kind


class Redactor:
    """Rules checked once; :meth:`apply` rewrites a payload table's feature columns."""

    def __init__(self, rules: dict[str, tuple[str, float | int | None]], key: bytes | None) -> None:
        if key is None and any(kind == "hash" for kind, _ in rules.values()):
            raise InvalidArgument(
                f"redaction hashes {sorted(f for f, r in rules.items() if r[0] == 'hash')} but "
                f"no key is set: set {KEY_ENV} in the server's environment (or redact_key in "
                "its spec), the same on every replica so hashes join"
            )
        self.rules = rules
        self._key = key

    @classmethod
    def of(cls, config: dict[str, Any] | None, key: str | None) -> Redactor:
        rules = {f: _rule(f, r) for f, r in check_rules(config).items()}
        secret = key or os.environ.get(KEY_ENV)
        return cls(rules, secret.encode() if secret else None)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def covers(self, column: str) -> bool:
        return column.startswith(_FEATURE) and column[len(_FEATURE) :] in self.rules

    def metadata(self) -> dict[bytes, bytes]:
        described = {
            f: kind if arg is None else f"{kind}:{arg}"
            for f, (kind, arg) in sorted(self.rules.items())
        }
        for f, (kind, _) in self.rules.items():
            if kind == "hash":
                described[f] = "hmac-sha256"
        return {METADATA_KEY: json.dumps(described, sort_keys=True).encode()}

    def _hash(self, values: pa.Array) -> pa.Array:
        """Each distinct value hashed once (features repeat: ids, categories, readings),
        then spread back over the rows; missing values stay missing."""
        assert self._key is not None
        keyed = hmac.new(self._key, digestmod=hashlib.sha256)
        encoded = pc.dictionary_encode(values)
        hashed = []
        for v in encoded.dictionary.to_pylist():
            h = keyed.copy()
            h.update(str(v).encode())
            hashed.append(h.hexdigest())
        return pc.take(pa.array(hashed, type=pa.string()), encoded.indices)

    @staticmethod
    def fits(kind: str, dtype: pa.DataType) -> bool:
        """Whether a rule of ``kind`` can rewrite values of ``dtype`` (else: nulls)."""
        if kind == "coarse":
            return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))
        if kind == "prefix":
            return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))
        return True

    def apply(self, table: pa.Table, prefix: str = _FEATURE) -> pa.Table:
        """``table`` with its feature columns (``prefix`` + feature name) redacted."""
        if not self.rules:
            return table
        for feature, (kind, arg) in self.rules.items():
            name = prefix + feature
            if name not in table.column_names:
                continue
            col = table.column(name).combine_chunks()
            index = table.column_names.index(name)
            if kind == "drop":
                table = table.remove_column(index)
                continue
            if not self.fits(kind, col.type):
                # A rule that does not fit the column's type: keep nothing rather than the
                # raw value.
                new = pa.nulls(len(col), type=col.type)
            elif kind == "hash":
                new = self._hash(col)
            elif kind == "coarse":
                floored = pc.multiply(pc.floor(pc.divide(pc.cast(col, pa.float64()), arg)), arg)
                new = (
                    floored.cast(col.type, safe=False) if pa.types.is_integer(col.type) else floored
                )
            else:  # prefix
                new = pc.utf8_slice_codeunits(col, 0, int(arg or 0))
            table = table.set_column(index, name, new)
        return table.replace_schema_metadata({**(table.schema.metadata or {}), **self.metadata()})
