"""Frozen records that round-trip through strict JSON: the typed results of the package.

A `Record` is a frozen dataclass whose fields are JSON-like: ``bool``, ``int``, ``float``,
``str``, ``None``, unions of these, ``tuple[X, ...]`` and fixed-length tuples of them, nested
`Record` classes, and ``dict[str, X]`` (``dict[str, Any]`` is kept as given: free-form settings
that must already be strict JSON).

- ``to_json()`` returns a dict that ``json.dumps(..., allow_nan=False)`` accepts: a float that
  is NaN or infinite is written as ``null`` (the package's strict-JSON convention, `io.json_floats`).
- ``from_json(data)`` reads such a dict back, checking every field against its type hint, and
  refuses a missing field, an unknown field or a value of the wrong type with one line naming
  the field (``ValueError``). ``null`` in a field typed ``float`` reads back as NaN; in a field
  typed ``float | None`` it stays None.

A `Result` is a record an experiment writes as a result directory's ``summary.json``
(`Result.save`, atomically): the fields plus ``kind`` (which result) and ``schema_version``
(`SCHEMA_VERSION`), both checked when it is read back.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args, get_origin, get_type_hints

import numpy as np

from ntk_l2.common import io

__all__ = ["SCHEMA_VERSION", "Record", "Result"]

R = TypeVar("R", bound="Record")
_R = TypeVar("_R", bound="Result")

#: Version of the ``summary.json`` layout; a directory written with another version is refused.
SCHEMA_VERSION = 1


def _encode(value: Any) -> Any:
    """``value`` as strict JSON: records by `Record.to_json`, non-finite floats as None."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, np.ndarray):
        return _encode(value.tolist())
    if isinstance(value, np.generic):
        return _encode(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _wrong(where: str, hint: Any, value: Any) -> ValueError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    name = getattr(hint, "__name__", str(hint))
    return ValueError(f"{where}: expected {name}, got {type(value).__name__} {shown}")


def _scalar(hint: type, value: Any, where: str) -> Any:
    """A JSON scalar checked against ``hint`` (bool is not an int here; an int is a float)."""
    if hint is float:
        if value is None:
            return math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise _wrong(where, hint, value)


def _union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    for arg in (a for a in args if a is not type(None)):
        try:
            return _decode(arg, value, where)
        except ValueError:
            continue
    raise _wrong(where, " | ".join(getattr(a, "__name__", str(a)) for a in args), value)


def _decode(hint: Any, value: Any, where: str) -> Any:
    """``value`` read from JSON as the type ``hint`` (see the module docstring)."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(get_args(hint), value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} entries, got {len(value)}")
        return tuple(_decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        item = get_args(hint)[1] if get_args(hint) else Any
        return {k: _decode(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, where)
    if hint in (bool, int, float, str):
        return _scalar(hint, value, where)
    if hint is type(None):
        if value is None:
            return None
        raise _wrong(where, "null", value)
    raise TypeError(f"{where}: type {hint!r} cannot be read from JSON")  # a programming error, not bad data


class Record:
    """Base of the frozen result dataclasses: `to_json` and `from_json` (see the module docstring).

    Subclasses are declared ``@dataclass(frozen=True)``.
    """

    def to_json(self) -> dict[str, Any]:
        """The record as a strict-JSON dict, one key per field."""
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls: type[R], data: Any, where: str | None = None) -> R:
        """The record stored as ``data`` (a dict from `to_json`), every field checked; a
        ValueError naming the field (``where``: the path to it, default the class name)."""
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise _wrong(where, "an object", data)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        hints = get_type_hints(cls)
        values = {}
        for name, field in fields.items():
            if name in data:
                values[name] = _decode(hints[name], data[name], f"{where}.{name}")
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}: the field {name} is missing")
        return cls(**values)


class Result(Record):
    """A result an experiment writes as ``summary.json``: a `Record` with a ``KIND``."""

    KIND: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The fields (`Record.to_json`) with ``kind`` and ``schema_version`` first."""
        return {"kind": self.KIND, "schema_version": SCHEMA_VERSION, **super().to_json()}

    @classmethod
    def from_json(cls: type[_R], data: Any, where: str | None = None) -> _R:
        """The result stored as ``data``: `to_json`'s dict, whose ``kind`` and ``schema_version``
        (when present) must be this class's and `SCHEMA_VERSION`, or the fields alone
        (`Record.from_json`); a one-line ValueError naming the field otherwise."""
        if isinstance(data, Mapping) and ("kind" in data or "schema_version" in data):
            name = where or cls.__name__
            if data.get("kind", cls.KIND) != cls.KIND:
                raise ValueError(f"{name}.kind: expected {cls.KIND!r}, got {data['kind']!r}")
            if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
                raise ValueError(f"{name}.schema_version: expected {SCHEMA_VERSION}, got {data['schema_version']!r}")
            data = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
        return super().from_json(data, where)  # type: ignore[misc]

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/summary.json`` atomically (complete or absent); returns its path."""
        return io.save_json(Path(directory) / "summary.json", self.to_json())
