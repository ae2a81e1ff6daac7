"""Diagnoses behind a comparison: overfitting, memorisation, behaviour drift, contamination.

Covered (each returns a JSON-ready dict of docs/compare-format.md):
- `train_heldout`: the train-vs-heldout score gap (benchmarks named `train` and
  `heldout`) with a CI, in the tuned run and the base run as a control.
- `memorisation`: held-out generations reproducing a training response, and benchmark
  generations regurgitating training text (long n-gram overlap, `sfteval.overlap`).
- `sweep_analysis`: over a checkpoint sweep (sweep.json), the held-out metric peaking
  before the end, eval loss rising while train loss falls, and the checkpoint to keep.
- `drift`: extraction failures, strict-vs-flexible gap, output length, truncation,
  repetition and chat-template tokens leaking into outputs, base vs tuned per item.
- `contamination`: benchmark items whose own text appears in the SFT data, and the
  scores recomputed without them.

Not covered: semantic (paraphrase) contamination, and causes of drift: these numbers
say what changed, a person reads the flagged outputs to say why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sfteval.errors import SftevalError
from sfteval.fileio import read_json, sha256_file
from sfteval.overlap import OverlapIndex, ngram_hashes, tokens
from sfteval.paired import compare_paired, is_binary, mcnemar_exact, paired_t
from sfteval.stats import Z95, mean_estimate

if TYPE_CHECKING:
    from sfteval.compare import CompareSettings, Run

TRAIN_BENCH, HELDOUT_BENCH = "train", "heldout"


def find_bench(names: Any, role: str) -> str | None:
    """The benchmark playing `role` ("train" | "heldout"): that exact name, else one
    ending in `_<role>` (the offline suite's `offline_heldout`)."""
    names = list(names)
    if role in names:
        return role
    return next((n for n in names if n.endswith(f"_{role}")), None)
SWEEP_SCHEMA = "sfteval.sweep/1"
TEMPLATE_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>",
    "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>",
    "<start_of_turn>", "<end_of_turn>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",
)
LENGTH_RATIO_BOUNDS = (0.67, 1.5)
REPETITION_N = 4
MAX_ITEMS = 50


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def output_text(row: Mapping[str, Any]) -> str:
    """The (first) raw output of a sample; n > 1 runs store a list under `outputs`."""
    if row.get("output") is not None:
        return str(row["output"])
    outs = row.get("outputs") or []
    return str(outs[0]) if outs else ""


def _finish(row: Mapping[str, Any]) -> str:
    if row.get("finish_reason") is not None:
        return str(row["finish_reason"])
    reasons = row.get("finish_reasons") or []
    return str(reasons[0]) if reasons else ""


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


# ----------------------------------------------------------------------------- training data


@dataclass(frozen=True)
class Training:
    sources: tuple[str, ...]
    ids: tuple[str, ...]
    responses: OverlapIndex  # assistant turns only
    texts: OverlapIndex  # every turn


def training_sources(explicit: Sequence[str], tuned_results: Mapping[str, Any]) -> list[Path]:
    """--train-data paths, else the training files the tuned checkpoint's sfteval.json names.

    The trainer records `data_files: [{"path", "sha256"}]` (eval files are kept apart and
    not used); a file whose content no longer matches its recorded sha256 is not the data
    the model saw, so it is left out. A plain `data` path or list is accepted too.
    """
    if explicit:
        return [Path(p) for p in explicit]
    trainer = (tuned_results.get("model") or {}).get("trainer") or {}
    entries = trainer.get("data_files") or trainer.get("data") or []
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    out: list[Path] = []
    for e in entries:
        path, sha = (e, None) if isinstance(e, str) else (e.get("path"), e.get("sha256"))
        if isinstance(path, str) and Path(path).is_file() and (sha is None or sha256_file(path) == sha):
            out.append(Path(path))
    return out


def load_training(paths: Sequence[Path]) -> Training | None:
    if not paths:
        return None
    from sfteval.formats import load_conversations

    ids: list[str] = []
    responses: list[str] = []
    texts: list[str] = []
    for p in paths:
        convs, _ = load_conversations(p)
        for c in convs:
            ids.append(c.id)
            responses.append("\n".join(m.content for m in c.messages if m.role == "assistant"))
            texts.append("\n".join(m.content for m in c.messages))
    return Training(tuple(str(p) for p in paths), tuple(ids), OverlapIndex(responses), OverlapIndex(texts))


