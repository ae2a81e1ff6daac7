"""Over a checkpoint sweep (sweep.json): the held-out metric peaking before the end,
eval loss rising while train loss falls, and the checkpoint to keep.

Not covered: running the sweep (`sfteval.sweep`) and any selection-bias correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sfteval.errors import SftevalError
from sfteval.runfolder import SweepRecord, TrainLogRow, read_sweep


def loss_analysis(log: Sequence[TrainLogRow]) -> dict[str, Any]:
    steps = [r.step for r in log if r.train_loss is not None]
    train = [float(r.train_loss) for r in log if r.train_loss is not None]
    ev = [(r.step, float(r.eval_loss)) for r in log if r.eval_loss is not None]
    base = {"steps": steps, "train_loss": train, "eval_steps": [s for s, _ in ev], "eval_loss": [v for _, v in ev]}
    if len(ev) < 2:
        return {"available": False, "reason": "fewer than two eval_loss rows in the train log", **base}
    k = min(range(len(ev)), key=lambda i: ev[i][1])
    min_step, min_loss = ev[k]
    last_loss = ev[-1][1]
    before = [v for s, v in zip(steps, train) if s <= min_step]
    after = [v for s, v in zip(steps, train) if s > min_step]
    tb = float(np.mean(before)) if before else None
    ta = float(np.mean(after)) if after else None
    diverging = bool(k < len(ev) - 1 and last_loss > min_loss * 1.01 and tb is not None and ta is not None and ta < tb)
    return {"available": True, "min_eval_step": min_step, "min_eval_loss": min_loss, "last_eval_loss": last_loss,
            "train_loss_before": tb, "train_loss_after": ta, "diverging": diverging, **base}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def sweep_analysis(path: str | Path) -> dict[str, Any]:
    return analyse(read_sweep(path), str(path))


def analyse(sweep: SweepRecord, path: str) -> dict[str, Any]:
    sel, mode = sweep.select_metric, sweep.select_mode
    if "/" not in sel:
        raise SftevalError("select.metric must be 'bench/metric'", path=path, field="select.metric")
    bench, metric = sel.split("/", 1)
    points = []
    for ck in sweep.checkpoints:
        est = ck.metric(bench, metric)
        if est is not None:
            points.append({"step": ck.step, "run_id": ck.run_id or None, "value": est.value,
                           "ci95": [_finite(est.ci95[0]), _finite(est.ci95[1])]})
    points.sort(key=lambda p: p["step"])
    out: dict[str, Any] = {"available": True, "path": path, "metric": sel, "mode": mode, "points": points,
                           "loss": loss_analysis(sweep.train_log)}
    if not points:
        return out | {"available": False, "reason": f"no checkpoint reports {sel}"}
    sign = 1.0 if mode == "max" else -1.0
    best = max(points, key=lambda p: (sign * p["value"], -p["step"]))
    last = points[-1]
    lci = last["ci95"]
    significant = bool(lci[1] is not None and lci[1] < best["value"]) if mode == "max" else \
        bool(lci[0] is not None and lci[0] > best["value"])
    out["peak"] = {"step": best["step"], "value": best["value"], "last_step": last["step"],
                   "last_value": last["value"], "before_end": best["step"] != last["step"],
                   "significant": significant and best["step"] != last["step"]}
    out["keep"] = {"step": best["step"], "run_id": best["run_id"], "reason": f"best {sel} ({mode})"}
    reach = [p for p in points if p["ci95"][0] is not None and p["ci95"][0] <= best["value"] <= p["ci95"][1]]
    out["earliest_equivalent"] = {"step": reach[0]["step"], "run_id": reach[0]["run_id"]} if reach else None
    return out


def diagnose(sweep: str | None) -> dict[str, Any]:
    if not sweep:
        return {"available": False, "reason": "no sweep given (--sweep PATH to sweep.json)"}
    return sweep_analysis(sweep)
