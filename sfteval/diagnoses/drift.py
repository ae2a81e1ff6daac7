"""Behaviour drift, base vs tuned per item: extraction failures, strict-vs-flexible gap,
output length, truncation, repetition and chat-template tokens leaking into outputs;
and one run's output health (the same per-item measures, averaged).

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
from sfteval.paired import is_binary, mcnemar_exact, paired_t

TEMPLATE_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>",
    "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>",
    "<start_of_turn>", "<end_of_turn>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",
)
LENGTH_RATIO_BOUNDS = (0.67, 1.5)
REPETITION_N = 4


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


def health(rows: Mapping[str, SampleLine]) -> dict[str, float | None]:
    """One run's output health: the mean of each per-item measure."""
    vals = list(rows.values())
    return {name: (num(float(np.mean([f(r) for r in vals]))) if vals else None) for name, f in ITEM_MEASURES.items()}


def _change(b: Sequence[float], t: Sequence[float]) -> dict[str, Any]:
    bb, tt = np.asarray(b, dtype=float), np.asarray(t, dtype=float)
    if bb.size == 0:
        return {"base": None, "tuned": None, "delta": None, "p_value": None, "test": "none"}
    if is_binary(np.concatenate([bb, tt])):
        lost = int(np.sum((bb == 1) & (tt == 0)))
        gained = int(np.sum((bb == 0) & (tt == 1)))
        p, test = mcnemar_exact(lost, gained), "mcnemar-exact"
    else:
        p, test = paired_t(tt - bb), "paired-t"
    return {"base": num(float(bb.mean())), "tuned": num(float(tt.mean())),
            "delta": num(float(tt.mean() - bb.mean())), "p_value": num(p), "test": test}


def drift(brows: Mapping[str, SampleLine], trows: Mapping[str, SampleLine], alpha: float) -> dict[str, Any]:
    ids = [i for i in brows if i in trows]
    pairs = [(brows[i], trows[i]) for i in ids]

    def per_item(f: Any) -> dict[str, Any]:
        return _change([f(b) for b, _ in pairs], [f(t) for _, t in pairs])

    result: dict[str, Any] = {name: per_item(f) for name, f in ITEM_MEASURES.items()}
    result["strict_flexible_gap"] = None
    strict, flex = "exact_match_strict", "exact_match_flexible"
    if pairs and all(strict in r.scores and flex in r.scores for p in pairs for r in p):
        result["strict_flexible_gap"] = per_item(lambda r: float(r.scores[flex]) - float(r.scores[strict]))
    ob, ot = result["output_tokens"]["base"], result["output_tokens"]["tuned"]
    result["length_ratio"] = num(ot / ob) if ob and ot is not None else None
    counts: dict[str, int] = {}
    for _, t in pairs:
        out = t.output
        for tok in TEMPLATE_TOKENS:
            if tok in out:
                counts[tok] = counts.get(tok, 0) + out.count(tok)
    result["template_tokens"] = counts
    flags = [k for k in ("extraction_failure_rate", "strict_flexible_gap", "truncation_rate", "repetition",
                         "template_leak_rate")
             if result[k] and result[k]["delta"] is not None and result[k]["delta"] > 0
             and result[k]["p_value"] is not None and result[k]["p_value"] < alpha]
    ratio = result["length_ratio"]
    if ratio is not None and not (LENGTH_RATIO_BOUNDS[0] <= ratio <= LENGTH_RATIO_BOUNDS[1]):
        flags.append("output_tokens")
    result["flags"] = flags
    return result


def diagnose(d: DiagnosisInput) -> dict[str, Any]:
    return {b: drift(d.base.samples[b], d.tuned.samples[b], d.settings.alpha) for b in d.benches}
