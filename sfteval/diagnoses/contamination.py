"""Contamination: benchmark items whose own text (prompt or reference) appears in the SFT
data, and each benchmark's primary metric recomputed without them.

Not covered: semantic (paraphrase) contamination; only long verbatim n-gram overlap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sfteval.runfolder.compared import BenchmarkComparison
from sfteval.diagnoses.common import est_dict, train_and_heldout, unavailable
from sfteval.diagnoses.context import CompareSettings, DiagnosisInput
from sfteval.diagnoses.memorisation import NO_TRAINING
from sfteval.diagnoses.training import Training
from sfteval.paired import compare_paired
from sfteval.runfolder import Run


def contamination(base: Run, tuned: Run, training: Training | None, per_bench: Mapping[str, BenchmarkComparison],
                  settings: CompareSettings) -> dict[str, Any]:
    if training is None:
        return unavailable(NO_TRAINING)
    out: dict[str, Any] = {"available": True, "training_sources": list(training.sources),
                           "n_training": len(training.ids), "benchmarks": {}}
    train, _ = train_and_heldout(tuned.results)
    for name, rows in tuned.samples.items():
        if name == train or name not in per_bench:
            continue
        prompts = [r.prompt for r in rows.values()]
        items, flagged_ids = [], set()
        prompt_ov = training.texts.check_many(prompts, ignore_shared=True)
        refs = {sid: r.reference for sid, r in rows.items() if isinstance(r.reference, str)}
        ref_ov = dict(zip(refs, training.texts.check_many(list(refs.values()))))
        for sid, po in zip(rows, prompt_ov):
            ro = ref_ov.get(sid)
            if po.flagged() or (ro is not None and ro.flagged()):
                flagged_ids.add(sid)
                doc = po.doc if po.flagged() else (ro.doc if ro else None)
                items.append({"id": sid, "prompt_overlap": round(po.share, 4),
                              "reference_overlap": round(ro.share, 4) if ro else None,
                              "run": po.run or bool(ro and ro.run),
                              "train_id": training.ids[doc] if doc is not None else None})
        out["benchmarks"][name] = {"n": len(rows), "flagged": len(items), "items": items,
                                   "clean": _clean_scores(name, base, tuned, per_bench[name], flagged_ids, settings)}
    return out


def _clean_scores(name: str, base: Run, tuned: Run, entry: BenchmarkComparison, flagged: set[str],
                  settings: CompareSettings) -> dict[str, Any] | None:
    metric = entry.primary_metric
    if not metric:
        return None
    brows, trows = base.samples[name], tuned.samples[name]
    pairs = [(brows[i].score(metric), trows[i].score(metric)) for i in brows if i in trows and i not in flagged]
    kept = [(b, t) for b, t in pairs if b is not None and t is not None]
    if not kept:
        return {"metric": metric, "n": 0, "base": None, "tuned": None, "delta": None}
    res = compare_paired([b for b, _ in kept], [t for _, t in kept], seed=settings.seed, resamples=settings.resamples)
    return {"metric": metric, "n": len(kept), "base": est_dict(res.base), "tuned": est_dict(res.tuned),
            "delta": est_dict(res.delta)}


def diagnose(d: DiagnosisInput) -> dict[str, Any]:
    return contamination(d.base, d.tuned, d.training, d.per_bench, d.settings)
