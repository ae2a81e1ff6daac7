"""How one metric of one benchmark is compared, base vs tuned, over the aligned items.

Covered:
- per-item metrics: `sfteval.paired.compare_paired` (Tango for 0/1, the bounded score
  interval for metrics with a known range, paired t otherwise), with what the gate needs
  to test at any threshold (`inference`) and the exact McNemar p beside the score test;
- corpus metrics (`bleu`, corpus BLEU, the one statistic under that name): a paired
  bootstrap of the sufficient statistics recomputed from the stored outputs and
  references (`sfteval.metrics.text.paired_corpus_bleu`), seeded per benchmark;
- whether the metric measured anything (`uninformative`): (near) zero variance in both
  runs, or an extraction failure rate >= 95% in a run whose failed items all score 0 on
  this metric (for kinds that extract answers; reference benchmarks have no extraction);
- per-group tables (MMLU subjects) with a paired interval per group and
  Benjamini-Hochberg q-values over the groups, so the largest "drop" of 57 subjects under
  A/A is read against its interval instead of as news.

Not covered: multi-reference BLEU; metrics whose per-item scores are missing for some
items (those items are left out of the pairing, as before).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sfteval.bootstrap import benchmark_seed
from sfteval.diagnoses.common import est_dict, num
from sfteval.paired import bh_qvalues, compare_paired

CORPUS_METRICS = ("bleu",)
METRIC_BOUNDS: dict[str, tuple[float, float]] = {"sentence_bleu": (0.0, 100.0)}
EXTRACTING_KINDS = ("math", "choice", "code")  # kinds whose samples carry an extracted answer
EXTRACTION_FAILURE_LIMIT = 0.95
FDR_Q = 0.05


def unmeasured(rows: Mapping[str, Any], ids: list[str], metric: str, kind: str | None, who: str) -> str | None:
    """Why one run's `metric` measured nothing because answers were not extracted."""
    if kind not in EXTRACTING_KINDS or not ids:
        return None
    failed = [i for i in ids if rows[i].answer is None]
    share = len(failed) / len(ids)
    if share >= EXTRACTION_FAILURE_LIMIT and all(not (rows[i].score(metric) or 0.0) for i in failed):
        return (f"answer extraction failed on {share:.0%} of the {who} run's items, which all score 0 on {metric}: "
                "the metric measured the output format, not the model")
    return None


def _corpus_entry(bench: str, metric: str, brows: Mapping[str, Any], trows: Mapping[str, Any],
                  settings: Any) -> dict[str, Any] | None:
    from sfteval.metrics.text import paired_corpus_bleu

    ids = [i for i in brows if i in trows and isinstance(brows[i].reference, str)]
    if not ids:
        return None
    seed = benchmark_seed(bench, settings.seed)
    res = paired_corpus_bleu([brows[i].output for i in ids], [trows[i].output for i in ids],
                             [str(brows[i].reference) for i in ids], seed=seed, resamples=settings.resamples)
    why = None
    if res["base"].value == 0.0 and res["tuned"].value == 0.0:
        why = "corpus BLEU is 0 in both runs (no n-gram order matched anywhere): the metric measured nothing here"
    return {
        "binary": False, "base": est_dict(res["base"]), "tuned": est_dict(res["tuned"]),
        "delta": est_dict(res["delta"]), "p_value": num(res["p_value"]), "p_exact": None,
        "test": "paired-bootstrap(corpus-bleu)", "p_holm": None,
        "retention": num(res["retention"]) if res["retention"] is not None else None,
        "flips": None, "inference": res["inference"], "uninformative": why, "seed": seed,
    }


def compare_metric(bench: str, metric: str, brows: Mapping[str, Any], trows: Mapping[str, Any],
                   kind: str | None, settings: Any) -> dict[str, Any] | None:
    """The comparison entry's statistical fields for one metric (compare adds the
    reported estimates); None when no item carries the metric in both runs."""
    if metric in CORPUS_METRICS:
        return _corpus_entry(bench, metric, brows, trows, settings)
    ids, b, t = [], [], []
    for i, row in brows.items():
        if i in trows:
            bv, tv = row.score(metric), trows[i].score(metric)
            if bv is not None and tv is not None:
                ids.append(i)
                b.append(bv)
                t.append(tv)
    if not ids:
        return None
    res = compare_paired(b, t, bounds=METRIC_BOUNDS.get(metric))
    flips = None
    if res.binary:
        lost = [i for i, x, y in zip(ids, b, t) if x == 1.0 and y == 0.0]
        gained = [i for i, x, y in zip(ids, b, t) if x == 0.0 and y == 1.0]
        flips = {"lost": len(lost), "gained": len(gained), "lost_ids": lost, "gained_ids": gained}
    why = res.degenerate or unmeasured(brows, ids, metric, kind, "base") or unmeasured(trows, ids, metric, kind, "tuned")
    return {
        "binary": res.binary, "base": est_dict(res.base), "tuned": est_dict(res.tuned), "delta": est_dict(res.delta),
        "p_value": num(res.p_value), "p_exact": num(res.p_exact) if res.p_exact is not None else None,
        "test": res.test, "p_holm": None, "retention": num(res.retention) if res.retention is not None else None,
        "flips": flips, "inference": res.inference, "uninformative": why,
    }


def group_table(key: str, brows: Mapping[str, Any], trows: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """Per-group paired deltas with 95% intervals and BH q-values over the groups."""
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in brows.items():
        if i not in trows or key not in row.meta:
            continue
        bv, tv = row.score(metric), trows[i].score(metric)
        if bv is not None and tv is not None:
            gb, gt = groups.setdefault(str(row.meta[key]), ([], []))
            gb.append(bv)
            gt.append(tv)
    results = {g: compare_paired(b, t, bounds=METRIC_BOUNDS.get(metric)) for g, (b, t) in sorted(groups.items())}
    names = list(results)
    pvals = [results[g].p_value if np.isfinite(results[g].p_value) else 1.0 for g in names]
    qvals = bh_qvalues(pvals)
    out: dict[str, Any] = {}
    for g, q in zip(names, qvals):
        r = results[g]
        out[g] = {"base": est_dict(r.base), "tuned": est_dict(r.tuned), "delta": num(r.delta.value),
                  "delta_ci95": [num(r.delta.ci95[0]), num(r.delta.ci95[1])], "n": r.delta.n,
                  "p_value": num(r.p_value), "q_value": num(q), "flagged": bool(q < FDR_Q)}
    return out
