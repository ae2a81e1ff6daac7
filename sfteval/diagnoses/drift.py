"""Behaviour drift, base vs tuned per item: extraction failures, strict-vs-flexible gap,
output length, truncation, repetition and chat-template tokens leaking into outputs;
answer collapse on choice benchmarks; and one run's output health (the same per-item
measures, averaged).

Each measure's change has a paired 95% interval (`sfteval.paired.compare_paired`) and a
p-value; flags are decided on Benjamini-Hochberg q-values over every measure of every
benchmark in the comparison (the per-measure 5% rule flagged 9% of A/A benchmarks, about
31% of comparisons over four). The extraction failure rate is reported only for kinds
that extract an answer (not for reference benchmarks, where every row has none).
Collapse (choice kinds): the answer distribution against the references'; a model
answering "C" on 88 of 88 items is flagged.

Not covered: why outputs drifted (these numbers say what changed; a person reads the
flagged outputs to say why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sfteval.diagnoses.common import num
from sfteval.diagnoses.context import DiagnosisInput
from sfteval.runfolder import SampleLine
from sfteval.overlap import ngram_hashes, tokens
from sfteval.paired import bh_qvalues, compare_paired

TEMPLATE_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>",
    "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>",
    "<start_of_turn>", "<end_of_turn>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",
)
LENGTH_RATIO_BOUNDS = (0.67, 1.5)
REPETITION_N = 4
EXTRACTING_KINDS = ("math", "choice", "code")  # kinds whose samples carry an extracted answer
FLAGGABLE = ("extraction_failure_rate", "strict_flexible_gap", "truncation_rate", "repetition", "template_leak_rate")
MEASURE_BOUNDS = {"strict_flexible_gap": (-1.0, 1.0)}  # the rest: 0/1 or [0, 1], except output tokens
COLLAPSE_TV = 0.3  # total variation distance from the references' answer distribution


def repetition(text: str, n: int = REPETITION_N) -> float:
    """1 - distinct/total word n-grams: 0 for no repeats, near 1 for a loop."""
    h = ngram_hashes(tokens(text), n)
    return 0.0 if h.size == 0 else 1.0 - np.unique(h).size / h.size


def _length(row: SampleLine) -> float:
    nt = row.num_tokens
    return nt if nt is not None else float(len(row.output.split()))


def _failed(row: SampleLine) -> float:
    return 1.0 if row.answer is None else 0.0


def _truncated(row: SampleLine) -> float:
    return 1.0 if row.finish_reason == "length" else 0.0


def _leaks(row: SampleLine) -> float:
    return 1.0 if any(tok in row.output for tok in TEMPLATE_TOKENS) else 0.0


# per-item measures shared by `drift` (base vs tuned) and `health` (one run)
ITEM_MEASURES = {
    "extraction_failure_rate": _failed,
    "output_tokens": _length,
    "truncation_rate": _truncated,
    "repetition": lambda r: repetition(r.output),
    "template_leak_rate": _leaks,
}


def health(rows: Mapping[str, SampleLine], kind: str | None = None) -> dict[str, float | None]:
    """One run's output health: the mean of each per-item measure (no extraction rate
    for kinds that extract nothing)."""
    vals = list(rows.values())
    out = {name: (num(float(np.mean([f(r) for r in vals]))) if vals else None) for name, f in ITEM_MEASURES.items()}
    if kind is not None and kind not in EXTRACTING_KINDS:
        out["extraction_failure_rate"] = None
    return out


def _change(b: Sequence[float], t: Sequence[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    bb, tt = np.asarray(b, dtype=float), np.asarray(t, dtype=float)
    if bb.size == 0:
        return {"base": None, "tuned": None, "delta": None, "delta_ci95": [None, None], "p_value": None,
                "test": "none"}
    r = compare_paired(bb, tt, bounds=bounds)
    return {"base": num(float(bb.mean())), "tuned": num(float(tt.mean())), "delta": num(r.delta.value),
            "delta_ci95": [num(r.delta.ci95[0]), num(r.delta.ci95[1])], "p_value": num(r.p_value), "test": r.test}


def collapse(rows: Mapping[str, SampleLine]) -> dict[str, Any] | None:
    """One run's answer distribution against the references' (choice benchmarks).

    Flagged when the total variation distance is >= COLLAPSE_TV and a chi-square
    goodness-of-fit test against the reference shares rejects at 1% (so a handful of
    items cannot trip it)."""
    from scipy.stats import chisquare

    refs = [str(r.reference) for r in rows.values() if r.reference is not None]
    answers = [str(r.answer) for r in rows.values() if r.answer is not None]
    if not refs or not answers:
        return None
    labels = sorted(set(refs) | set(answers))
    ref_share = np.array([refs.count(x) for x in labels], dtype=float) / len(refs)
    counts = np.array([answers.count(x) for x in labels], dtype=float)
    share = counts / counts.sum()
    tv = float(0.5 * np.abs(share - ref_share).sum())
    top = int(np.argmax(share))
    expected = np.maximum(ref_share, 0.5 / len(refs)) * counts.sum()
    expected *= counts.sum() / expected.sum()
    p = float(chisquare(counts, expected).pvalue) if len(labels) > 1 else 1.0
    return {"answer_shares": dict(zip(labels, map(float, share))), "reference_shares": dict(zip(labels, map(float, ref_share))),
            "top_answer": labels[top], "top_share": float(share[top]), "n": int(counts.sum()),
            "tv_distance": tv, "p_value": p, "flagged": bool(tv >= COLLAPSE_TV and p < 0.01)}


def drift(brows: Mapping[str, SampleLine], trows: Mapping[str, SampleLine], alpha: float,
          kind: str | None = None) -> dict[str, Any]:
    """One benchmark's drift; `flags` here are provisional (unadjusted p < alpha): the
    comparison-wide `diagnose` replaces them with FDR-controlled ones."""
    ids = [i for i in brows if i in trows]
    pairs = [(brows[i], trows[i]) for i in ids]

    def per_item(name: str, f: Any) -> dict[str, Any]:
        return _change([f(b) for b, _ in pairs], [f(t) for _, t in pairs], MEASURE_BOUNDS.get(name))

    result: dict[str, Any] = {name: per_item(name, f) for name, f in ITEM_MEASURES.items()}
    if kind is not None and kind not in EXTRACTING_KINDS:
        result["extraction_failure_rate"] = None  # this kind extracts nothing: a rate of 1.000 would be noise
    result["strict_flexible_gap"] = None
    strict, flex = "exact_match_strict", "exact_match_flexible"
    if pairs and all(strict in r.scores and flex in r.scores for p in pairs for r in p):
        result["strict_flexible_gap"] = per_item("strict_flexible_gap",
                                                 lambda r: float(r.scores[flex]) - float(r.scores[strict]))
    ob, ot = result["output_tokens"]["base"], result["output_tokens"]["tuned"]
    result["length_ratio"] = num(ot / ob) if ob and ot is not None else None
    counts: dict[str, int] = {}
    for _, t in pairs:
        out = t.output
        for tok in TEMPLATE_TOKENS:
            if tok in out:
                counts[tok] = counts.get(tok, 0) + out.count(tok)
    result["template_tokens"] = counts
    if kind == "choice":
        result["collapse"] = {"base": collapse(brows), "tuned": collapse(trows)}
    result["flags"] = _flags(result, {k: result[k]["p_value"] for k in _candidates(result)}, alpha)
    return result


def _candidates(result: Mapping[str, Any]) -> list[str]:
    """Measures that rose (a flag is about getting worse) and have a p-value."""
    return [k for k in FLAGGABLE if result.get(k) and result[k]["delta"] is not None and result[k]["delta"] > 0
            and result[k]["p_value"] is not None]


def _flags(result: Mapping[str, Any], decided: Mapping[str, float], alpha: float) -> list[str]:
    flags = [k for k, p in decided.items() if p < alpha]
    ratio = result["length_ratio"]
    if ratio is not None and not (LENGTH_RATIO_BOUNDS[0] <= ratio <= LENGTH_RATIO_BOUNDS[1]):
        flags.append("output_tokens")
    tuned_collapse = (result.get("collapse") or {}).get("tuned")
    if tuned_collapse and tuned_collapse["flagged"]:
        flags.append("answer_collapse")
    return flags


def diagnose(d: DiagnosisInput) -> dict[str, Any]:
    """Every benchmark's drift, flags decided on BH q-values over the whole comparison."""
    out = {b: drift(d.base.samples[b], d.tuned.samples[b], d.settings.alpha, d.per_bench[b].kind if b in d.per_bench else None)
           for b in d.benches}
    family = [(b, k) for b in out for k in _candidates(out[b])]
    qvals = bh_qvalues([out[b][k]["p_value"] for b, k in family])
    decided: dict[str, dict[str, float]] = {b: {} for b in out}
    for (b, k), q in zip(family, qvals):
        out[b][k]["q_value"] = q
        decided[b][k] = q
    for b in out:
        out[b]["flags"] = _flags(out[b], decided[b], d.settings.alpha)
        out[b]["fdr"] = {"method": "benjamini-hochberg", "family": len(family), "q": d.settings.alpha}
    return out
