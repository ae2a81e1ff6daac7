"""Reading and writing our files safely: atomic writes, line-numbered JSONL errors.

Every file sfteval writes is either written whole to a temporary name and renamed
(results, reports, checkpoints metadata) or appended line by line with a flush per
batch (samples), so a crash never leaves a half-written result behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; results and reports should get the usual mode instead.
FILE_MODE = 0o666 & ~_umask()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise SftevalError("file not found", path=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SftevalError(f"malformed JSON: {e.msg} (column {e.colno})", path=str(path), line=e.lineno) from e


def _json_loads() -> Any:
    """orjson when installed (parsing dominates opening a large samples file), else json.

    orjson's decode error subclasses json.JSONDecodeError, so one except serves both.
    """
    try:
        import orjson

        return orjson.loads
    except ImportError:
        return json.loads


def iter_jsonl(path: str | os.PathLike[str], *, tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, object) for each non-blank line; line numbers are 1-based.

    A malformed line raises SftevalError naming file and line. With
    `tolerate_torn_tail`, a malformed *last* line without a trailing newline (a write
    cut off by a crash) is ignored instead.
    """
    path = Path(path)
    if not path.is_file():
        raise SftevalError("file not found", path=str(path))
    loads = _json_loads()
    lines = path.read_bytes().split(b"\n")  # the last piece is b"" when the file ends in a newline
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
        except json.JSONDecodeError as e:
            if tolerate_torn_tail and i == len(lines):  # no newline after it: a torn write
                return
            raise SftevalError(f"malformed JSON line: {e.msg} (column {e.colno})", path=str(path), line=i) from e
        if not isinstance(obj, dict):
            raise SftevalError(f"expected a JSON object, got {type(obj).__name__}", path=str(path), line=i)
        yield i, obj


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_jsonl(path)]


def append_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Append rows in one write and fsync, so a batch lands whole or (torn) last."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not text:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def truncate_torn_tail(path: str | os.PathLike[str]) -> None:
    """Drop a trailing partial line left by a crash mid-append."""
    path = Path(path)
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(cut)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
