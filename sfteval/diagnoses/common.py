"""Small helpers every diagnosis shares: JSON-safe numbers, "not available" records,
estimates as dicts, and the first output / finish reason of a sample line.

Not covered: statistics (`sfteval.paired`, `sfteval.stats`) and reading files
(`sfteval.runfolder`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

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


def output_text(row: Mapping[str, Any]) -> str:
    """The (first) raw output of a sample; n > 1 runs store a list under `outputs`."""
    if row.get("output") is not None:
        return str(row["output"])
    outs = row.get("outputs") or []
    return str(outs[0]) if outs else ""


def finish_reason(row: Mapping[str, Any]) -> str:
    if row.get("finish_reason") is not None:
        return str(row["finish_reason"])
    reasons = row.get("finish_reasons") or []
    return str(reasons[0]) if reasons else ""


TRAIN_BENCH, HELDOUT_BENCH = "train", "heldout"


def find_bench(names: Any, role: str) -> str | None:
    """The benchmark playing `role` ("train" | "heldout"): that exact name, else one
    ending in `_<role>` (the offline suite's `offline_heldout`)."""
    names = list(names)
    if role in names:
        return role
    return next((n for n in names if n.endswith(f"_{role}")), None)
