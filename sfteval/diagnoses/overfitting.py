"""Overfitting: the train-vs-heldout score gap with a CI (in the tuned run, with the base
run as a control), plus memorisation and the checkpoint-sweep analysis, which together
make comparison.json's `overfitting` object.

Not covered: a paired gap (train and heldout are different items, so the CI is unpaired).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sfteval.diagnoses import memorisation, sweep
from sfteval.diagnoses.common import HELDOUT_BENCH, TRAIN_BENCH, find_bench, num, unavailable
from sfteval.diagnoses.context import DiagnosisInput
from sfteval.stats import Z95


def _gap(results: Mapping[str, Any], metric: str) -> dict[str, Any] | None:
    benches = results.get("benchmarks") or {}
    train, held = find_bench(benches, TRAIN_BENCH), find_bench(benches, HELDOUT_BENCH)
    tr = ((benches.get(train) or {}).get("metrics") or {}).get(metric) if train else None
    ho = ((benches.get(held) or {}).get("metrics") or {}).get(metric) if held else None
    if not tr or not ho:
        return None
    value = float(tr["value"]) - float(ho["value"])
    se = math.sqrt(float(tr.get("stderr") or 0.0) ** 2 + float(ho.get("stderr") or 0.0) ** 2)
    gap = {"value": num(value), "stderr": num(se), "ci95": [num(value - Z95 * se), num(value + Z95 * se)],
           "method": "normal(unpaired)"}
    return {"train": tr, "heldout": ho, "gap": gap}


def train_heldout(base_results: Mapping[str, Any], tuned_results: Mapping[str, Any]) -> dict[str, Any]:
    benches = tuned_results.get("benchmarks") or {}
    train, held = find_bench(benches, TRAIN_BENCH), find_bench(benches, HELDOUT_BENCH)
    if train is None or held is None:
        return unavailable("the tuned run has no `train` and `heldout` benchmarks (sfteval run --train-data)")
    metric = benches[held].get("primary_metric")
    if metric not in ((benches[train].get("metrics")) or {}):
        return unavailable(f"`train` does not report the heldout metric {metric!r}")
    tuned = _gap(tuned_results, metric)
    base = _gap(base_results, metric)
    assert tuned is not None
    change = None
    if base is not None:
        v = tuned["gap"]["value"] - base["gap"]["value"]
        # the two gaps share items, so this unpaired error is conservative
        se = math.hypot(tuned["gap"]["stderr"] or 0.0, base["gap"]["stderr"] or 0.0)
        change = {"value": num(v), "ci95": [num(v - Z95 * se), num(v + Z95 * se)], "method": "normal(unpaired)"}
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
