"""Small helpers every diagnosis shares: JSON-safe numbers, "not available" records,
estimates as dicts, and which benchmarks play the train and held-out roles.

Not covered: statistics (`sfteval.paired`, `sfteval.stats`) and reading files
(`sfteval.runfolder`).
"""

from __future__ import annotations

import math
from typing import Any

from sfteval.runfolder import RunResults

MAX_ITEMS = 50  # flagged items listed per benchmark in comparison.json


def num(x: float | None) -> float | None:
    """A finite float, else None (comparison.json is strict JSON)."""
    return None if x is None or not math.isfinite(x) else float(x)


def unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def est_dict(e: Any) -> dict[str, Any]:
    """An `Estimate` as comparison.json stores it (non-finite numbers as null)."""
    return {"value": num(e.value), "stderr": num(e.stderr), "ci95": [num(e.ci95[0]), num(e.ci95[1])],
            "n": e.n, "method": e.method}


def train_and_heldout(results: RunResults) -> tuple[str | None, str | None]:
    """(train, heldout): the benchmark declaring role `train` (scored on SFT training
    data) and the held-out benchmark it is measured against: the first `target`
    benchmark of the same kind (any `target` one when there is no train benchmark)."""
    train = next(iter(results.with_role("train")), None)
    kind = results.benchmarks[train].kind if train is not None else None
    held = next((b for b in results.with_role("target") if kind is None or results.benchmarks[b].kind == kind), None)
    return train, held
