"""Catastrophic forgetting: did a general benchmark's primary metric drop beyond a margin?

Covered: the verdict of one delta's 95% CI against the margin (`forgetting_verdict`,
used per benchmark by compare) and the summary lists of comparison.json's `forgetting`.
Not covered: the delta itself (paired bootstrap in `sfteval.paired`).
"""

from __future__ import annotations

import math
from typing import Any

from sfteval.diagnoses.common import num
from sfteval.diagnoses.context import DiagnosisInput


def forgetting_verdict(delta: float, ci95: tuple[float, float], margin: float,
                       uninformative: str | None = None) -> dict[str, Any]:
    """forgot / no evidence / improved from the delta's 95% CI against `margin` (>= 0);
    "not measured" when the metric measured nothing (`uninformative` says why): a [0, 0]
    interval of an all-zero metric is not "within margin"."""
    lo, hi = ci95
    if uninformative:
        verdict, detail = "not measured", uninformative
    elif not (math.isfinite(lo) and math.isfinite(hi)):
        verdict, detail = "no evidence", "inconclusive: no confidence interval"
    elif hi < -margin:
        verdict, detail = "forgot", "drop beyond margin"
    elif lo > margin:
        verdict, detail = "improved", "gain beyond margin"
    elif lo >= -margin and hi <= margin:
        verdict, detail = "no evidence", "within margin"
    elif hi < 0:
        verdict, detail = "no evidence", "drop, but not shown beyond margin"
    elif lo > 0:
        verdict, detail = "no evidence", "gain, but not shown beyond margin"
    else:
        verdict, detail = "no evidence", "inconclusive: CI wider than margin"
    return {"verdict": verdict, "detail": detail, "margin": margin, "delta": num(delta), "ci95": [num(lo), num(hi)]}


def diagnose(d: DiagnosisInput) -> dict[str, Any]:
    """Benchmarks grouped by their verdict (those compare gave one: the general ones)."""
    out: dict[str, Any] = {"margin": d.settings.margin, "forgot": [], "no evidence": [], "improved": [],
                           "not measured": []}
    for b, e in d.per_bench.items():
        if e.forgetting is not None:
            out[e.forgetting.verdict].append(b)
    return out
