"""Memorisation: held-out generations reproducing a training response, and benchmark
generations regurgitating training text (long n-gram overlap, `sfteval.overlap`).

Not covered: paraphrased memorisation (only verbatim n-gram runs and shares count).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sfteval.diagnoses.common import MAX_ITEMS, train_and_heldout, unavailable
from sfteval.diagnoses.context import DiagnosisInput
from sfteval.diagnoses.training import Training
from sfteval.overlap import OverlapIndex
from sfteval.runfolder import Run, SampleLine
from sfteval.stats import mean_estimate

NO_TRAINING = "no training data (pass --train-data, or record it in the checkpoint's sfteval.json)"


def overlap_rate(rows: Mapping[str, SampleLine], index: OverlapIndex, training: Training) -> dict[str, Any]:
    """Share of `rows` whose output overlaps `index`, with the first flagged items."""
    flags, items = [], []
    overlaps = index.check_many([r.output for r in rows.values()])
    for sid, ov in zip(rows, overlaps):
        flagged = ov.flagged()
        flags.append(1.0 if flagged else 0.0)
        if flagged and len(items) < MAX_ITEMS:
            items.append({"id": sid, "overlap": round(ov.share, 4), "run": ov.run,
                          "train_id": training.ids[ov.doc] if ov.doc is not None else None})
    est = mean_estimate(flags).to_dict() if flags else None
    return {"share": est, "count": int(sum(flags)), "n": len(flags), "items": items}


def memorisation(base: Run, tuned: Run, training: Training | None) -> dict[str, Any]:
    if training is None:
        return unavailable(NO_TRAINING)
    out: dict[str, Any] = {"available": True, "training_sources": list(training.sources),
                           "n_training": len(training.ids)}
    train, held = train_and_heldout(tuned.results)
    if held is not None:
        out["heldout"] = {
            "benchmark": held,
            "tuned": overlap_rate(tuned.samples[held], training.responses, training),
            "base": overlap_rate(base.samples[held], training.responses, training) if held in base.samples else None,
        }
    else:
        out["heldout"] = None
    out["regurgitation"] = {
        b: {"tuned": overlap_rate(rows, training.texts, training),
            "base": overlap_rate(base.samples[b], training.texts, training) if b in base.samples else None}
        for b, rows in tuned.samples.items() if b not in (train, held)
    }
    return out


def diagnose(d: DiagnosisInput) -> dict[str, Any]:
    return memorisation(d.base, d.tuned, d.training)
