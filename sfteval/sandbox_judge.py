"""The two sides of one code sample: the candidate's server and the judge (read
`sfteval.execute` first). Standard library only; loaded by the fork server.

`serve` runs in the candidate's sandboxed process: it executes the program, tells the
judge whether that worked, then answers calls of the entry point. Everything it sends
is untrusted, since the program may have replaced any of it.

`judge` runs in a separate process that never holds untrusted code: a fresh namespace
with the benchmark's trusted `context` (the prompt, for helpers such as HumanEval's
`poly`), the test, and a stub under the entry point's name that forwards each call to
the candidate as plain data (`sandbox_wire`) and returns the decoded answer. Only the
judge knows the verdict: it runs in the supervisor's process, which the candidate's
PID namespace does not show. So the asserts, the
test's globals, builtins and modules, `check`'s frame and bytecode and the verdict are
all out of the candidate's reach; what it controls is the values it returns.

An exception raised by the candidate is re-raised in the judge as the builtin class of
the same name (so a test that expects `ValueError` still sees one), else as
`CandidateError`; an exit-like one (SystemExit, KeyboardInterrupt) as `CandidateExit`,
which `except Exception` does not catch. A candidate that dies, closes its channel or
sends anything malformed fails the sample even if the test swallows the error.
Not covered: arguments the test passes that are not plain data (a callback, an
object) cannot be sent (outcome `error(UnencodableArgument)`); a candidate that
mutates its arguments mutates its own copies, which the test does not see.
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Callable
from typing import Any

from sandbox_wire import BadData, Unencodable, decode, encode, recv, send

_EXIT_LIKE = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")


def _describe(e: BaseException) -> bytes:
    """(type name, message) of the candidate's exception, whatever it overrides."""
    try:
        name = type(e).__name__
        name = name if type(name) is str and name.isidentifier() else "Exception"
    except BaseException:
        name = "Exception"
    try:
        msg = str(e)
        msg = msg if type(msg) is str else "<unprintable>"
    except BaseException:
        msg = "<unprintable>"
    return encode((name[:80], msg[:500]))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def serve(program: str, entry_point: str | None, rin: int, rout: int) -> None:
    """The candidate's side. Never returns."""
    _exit, _send, _recv = os._exit, send, recv
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(program, "<program>", "exec"), ns)
        if entry_point is not None and entry_point not in ns:
            raise NameError(f"name {entry_point!r} is not defined")
        fn = ns.get(entry_point) if entry_point is not None else None
    except BaseException as e:
        _flush()
        _send(rout, b"X", _describe(e))
        _exit(1)
    _flush()
    _send(rout, b"M")
    while True:
        frame = _recv(rin)
        if frame is None:
            _exit(0)
        args, kwargs = decode(frame[1])
        try:
            result = fn(*args, **kwargs)  # type: ignore[misc]
        except BaseException as e:
            _flush()
            _send(rout, b"X", _describe(e))
            continue
        try:
            payload = encode(result)
        except Unencodable as e:
            _flush()
            _send(rout, b"U", encode(str(e)))
            continue
        _flush()
        _send(rout, b"R", payload)


class CandidateError(Exception):
    """The candidate raised an exception that is not a builtin class."""


class CandidateExit(BaseException):
    """The candidate raised SystemExit / KeyboardInterrupt / GeneratorExit."""


class _Broken(BaseException):
    """The candidate died, closed its channel or sent malformed data."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _BadArgument(BaseException):
    pass


def _rebuild(name: str, msg: str) -> BaseException:
    if name in _EXIT_LIKE:
        return CandidateExit(f"{name}: {msg}")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(msg)
        except BaseException:  # a constructor that wants other arguments
            pass
    return CandidateError(f"{name}: {msg}")


class _Channel:
    def __init__(self, out: int, inp: int, wait: Callable[[int], None] | None) -> None:
        self.out, self.inp, self.wait = out, inp, wait
        self.raised: dict[int, str] = {}  # id(exception) -> the candidate's type name
        self.broken: _Broken | None = None

    def fail(self, kind: str, detail: str) -> _Broken:
        self.broken = self.broken or _Broken(kind, detail)
        return self.broken

    def reply(self) -> tuple[bytes, bytes]:
        try:
            frame = recv(self.inp, wait=self.wait)
        except BadData as e:
            raise self.fail("BadReply", f"malformed reply: {e}") from None
        if frame is None:
            raise self.fail("Gone", "the candidate ended")
        return frame

    def exception(self, body: bytes) -> BaseException:
        try:
            name, msg = decode(body)
            if type(name) is not str or type(msg) is not str or not name.isidentifier():
                raise BadData("bad exception record")
        except BadData as e:
            return self.fail("BadReply", f"malformed exception: {e}")
        exc = _rebuild(name, msg)
        self.raised[id(exc)] = name
        return exc

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.broken:
            raise self.broken
        try:
            payload = encode((args, kwargs))
        except Unencodable as e:
            raise _BadArgument(str(e)) from None
        try:
            send(self.out, b"C", payload)
        except OSError:
            raise self.fail("Gone", "the candidate ended") from None
        tag, body = self.reply()
        if tag == b"R":
            try:
                return decode(body)
            except BadData as e:
                raise self.fail("BadResult", f"malformed result: {e}") from None
        if tag == b"X":
            raise self.exception(body)
        if tag == b"U":
            try:
                why = decode(body)
            except BadData:
                why = "?"
            raise self.fail("UnencodableResult", str(why))
        raise self.fail("BadReply", f"unknown reply {tag!r}")


def _stub(channel: _Channel, name: str) -> Any:
    def candidate(*args: Any, **kwargs: Any) -> Any:
        return channel.call(args, kwargs)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


def verdict(job: Any, call_w: int, reply_r: int, wait: Callable[[int], None] | None = None) -> tuple[bytes, Any]:
    """The judge's side: run the test against the stub; (tag, data):

    P passed; F assertion failed (message); E (type, message, source) an exception of
    the test ("test") or raised by the candidate ("candidate"); G the candidate ended
    early; B malformed or unencodable data (kind, detail).
    """
    ch = _Channel(call_w, reply_r, wait)
    try:
        tag, body = ch.reply()
        if tag == b"X":
            raise ch.exception(body)
        if tag != b"M":
            raise ch.fail("BadReply", f"unknown status {tag!r}")
        if job.entry_point is not None:
            ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
            if job.context:
                exec(compile(job.context, "<context>", "exec"), ns)
            stub = _stub(ch, job.entry_point)
            ns[job.entry_point] = stub
            exec(compile(job.test, "<test>", "exec"), ns)
            ns["check"](stub)
        return (b"P", None) if ch.broken is None else _broken_verdict(ch.broken)
    except _Broken as b:
        return _broken_verdict(ch.broken or b)
    except _BadArgument as e:
        return b"E", ("UnencodableArgument", str(e)[:500], "test")
    except BaseException as e:
        if ch.broken is not None:
            return _broken_verdict(ch.broken)
        if id(e) in ch.raised:
            return b"E", (ch.raised[id(e)], _text(e), "candidate")
        if isinstance(e, AssertionError):
            return b"F", _text(e)
        return b"E", (type(e).__name__, _text(e), "test")


def _broken_verdict(b: _Broken) -> tuple[bytes, Any]:
    return (b"G", None) if b.kind == "Gone" else (b"B", (b.kind, str(b)[:500]))


def _text(e: BaseException) -> str:
    try:
        return str(e)[:500]
    except BaseException:
        return "<unprintable>"
