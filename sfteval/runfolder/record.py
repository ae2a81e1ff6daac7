"""One way to declare a JSON object as a frozen dataclass: `Record`.

A record's fields are its known keys; `from_dict(d, where, at)` reads them (a nested
record, a list, a table of records: the field's `Codec`), keeps every key it does not
know in `extra`, and `to_dict()` writes the same JSON back (`extra` included), so a file
from a newer writer survives a rewrite and a file from an older one reads with the
defaults. Errors name the file and the dotted field (`benchmarks.gsm8k.metrics.acc.delta`).

Used by the comparison's benchmark entries and diagnoses (`sfteval.runfolder.compared`,
`sfteval.runfolder.diagnosed`). Not covered: results.json and sample lines, whose
classes (`records.py`) predate this and carry their own NaN/legacy rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from sfteval.runfolder.records import Where

R = TypeVar("R", bound="Record")
Load = Callable[[Any, Where, str], Any]
Dump = Callable[[Any], Any]


@dataclass(frozen=True)
class Codec:
    """How one field's JSON value becomes its Python value and back."""

    load: Load
    dump: Dump


def _plain_load(v: Any, where: Where, at: str) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _plain_dump(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


PLAIN = Codec(_plain_load, _plain_dump)  # scalars as they are; a JSON list as a tuple


def _pair_load(v: Any, where: Where, at: str) -> tuple[float | None, float | None]:
    if v is None:
        return (None, None)
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
        x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v)
    if not ok:
        raise where.error(f"expected an interval [lo, hi] of numbers or nulls, got {v!r}", at)
    return (None if v[0] is None else float(v[0]), None if v[1] is None else float(v[1]))


INTERVAL = Codec(_pair_load, lambda v: None if v is None else [v[0], v[1]])  # [lo, hi], numbers or nulls


def number(v: Any, where: Where, at: str) -> float | None:
    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return v
    raise where.error(f"expected a number or null, got {v!r}", at)


NUMBER = Codec(number, lambda v: v)


def rec(cls: type[Record]) -> Codec:
    """A nested record."""
    return Codec(lambda v, where, at: cls.from_dict(v, where, at), lambda v: v.to_dict())


def opt(inner: Codec) -> Codec:
    """null or the inner value."""
    return Codec(lambda v, where, at: None if v is None else inner.load(v, where, at),
                 lambda v: None if v is None else inner.dump(v))


def seq(inner: Codec) -> Codec:
    """A JSON list as a tuple (null reads as empty)."""
    def load(v: Any, where: Where, at: str) -> tuple[Any, ...]:
        if v is None:
            return ()
        if not isinstance(v, (list, tuple)):
            raise where.error(f"expected a list, got {type(v).__name__}", at)
        return tuple(inner.load(x, where, f"{at}[{i}]") for i, x in enumerate(v))

    return Codec(load, lambda v: [inner.dump(x) for x in v])


def table(inner: Codec) -> Codec:
    """A JSON object of `inner` values keyed by name, order kept (null reads as empty)."""
    def load(v: Any, where: Where, at: str) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise where.error(f"expected an object, got {type(v).__name__}", at)
        return {str(k): inner.load(x, where, f"{at}.{k}") for k, x in v.items()}

    return Codec(load, lambda v: {k: inner.dump(x) for k, x in v.items()})


def known(codec: Codec = PLAIN, *, key: str | None = None, omit_none: bool = False, default: Any = MISSING,
          factory: Any = MISSING) -> Any:
    """A field with its codec; `key` when the JSON key is not a Python name ("no
    evidence"); `omit_none`: a None value is left out on writing (a key the producer
    writes only when it has one)."""
    meta = {"codec": codec, "key": key, "omit_none": omit_none}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Record:
    """Base of the typed JSON objects; subclasses declare `extra` as their last field."""

    @classmethod
    def from_dict(cls: type[R], d: Any, where: Where = Where(), at: str = "") -> R:
        if not isinstance(d, Mapping):
            raise where.error(f"expected an object, got {type(d).__name__}", at or cls.__name__)
        values: dict[str, Any] = {}
        taken: set[str] = set()
        for f in fields(cls):
            if f.name == "extra":
                continue
            key = f.metadata.get("key") or f.name
            taken.add(key)
            fld = f"{at}.{key}" if at else key
            if key in d:
                values[f.name] = f.metadata.get("codec", PLAIN).load(d[key], where, fld)
            elif f.default is MISSING and f.default_factory is MISSING:
                raise where.error(f"missing '{key}'", fld)
        return cls(**values, extra={k: v for k, v in d.items() if k not in taken})  # type: ignore[call-arg]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.metadata.get("key") or f.name] = f.metadata.get("codec", PLAIN).dump(value)
        return {**out, **getattr(self, "extra", {})}
