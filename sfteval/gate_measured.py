"""Whether a metric measured anything, for the gate's `min` rules (a single run, or the
tuned side of a comparison).

A `min` rule judged on a metric that measured nothing used to pass or fail silently on
the metric's own artefact: outputs written `A: N` score 0 strict on every item (a Wilson
interval near [0, 0.003] "fails" a minimum because of the output format, not the model),
and a scorer that returns the same graded score (ROUGE 0.5, a judge's 7/10) for everything
"passes" any minimum below it. Covered:
- from results.json alone (`from_estimate`): a standard error of exactly 0 over n >= 2
  items, which every interval family here gives only when every item (or, for corpus
  BLEU, every bootstrap resample) scores the same;
- from the run's samples (`run_unmeasured`, read by `sfteval.gate.load_target`): every
  item scoring the same value, and answer extraction failing on >= 95% of the items,
  all of which score 0 (kinds that extract answers: `sfteval.metric_compare.unmeasured`).

A metric found so makes its `min` checks "uninformative" (exit 2, said plainly), never a
pass. Pass/fail (0/1) metrics are the exception to "every item alike": a model that solves
all 200 items (or a judge's win rate where the tuned model wins every pair) measured
something, and the Wilson interval says how much (lower bound 0.981 at n = 200); only their
extraction failures make them uninformative. Not covered: near-constant single runs (all but one item alike): a Wilson interval
already carries that uncertainty, and at small n it is a real measurement.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

# `sfteval.stats.mean_estimate` names a bounded interval "wilson-eff(range=[lo,hi],...)".
_RANGE = re.compile(r"wilson-eff\(range=\[([-+0-9.eE]+),([-+0-9.eE]+)\]")


def from_estimate(est: dict[str, Any]) -> str | None:
    """Why a recorded estimate measured nothing (zero spread), else None."""
    se, n = est.get("stderr"), int(est.get("n") or 0)
    method = str(est.get("method", ""))
    if se is None or n < 2 or method == "wilson":
        return None  # 0/1 data: all alike is a measured 0% or 100%, with a Wilson interval
    try:
        se = float(se)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(se) and se == 0.0):
        return None
    value = float(est.get("value", float("nan")))
    edge = _RANGE.match(method)  # a bounded score at an end of its range: Wilson with the real n, measured
    if edge and value in (float(edge.group(1)), float(edge.group(2))):
        return None
    if method.startswith("corpus-bleu"):
        return (f"zero spread: every bootstrap resample of the {n} items scores {value:g} (no n-gram order matched "
                "anywhere, or every item alike); the metric measured nothing here")
    return f"zero variance: every one of the {n} items scores {value:g}; the metric measured nothing here"


def run_unmeasured(run_dir: str | Path, results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{bench: {metric: reason}} for the metrics of a run folder that measured nothing,
    read from its samples; a benchmark whose samples cannot be read is left to
    `from_estimate`."""
    from sfteval.errors import SftevalError
    from sfteval.metric_compare import unmeasured
    from sfteval.runfolder import read_samples

    out: dict[str, dict[str, str]] = {}
    for bench, info in (results.get("benchmarks") or {}).items():
        path = Path(run_dir) / str((info or {}).get("samples_file") or f"samples/{bench}.jsonl")
        if not path.is_file():
            continue
        try:
            rows = read_samples(path)
        except (SftevalError, OSError, ValueError):
            continue
        for metric in (info or {}).get("metrics") or {}:
            ids = [i for i, r in rows.items() if r.score(metric) is not None]
            if len(ids) < 2:
                continue
            x = np.array([rows[i].score(metric) for i in ids], dtype=float)
            why = unmeasured(rows, ids, metric, info.get("kind"), "gated")
            binary = bool(np.all((x == 0.0) | (x == 1.0)))
            if why is None and not binary and float(np.ptp(x)) == 0.0:
                why = f"zero variance: every one of the {x.size} items scores {x[0]:g}; the metric measured nothing here"
            if why:
                out.setdefault(bench, {})[metric] = why
    return out
