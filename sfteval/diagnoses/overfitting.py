"""Overfitting: the train-vs-heldout score gap with a CI (in the tuned run, with the base
run as a control), plus memorisation and the checkpoint-sweep analysis, which together
make comparison.json's `overfitting` object.

Not covered: a paired gap (train and heldout are different items, so the CI is unpaired).
"""

from __future__ import annotations

import math
from typing import Any

from sfteval.diagnoses import memorisation, sweep
from sfteval.diagnoses.common import num, train_and_heldout, unavailable
from sfteval.diagnoses.context import DiagnosisInput
from sfteval.runfolder import RunResults
from sfteval.stats import Z95


def _stderr(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _gap(results: RunResults, metric: str) -> dict[str, Any] | None:
    train, held = train_and_heldout(results)
    tr = results.benchmarks[train].metrics.get(metric) if train else None
    ho = results.benchmarks[held].metrics.get(metric) if held else None
    if tr is None or ho is None:
        return None
    value = tr.value - ho.value
    se = math.sqrt(_stderr(tr.stderr) ** 2 + _stderr(ho.stderr) ** 2)
    gap = {"value": num(value), "stderr": num(se), "ci95": [num(value - Z95 * se), num(value + Z95 * se)],
           "n": None, "method": "normal(unpaired)"}
    return {"train": tr.to_dict(), "heldout": ho.to_dict(), "gap": gap}


def train_heldout(base_results: RunResults, tuned_results: RunResults) -> dict[str, Any]:
    train, held = train_and_heldout(tuned_results)
    if train is None or held is None:
        return unavailable("the tuned run has no benchmarks with roles `train` and `target` "
                           "(sfteval run --train-data)")
    benches = tuned_results.benchmarks
    metric = benches[held].primary_metric
    if metric not in benches[train].metrics:
        return unavailable(f"`{train}` does not report the heldout metric {metric!r}")
    tuned = _gap(tuned_results, metric)
    base = _gap(base_results, metric)
    assert tuned is not None
    change = None
    if base is not None:
        v = tuned["gap"]["value"] - base["gap"]["value"]
        # the two gaps share items, so this unpaired error is conservative
        se = math.hypot(tuned["gap"]["stderr"] or 0.0, base["gap"]["stderr"] or 0.0)
        change = {"value": num(v), "stderr": num(se), "ci95": [num(v - Z95 * se), num(v + Z95 * se)], "n": None,
                  "method": "normal(unpaired)"}
    lo = (change or tuned["gap"])["ci95"][0]
    return {"available": True, "metric": metric, "benchmarks": [train, held], "tuned": tuned, "base": base,
            "gap_change": change,
            "flag": bool(lo is not None and lo > 0)}


def diagnose(d: DiagnosisInput) -> dict[str, Any]:
    return {
        "train_heldout": train_heldout(d.base.results, d.tuned.results),
        "memorisation": memorisation.diagnose(d),
        "sweep": sweep.diagnose(d.settings.sweep),
    }
