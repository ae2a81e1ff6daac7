"""SFT data formats: alpaca, sharegpt and OpenAI messages, normalised to Conversations.

One loader serves both the trainer (train/) and sfteval's held-out benchmark, so what
is trained on and what is evaluated are read the same way.

- alpaca:   {"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}
- sharegpt: {"conversations": [{"from": "human"|"gpt"|"system"|..., "value"}], "system"?}
  (`history` and the top-level `system` are LLaMA-Factory's fields)
- messages: {"messages": [{"role": "system"|"user"|"assistant", "content"}]}

Sources: a local .jsonl / .json / .parquet / .csv file, or a hub dataset id (through
`datasets.load_dataset`; unreachable offline, so tests use local files). Every bad row
raises an error naming file, line (1-based; row index + 1 for non-JSONL) and field, or
is skipped and counted when the caller passes `on_bad="skip"`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sfteval.errors import SftevalError
from sfteval.fileio import iter_jsonl
from sfteval.types import Conversation, Message

Format = Literal["auto", "alpaca", "sharegpt", "messages"]
FORMATS = ("alpaca", "sharegpt", "messages")

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}
ID_FIELDS = ("id", "idx", "task_id", "uid")


@dataclass(frozen=True)
class LoadReport:
    """What a load kept and why it dropped the rest."""

    path: str
    format: str
    kept: int
    skipped: int
    skip_reasons: dict[str, int] = field(default_factory=dict)


def read_rows(source: str | Path, *, split: str = "train", config: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line_number, row) for a local JSONL/JSON/Parquet/CSV file or a hub dataset id."""
    path = Path(source)
    if path.suffix in LOCAL_SUFFIXES or path.exists():
        if not path.is_file():
            raise SftevalError("data file not found", path=str(path), hint="check the path, or give a hub dataset id")
        return read_file(path, split=split)
    from sfteval import hub

    online, why = hub.hub_reachable()
    if not online:  # datasets would retry for ~30 s: read the hub cache's snapshot, or fail now
        return _cached_hub_rows(str(source), split, config, why)
    import datasets

    try:
        ds = datasets.load_dataset(str(source), config, split=split)
    except Exception as e:  # noqa: BLE001 - the hub raises many types; one clear message
        raise SftevalError(
            f"could not load dataset '{source}' (split '{split}'): {e}",
            path=str(source),
            hint="offline? pass a local .jsonl/.json/.parquet file instead",
        ) from e
    return [(i + 1, dict(row)) for i, row in enumerate(ds)]


LOCAL_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv"}


def _cached_hub_rows(repo: str, split: str, config: str | None, why: str) -> list[tuple[int, dict[str, Any]]]:
    """A hub dataset's split from the local hub cache (same folder reader as --data DIR)."""
    from sfteval import hub
    from sfteval.datasource import split_files

    ref = hub.parse_ref(repo)
    if ref is None:
        raise SftevalError("data file not found, and not a hub dataset id", path=repo)
    hint = "pass a local .jsonl/.json/.parquet/.csv file instead"
    snap = hub.snapshot(ref, repo_type="dataset", what="dataset", hint=hint)
    files = split_files(snap.path, split, config)
    if not files:
        raise SftevalError(f"dataset '{repo}' has no '{split}' split in the hub cache, and {why}", path=str(snap.path),
                           hint=hint)
    rows: list[tuple[int, dict[str, Any]]] = []
    for f in files:
        rows += [(len(rows) + i + 1, row) for i, (_, row) in enumerate(read_file(f, split=split))]
    return rows


def read_file(path: Path, *, split: str = "train") -> list[tuple[int, dict[str, Any]]]:
    """One local file. A .json file may be a list, {"data"|SPLIT: [...]}, or JSON lines
    (as many hub .json files are). Parquet and CSV are read with pyarrow (a `datasets`
    dependency) directly: no dataset cache is written for a local file."""
    if path.suffix == ".jsonl":
        return list(iter_jsonl(path))
    if path.suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":  # several top-level values: JSON lines in a .json file
                return list(iter_jsonl(path))
            raise SftevalError(f"malformed JSON: {e.msg}", path=str(path), line=e.lineno) from e
        if isinstance(data, dict):
            data = data.get("data", data.get(split))
        if not isinstance(data, list):
            raise SftevalError("expected a JSON list of objects (or {'data': [...]})", path=str(path))
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise SftevalError(f"expected a JSON object, got {type(row).__name__}", path=str(path), line=i + 1)
        return [(i + 1, row) for i, row in enumerate(data)]
    try:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq
    except ImportError as e:
        raise SftevalError(f"reading {path.suffix} files needs pyarrow", path=str(path),
                           hint="pip install 'sfteval[hf]' (or convert the file to .jsonl)") from e
    try:
        table = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError...
        raise SftevalError(f"cannot read {path.suffix[1:]}: {e}", path=str(path)) from e
    # Line numbers are row numbers; for CSV, +1 more for the header line.
    first = 2 if path.suffix == ".csv" else 1
    return [(i + first, row) for i, row in enumerate(table.to_pylist())]


def detect_format(row: dict[str, Any], *, path: str = "", line: int | None = None) -> str:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    raise SftevalError(
        f"cannot tell the format from fields {sorted(row)}",
        path=path,
        line=line,
        hint="expected alpaca (instruction/input/output), sharegpt (conversations) or messages",
    )


