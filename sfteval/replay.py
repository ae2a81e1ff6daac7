"""Replay: score outputs produced elsewhere, without loading any model.

The file is JSONL, one line per item: `{"id": ..., "output": "..."}` (or `"outputs":
[...]` for n > 1 samples, and optionally `"finish_reason"`). With several benchmarks,
each line also names its `"benchmark"`. Ids must match the benchmark's sample ids
(the data's id field, else the 0-based row index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sfteval.errors import SftevalError
from sfteval.fileio import iter_jsonl
from sfteval.types import FINISH_REASONS, Generation


def load_replay(path: str, benchmarks: Sequence[str]) -> ReplaySource:
    table: dict[str, dict[str, tuple[int, Generation]]] = {b: {} for b in benchmarks}
    for line, row in iter_jsonl(path):
        bench = row.get("benchmark")
        if bench is None:
            if len(benchmarks) != 1:
                raise SftevalError("missing field (needed when replaying several benchmarks)", path=path, line=line, field="benchmark")
            bench = benchmarks[0]
        if bench not in table:
            raise SftevalError(f"benchmark '{bench}' is not selected", path=path, line=line, field="benchmark")
        if "id" not in row:
            raise SftevalError("missing field", path=path, line=line, field="id")
        if "output" in row:
            texts = [row["output"]]
        elif "outputs" in row:
            texts = row["outputs"]
        else:
            raise SftevalError("missing field", path=path, line=line, field="output")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise SftevalError("expected text", path=path, line=line, field="output" if "output" in row else "outputs")
        sid = str(row["id"])
        if sid in table[bench]:
            raise SftevalError(f"duplicate id '{sid}' for benchmark '{bench}'", path=path, line=line, field="id")
        reason = str(row.get("finish_reason", "unknown"))
        if reason not in FINISH_REASONS:
            raise SftevalError(f"unknown finish reason {reason!r}", path=path, line=line, field="finish_reason",
                               hint=f"one of: {', '.join(FINISH_REASONS)} (or leave it out)")
        table[bench][sid] = (line, Generation(tuple(texts), tuple([reason] * len(texts))))
    return ReplaySource(path, table)


@dataclass(frozen=True)
class ReplaySource:
    path: str
    table: dict[str, dict[str, tuple[int, Generation]]]

    def outputs_for(self, benchmark: str, ids: Sequence[str]) -> list[Generation]:
        have = self.table[benchmark]
        missing = [i for i in ids if i not in have]
        if missing:
            raise SftevalError(
                f"no output for {len(missing)} item(s) of '{benchmark}', e.g. id '{missing[0]}'",
                path=self.path,
                field="id",
                hint="replay every item, or pass --limit N to score the first N",
            )
        return [have[i][1] for i in ids]

    def check_ids(self, benchmark: str, ids: set[str]) -> None:
        for sid, (line, _) in self.table[benchmark].items():
            if sid not in ids:
                raise SftevalError(f"id '{sid}' is not an item of '{benchmark}'", path=self.path, line=line, field="id")