def _rate(rows: Mapping[str, Mapping[str, Any]], index: OverlapIndex, training: Training) -> dict[str, Any]:
    flags, items = [], []
    overlaps = index.check_many([output_text(r) for r in rows.values()])
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
        return _unavailable("no training data (pass --train-data, or record it in the checkpoint's sfteval.json)")
    out: dict[str, Any] = {"available": True, "training_sources": list(training.sources),
                           "n_training": len(training.ids)}
    held = find_bench(tuned.samples, HELDOUT_BENCH)
    train = find_bench(tuned.samples, TRAIN_BENCH)
    if held is not None:
        out["heldout"] = {
            "benchmark": held,
            "tuned": _rate(tuned.samples[held], training.responses, training),
            "base": _rate(base.samples[held], training.responses, training) if held in base.samples else None,
        }
    else:
        out["heldout"] = None
    out["regurgitation"] = {
        b: {"tuned": _rate(rows, training.texts, training),
            "base": _rate(base.samples[b], training.texts, training) if b in base.samples else None}
        for b, rows in tuned.samples.items() if b not in (train, held)
    }
    return out


# ----------------------------------------------------------------------------- train vs heldout


def _gap(results: Mapping[str, Any], metric: str) -> dict[str, Any] | None:
    benches = results.get("benchmarks") or {}
    train, held = find_bench(benches, TRAIN_BENCH), find_bench(benches, HELDOUT_BENCH)
    tr = ((benches.get(train) or {}).get("metrics") or {}).get(metric) if train else None
    ho = ((benches.get(held) or {}).get("metrics") or {}).get(metric) if held else None
    if not tr or not ho:
        return None
    value = float(tr["value"]) - float(ho["value"])
    se = math.sqrt(float(tr.get("stderr") or 0.0) ** 2 + float(ho.get("stderr") or 0.0) ** 2)
    gap = {"value": _num(value), "stderr": _num(se), "ci95": [_num(value - Z95 * se), _num(value + Z95 * se)],
           "method": "normal(unpaired)"}
    return {"train": tr, "heldout": ho, "gap": gap}


def train_heldout(base_results: Mapping[str, Any], tuned_results: Mapping[str, Any]) -> dict[str, Any]:
    benches = tuned_results.get("benchmarks") or {}
    train, held = find_bench(benches, TRAIN_BENCH), find_bench(benches, HELDOUT_BENCH)
    if train is None or held is None:
        return _unavailable("the tuned run has no `train` and `heldout` benchmarks (sfteval run --train-data)")
    metric = benches[held].get("primary_metric")
    if metric not in ((benches[train].get("metrics")) or {}):
        return _unavailable(f"`train` does not report the heldout metric {metric!r}")
    tuned = _gap(tuned_results, metric)
    base = _gap(base_results, metric)
    assert tuned is not None
    change = None
    if base is not None:
        v = tuned["gap"]["value"] - base["gap"]["value"]
        # the two gaps share items, so this unpaired error is conservative
        se = math.hypot(tuned["gap"]["stderr"] or 0.0, base["gap"]["stderr"] or 0.0)
        change = {"value": _num(v), "ci95": [_num(v - Z95 * se), _num(v + Z95 * se)], "method": "normal(unpaired)"}
    lo = (change or tuned["gap"])["ci95"][0]
    return {"available": True, "metric": metric, "benchmarks": [train, held], "tuned": tuned, "base": base,
            "gap_change": change,
            "flag": bool(lo is not None and lo > 0)}


# ----------------------------------------------------------------------------- sweep