def _text(row: dict[str, Any], key: str, path: str, line: int, *, required: bool = True) -> str:
    if key not in row or row[key] is None:
        if required:
            raise SftevalError("missing field", path=path, line=line, field=key)
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise SftevalError(f"expected text, got {type(value).__name__}", path=path, line=line, field=key)
    return value


def _alpaca(row: dict[str, Any], path: str, line: int) -> list[Message]:
    instruction = _text(row, "instruction", path, line)
    extra = _text(row, "input", path, line, required=False)
    output = _text(row, "output", path, line)
    system = _text(row, "system", path, line, required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    msgs = [Message("system", system)] if system.strip() else []
    # LLaMA-Factory's alpaca `history`: earlier [user, assistant] pairs, oldest first
    history = row.get("history") or []
    if not isinstance(history, list):
        raise SftevalError("expected a list of [instruction, response] pairs", path=path, line=line, field="history")
    for j, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise SftevalError("expected an [instruction, response] pair of texts", path=path, line=line, field=f"history[{j}]")
        msgs += [Message("user", pair[0]), Message("assistant", pair[1])]
    return msgs + [Message("user", user), Message("assistant", output)]


def _turns(row: dict[str, Any], key: str, role_key: str, text_key: str, path: str, line: int) -> list[Message]:
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise SftevalError("expected a non-empty list of turns", path=path, line=line, field=key)
    msgs = []
    for j, turn in enumerate(turns):
        where = f"{key}[{j}]"
        if not isinstance(turn, dict):
            raise SftevalError("expected an object", path=path, line=line, field=where)
        if role_key not in turn:
            raise SftevalError("missing field", path=path, line=line, field=f"{where}.{role_key}")
        raw_role = str(turn[role_key])
        role = SHAREGPT_ROLES.get(raw_role.lower()) if key == "conversations" else raw_role
        if role not in {"system", "user", "assistant"}:
            raise SftevalError(f"unknown role '{raw_role}'", path=path, line=line, field=f"{where}.{role_key}")
        content = turn.get(text_key)
        if not isinstance(content, str):
            raise SftevalError("missing or non-text content", path=path, line=line, field=f"{where}.{text_key}")
        msgs.append(Message(role, content))
    return msgs


def validate_messages(msgs: Sequence[Message], path: str, line: int) -> None:
    """System first (optional), then user/assistant alternating, ending on assistant."""
    body = list(msgs)
    if body and body[0].role == "system":
        body = body[1:]
    if not body:
        raise SftevalError("no user/assistant turns", path=path, line=line)
    for j, m in enumerate(body):
        want = "user" if j % 2 == 0 else "assistant"
        if m.role != want:
            raise SftevalError(f"wrong role order: turn {j} is '{m.role}', expected '{want}'", path=path, line=line)
    if body[-1].role != "assistant":
        raise SftevalError("the last turn must be the assistant's response", path=path, line=line)
    if not body[-1].content.strip():
        raise SftevalError("empty response", path=path, line=line, field="output/assistant content")


def to_conversation(row: dict[str, Any], fmt: str, *, path: str, line: int, index: int) -> Conversation:
    """Normalise one row; `index` (0-based row index) is the id when the row has none."""
    if fmt == "auto":
        fmt = detect_format(row, path=path, line=line)
    if fmt == "alpaca":
        msgs = _alpaca(row, path, line)
    elif fmt == "sharegpt":
        msgs = _turns(row, "conversations", "from", "value", path, line)
        # LLaMA-Factory's sharegpt keeps the system prompt in a top-level `system` field
        system = _text(row, "system", path, line, required=False)
        if system.strip() and not (msgs and msgs[0].role == "system"):
            msgs = [Message("system", system)] + msgs
    elif fmt == "messages":
        msgs = _turns(row, "messages", "role", "content", path, line)
    else:
        raise SftevalError(f"unknown format '{fmt}'", field="format", hint=f"one of: auto, {', '.join(FORMATS)}")
    validate_messages(msgs, path, line)
    rid = next((str(row[k]) for k in ID_FIELDS if k in row and row[k] is not None), str(index))
    return Conversation(id=rid, messages=tuple(msgs), source=f"{path}:{line}")


def load_conversations(
    source: str | Path,
    *,
    fmt: Format = "auto",
    split: str = "train",
    config: str | None = None,
    on_bad: Literal["error", "skip"] = "error",
) -> tuple[list[Conversation], LoadReport]:
    """Load and normalise an SFT file. Raises on the first bad row unless on_bad='skip'."""
    rows = read_rows(source, split=split, config=config)
    path = str(source)
    if not rows:
        raise SftevalError("no rows in data", path=path)
    if fmt == "auto":
        fmt = detect_format(rows[0][1], path=path, line=rows[0][0])  # type: ignore[assignment]
    convs: list[Conversation] = []
    reasons: dict[str, int] = {}
    for index, (line, row) in enumerate(rows):
        try:
            convs.append(to_conversation(row, fmt, path=path, line=line, index=index))
        except SftevalError as e:
            if on_bad == "error":
                raise
            reasons[e.message] = reasons.get(e.message, 0) + 1
    ids = [c.id for c in convs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SftevalError(f"duplicate id '{dup}'", path=path, field="id", hint="ids must be unique per file")
    report = LoadReport(path=path, format=fmt, kept=len(convs), skipped=sum(reasons.values()), skip_reasons=reasons)
    return convs, report
