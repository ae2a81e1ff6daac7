"""Vote exports read back: the CSV and JSONL that `VoteStore.export_csv` / `export_jsonl`
write, checked row by row, so results (sfteval.ratings.results) recompute from an export
alone, with no database."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.ratings.study import CHOICES, outcome_of


def read_export(source: str | Path | Iterable[str]) -> list[dict[str, Any]]:
    """Votes back from a CSV or JSONL export (a path or its lines), each checked: the
    outcome must follow from choice and tuned_side, so an edited export is caught."""
    if isinstance(source, (str, Path)) and Path(source).is_file():
        path = str(source)
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    else:
        path = "<export>"
        lines = list(source) if not isinstance(source, str) else source.splitlines()
    if not lines:
        raise SftevalError("the export is empty", path=path)
    if lines[0].lstrip().startswith("{"):
        rows = [(n, json.loads(s)) for n, s in enumerate(lines, 1) if s.strip()]
    else:
        rows = [(n, dict(r)) for n, r in enumerate(csv.DictReader(lines), 2)]
    out = []
    for n, r in rows:
        missing = [f for f in ("study", "item", "rater", "choice", "tuned_side") if not r.get(f)]
        if missing:
            raise SftevalError("missing field", path=path, line=n, field=missing[0])
        if r["choice"] not in CHOICES or r["tuned_side"] not in ("A", "B"):
            raise SftevalError("bad choice or tuned_side", path=path, line=n, field="choice")
        outcome = outcome_of(r["choice"], r["tuned_side"])
        if r.get("outcome") and r["outcome"] != outcome:
            raise SftevalError(f"outcome {r['outcome']!r} does not follow from choice and tuned_side",
                               path=path, line=n, field="outcome")
        out.append({**r, "outcome": outcome, "seq": int(r.get("seq") or n)})
    return out