def _loss_analysis(log: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    steps = [int(r["step"]) for r in log if r.get("train_loss") is not None]
    train = [float(r["train_loss"]) for r in log if r.get("train_loss") is not None]
    ev = [(int(r["step"]), float(r["eval_loss"])) for r in log if r.get("eval_loss") is not None]
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


def sweep_analysis(path: str | Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != SWEEP_SCHEMA:
        raise SftevalError(f"expected schema {SWEEP_SCHEMA!r}", path=str(path), field="schema")
    select = data.get("select") or {}
    sel, mode = str(select.get("metric") or ""), str(select.get("mode") or "max")
    if "/" not in sel:
        raise SftevalError("select.metric must be 'bench/metric'", path=str(path), field="select.metric")
    bench, metric = sel.split("/", 1)
    points = []
    for i, ck in enumerate(data.get("checkpoints") or []):
        est = ((ck.get("metrics") or {}).get(bench) or {}).get(metric)
        if "step" not in ck:
            raise SftevalError("checkpoint has no 'step'", path=str(path), field=f"checkpoints[{i}].step")
        if est:
            points.append({"step": int(ck["step"]), "run_id": ck.get("run_id"), "value": float(est["value"]),
                           "ci95": list(est.get("ci95") or [None, None])})
    points.sort(key=lambda p: p["step"])
    out: dict[str, Any] = {"available": True, "path": str(path), "metric": sel, "mode": mode, "points": points,
                           "loss": _loss_analysis(data.get("train_log") or [])}
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


# ----------------------------------------------------------------------------- drift


def repetition(text: str, n: int = REPETITION_N) -> float:
    """1 - distinct/total word n-grams: 0 for no repeats, near 1 for a loop."""
    h = ngram_hashes(tokens(text), n)
    return 0.0 if h.size == 0 else 1.0 - np.unique(h).size / h.size


def _length(row: Mapping[str, Any]) -> float:
    nt = (row.get("meta") or {}).get("num_tokens")
    if isinstance(nt, list):
        nt = nt[0] if nt else None
    return float(nt) if isinstance(nt, (int, float)) else float(len(output_text(row).split()))


def _failed(row: Mapping[str, Any]) -> float:
    return 1.0 if row.get("answer") is None else 0.0


def _truncated(row: Mapping[str, Any]) -> float:
    return 1.0 if _finish(row) == "length" else 0.0


def _leaks(row: Mapping[str, Any]) -> float:
    out = output_text(row)
    return 1.0 if any(tok in out for tok in TEMPLATE_TOKENS) else 0.0


# per-item measures shared by `drift` (base vs tuned) and `health` (one run)
ITEM_MEASURES = {
    "extraction_failure_rate": _failed,
    "output_tokens": _length,
    "truncation_rate": _truncated,
    "repetition": lambda r: repetition(output_text(r)),
    "template_leak_rate": _leaks,
}


def health(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """One run's output health: the mean of each per-item measure."""
    vals = list(rows.values())
    return {name: (_num(float(np.mean([f(r) for r in vals]))) if vals else None) for name, f in ITEM_MEASURES.items()}


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
    return {"base": _num(float(bb.mean())), "tuned": _num(float(tt.mean())),
            "delta": _num(float(tt.mean() - bb.mean())), "p_value": _num(p), "test": test}


def drift(brows: Mapping[str, Mapping[str, Any]], trows: Mapping[str, Mapping[str, Any]], alpha: float
          ) -> dict[str, Any]:
    ids = [i for i in brows if i in trows]
    pairs = [(brows[i], trows[i]) for i in ids]

    def per_item(f: Any) -> dict[str, Any]:
        return _change([f(b) for b, _ in pairs], [f(t) for _, t in pairs])

    result: dict[str, Any] = {name: per_item(f) for name, f in ITEM_MEASURES.items()}
    result["strict_flexible_gap"] = None
    strict, flex = "exact_match_strict", "exact_match_flexible"
    if pairs and all(strict in (r.get("scores") or {}) and flex in (r.get("scores") or {}) for p in pairs for r in p):
        result["strict_flexible_gap"] = per_item(lambda r: float(r["scores"][flex]) - float(r["scores"][strict]))
    ob, ot = result["output_tokens"]["base"], result["output_tokens"]["tuned"]
    result["length_ratio"] = _num(ot / ob) if ob and ot is not None else None
    counts: dict[str, int] = {}
    for _, t in pairs:
        out = output_text(t)
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


# ----------------------------------------------------------------------------- contamination


def contamination(base: Run, tuned: Run, training: Training | None, per_bench: Mapping[str, Any],
                  settings: CompareSettings) -> dict[str, Any]:
    if training is None:
        return _unavailable("no training data (pass --train-data, or record it in the checkpoint's sfteval.json)")
    out: dict[str, Any] = {"available": True, "training_sources": list(training.sources),
                           "n_training": len(training.ids), "benchmarks": {}}
    for name, rows in tuned.samples.items():
        if name == find_bench(tuned.samples, TRAIN_BENCH) or name not in per_bench:
            continue
        prompts = [str(r.get("prompt") or "") for r in rows.values()]
        items, flagged_ids = [], set()
        prompt_ov = training.texts.check_many(prompts, ignore_shared=True)
        refs = {sid: r["reference"] for sid, r in rows.items() if isinstance(r.get("reference"), str)}
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


def _clean_scores(name: str, base: Run, tuned: Run, entry: Mapping[str, Any], flagged: set[str],
                  settings: CompareSettings) -> dict[str, Any] | None:
    metric = entry.get("primary_metric")
    if not metric:
        return None
    brows, trows = base.samples[name], tuned.samples[name]
    ids = [i for i in brows if i in trows and i not in flagged
           and (brows[i].get("scores") or {}).get(metric) is not None
           and (trows[i].get("scores") or {}).get(metric) is not None]
    if not ids:
        return {"metric": metric, "n": 0, "base": None, "tuned": None, "delta": None}
    res = compare_paired([float(brows[i]["scores"][metric]) for i in ids],
                         [float(trows[i]["scores"][metric]) for i in ids],
                         seed=settings.seed, resamples=settings.resamples)
    from sfteval.compare import est_dict

    return {"metric": metric, "n": len(ids), "base": est_dict(res.base), "tuned": est_dict(res.tuned),
            "delta": est_dict(res.delta)}
