"""Over a checkpoint sweep (sweep.json): the held-out metric peaking before the end,
eval loss rising while train loss falls, and the checkpoint to keep.

Selection-aware (`sfteval.selection`) when the checkpoints' run folders are readable:
the kept checkpoint is chosen on one half of the items and reported on the other (the
split is recorded), every checkpoint has a simultaneous interval over the K, "peak
significant" is a paired last-vs-best test corrected for K, and "earliest equivalent" is
a TOST with a stated margin. Without per-item scores (run folders gone) the old
summary-only fields are given, marked `selection_aware: false`.

Not covered: running the sweep (`sfteval.sweep`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sfteval.errors import SftevalError
from sfteval.runfolder import SweepRecord, TrainLogRow, read_samples, read_sweep
from sfteval.selection import DEFAULT_EQUIVALENCE_MARGIN, selection_stats


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
    matrix = _item_scores(sweep, bench, metric, [p["step"] for p in points])
    if matrix is not None:
        ids, scores = matrix
        stats = selection_stats([p["step"] for p in points], ids, scores, mode, DEFAULT_EQUIVALENCE_MARGIN)
        run_ids = {p["step"]: p["run_id"] for p in points}
        keep = stats.get("keep") or {"step": stats["peak"]["step"]}
        out.update(selection_aware=True, selection={k: stats[k] for k in ("k", "n", "alpha", "simultaneous", "split")},
                   peak=stats["peak"],
                   keep=keep | {"run_id": run_ids.get(keep["step"]),
                                "reason": f"best {sel} ({mode}) on the select split, reported on the report split"},
                   earliest_equivalent=stats["earliest_equivalent"]
                   | {"run_id": run_ids.get(stats["earliest_equivalent"]["step"])})
        return out
    return out | _summary_only(points, sel, mode)


def _item_scores(sweep: SweepRecord, bench: str, metric: str, steps: list[int]
                 ) -> tuple[list[str], np.ndarray] | None:
    """(aligned ids, K x n scores) from each checkpoint's samples, or None if any is unreadable."""
    by_step = {ck.step: ck for ck in sweep.checkpoints}
    per: list[dict[str, float]] = []
    for step in steps:
        ck = by_step[step]
        path = Path(ck.run_dir) / "samples" / f"{bench}.jsonl" if ck.run_dir else None
        if path is None or not path.is_file():
            return None
        rows = read_samples(path)
        per.append({i: v for i, r in rows.items() if (v := r.score(metric)) is not None})
    ids = sorted(set.intersection(*(set(p) for p in per))) if per else []
    if len(ids) < 4:
        return None
    return ids, np.array([[p[i] for i in ids] for p in per], dtype=float)


def _summary_only(points: list[dict[str, Any]], sel: str, mode: str) -> dict[str, Any]:
    """Without per-item scores: point estimates only; nothing selection-aware is claimed."""
    sign = 1.0 if mode == "max" else -1.0
    best = max(points, key=lambda p: (sign * p["value"], -p["step"]))
    last = points[-1]
    return {"selection_aware": False,
            "reason": "the checkpoints' samples are not readable: no paired or split statistics",
            "peak": {"step": best["step"], "value": best["value"], "last_step": last["step"],
                     "last_value": last["value"], "before_end": best["step"] != last["step"], "significant": None},
            "keep": {"step": best["step"], "run_id": best["run_id"],
                     "reason": f"best {sel} ({mode}); its interval is biased upward (chosen on the same items)"},
            "earliest_equivalent": None}


def diagnose(sweep: str | None) -> dict[str, Any]:
    if not sweep:
        return {"available": False, "reason": "no sweep given (--sweep PATH to sweep.json)"}
    return sweep_analysis(sweep)
