"""Plain data between the judge and the candidate (read `sfteval.execute` first).

Standard library only; loaded by the fork server before any untrusted code runs.
Values cross as a small tagged binary encoding of EXACT builtin types: None, bool,
int, float, complex, str, bytes, and list / tuple / set / frozenset / dict of those.
A subclass (an `int` whose `__eq__` is always true), a generator, a function or any
other object is refused on the way out (`Unencodable`), and `decode` refuses anything
malformed (`BadData`): it is the boundary the judge trusts, so it checks every
length, caps nesting and size, and builds only fresh builtin objects. (Why not
marshal or pickle: pickle runs code, and marshal's own docs say it is not safe
against maliciously constructed data; JSON loses tuples, sets, bytes, int keys, nan.)

Frames on a pipe: a 4-byte little-endian length, then one tag byte and a payload.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 100
MAX_FRAME = 64 << 20  # bytes per frame: larger is refused (the judge's memory is bounded too)
MAX_INT_BYTES = 1 << 16  # about 158,000 decimal digits
_D, _C, _L = struct.Struct("<d"), struct.Struct("<dd"), struct.Struct("<I")


class Unencodable(TypeError):
    """A value that is not plain data of exact builtin types."""


class BadData(ValueError):
    """Bytes that are not a well-formed encoding."""


def encode(value: Any) -> bytes:
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


def _enc(v: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Unencodable(f"nested deeper than {MAX_DEPTH}")
    t = type(v)
    if v is None:
        out += b"N"
    elif t is bool:
        out += b"T" if v else b"F"
    elif t is int:
        raw = v.to_bytes((v.bit_length() + 8) // 8 or 1, "little", signed=True)
        if len(raw) > MAX_INT_BYTES:
            raise Unencodable("int too large")
        out += b"i" + _L.pack(len(raw)) + raw
    elif t is float:
        out += b"f" + _D.pack(v)
    elif t is complex:
        out += b"c" + _C.pack(v.real, v.imag)
    elif t is str:
        if len(v) > MAX_FRAME:  # refused here, before any copy is made
            raise Unencodable(f"a str of {len(v)} characters is over the {MAX_FRAME}-byte frame limit")
        raw = v.encode("utf-8", "surrogatepass")
        out += b"s" + _L.pack(len(raw)) + raw
    elif t is bytes:
        if len(v) > MAX_FRAME:
            raise Unencodable(f"{len(v)} bytes are over the {MAX_FRAME}-byte frame limit")
        out += b"b" + _L.pack(len(v)) + v
    elif len(out) > MAX_FRAME:
        raise Unencodable(f"over the {MAX_FRAME}-byte frame limit")
    elif t is dict:
        out += b"d" + _L.pack(len(v))
        for k, x in v.items():
            _enc(k, out, depth + 1)
            _enc(x, out, depth + 1)
    elif t in _SEQ_TAGS:
        out += _SEQ_TAGS[t] + _L.pack(len(v))
        for x in v:
            _enc(x, out, depth + 1)
    else:
        raise Unencodable(f"not plain data: {t.__module__}.{t.__qualname__}")


_SEQ_TAGS = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


def decode(data: bytes) -> Any:
    value, end = _dec(memoryview(data), 0, 0)
    if end != len(data):
        raise BadData("trailing bytes")
    return value


def _length(buf: memoryview, i: int) -> tuple[int, int]:
    if i + 4 > len(buf):
        raise BadData("truncated length")
    n = _L.unpack_from(buf, i)[0]
    return n, i + 4


def _take(buf: memoryview, i: int, n: int) -> tuple[bytes, int]:
    if i + n > len(buf):
        raise BadData("truncated value")
    return bytes(buf[i : i + n]), i + n


def _dec(buf: memoryview, i: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise BadData("nested too deep")
    if i >= len(buf):
        raise BadData("truncated")
    tag = buf[i]
    i += 1
    if tag == 0x4E:  # N
        return None, i
    if tag == 0x54:  # T
        return True, i
    if tag == 0x46:  # F
        return False, i
    if tag == 0x69:  # i
        n, i = _length(buf, i)
        if n > MAX_INT_BYTES:
            raise BadData("int too large")
        raw, i = _take(buf, i, n)
        return int.from_bytes(raw, "little", signed=True), i
    if tag == 0x66:  # f
        raw, i = _take(buf, i, 8)
        return _D.unpack(raw)[0], i
    if tag == 0x63:  # c
        raw, i = _take(buf, i, 16)
        re_, im = _C.unpack(raw)
        return complex(re_, im), i
    if tag in (0x73, 0x62):  # s, b
        n, i = _length(buf, i)
        raw, i = _take(buf, i, n)
        if tag == 0x62:
            return raw, i
        try:
            return raw.decode("utf-8", "surrogatepass"), i
        except UnicodeDecodeError as e:
            raise BadData("bad utf-8") from e
    if tag in (0x6C, 0x74, 0x53, 0x5A, 0x64):  # l t S Z d
        n, i = _length(buf, i)
        if n > len(buf) - i:  # every item takes at least one byte
            raise BadData("count larger than the data")
        items = []
        for _ in range(n * 2 if tag == 0x64 else n):
            x, i = _dec(buf, i, depth + 1)
            items.append(x)
        try:
            if tag == 0x6C:
                return items, i
            if tag == 0x74:
                return tuple(items), i
            if tag == 0x53:
                return set(items), i
            if tag == 0x5A:
                return frozenset(items), i
            return dict(zip(items[::2], items[1::2])), i
        except TypeError as e:  # an unhashable key
            raise BadData(str(e)) from e
    raise BadData(f"unknown tag {tag:#x}")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def send(fd: int, tag: bytes, payload: bytes = b"") -> None:
    write_all(fd, _L.pack(len(payload) + 1) + tag + payload)


def recv(fd: int, limit: int = MAX_FRAME, wait: Callable[[int], None] | None = None) -> tuple[bytes, bytes] | None:
    """(tag, payload), or None at end of file. BadData for an oversized or cut frame.
    `wait(fd)`, if given, returns when `fd` is readable (the supervisor drains the
    program's output and keeps the clock meanwhile)."""
    head = _read(fd, 4, wait)
    if head is None:
        return None
    n = _L.unpack(head)[0]
    if n < 1 or n > limit:
        raise BadData(f"frame of {n} bytes")
    body = _read(fd, n, wait)
    if body is None:
        raise BadData("frame cut short")
    return body[:1], body[1:]


def _read(fd: int, n: int, wait: Callable[[int], None] | None) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        if wait is not None:
            wait(fd)
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
