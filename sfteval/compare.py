"""Base vs tuned: align two run folders by item id and compare them honestly.

Covered: refusing comparisons whose prompts, generation settings, data or chat-template
use differ (listing exactly what differs),
paired deltas with bootstrap CIs, McNemar / paired-t p-values with Holm adjustment,
retention, flips, per-group breakdowns, forgetting verdicts, and running the
diagnoses registered in `sfteval.diagnoses.DIAGNOSES`, assembled into one
`comparison.json` (docs/compare-format.md). Dependencies run one way: compare ->
diagnoses -> runfolder; nothing here is imported back by a diagnosis.

Not covered: running models (checkpoints are turned into runs by the CLI through the
runner first) and the statistics themselves (`sfteval.paired`).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from sfteval.diagnoses import DIAGNOSES
from sfteval.diagnoses.common import num
from sfteval.diagnoses.context import CompareSettings, DiagnosisInput
from sfteval.diagnoses.forgetting import forgetting_verdict
from sfteval.diagnoses.training import load_training, training_sources
from sfteval.errors import SftevalError
from sfteval.lineage import lineage_of
from sfteval.overlap import NGRAM, RUN, SHARE
from sfteval.metric_compare import compare_metric, group_table
from sfteval.paired import holm
from sfteval.selection import split_of
from sfteval.runfolder import (
    COMPARE_SCHEMA,
    BenchmarkResult,
    Comparison,
    Run,
    RunSummary,
    SampleLine,
    is_run_dir,
    read_comparison,
    write_comparison,
)
from sfteval.runfolder import read_run as load_run
from sfteval.runfolder.compared import BenchmarkComparison, Mismatch
from sfteval.runfolder.records import Where

# re-exported: callers import the settings, the loader and the writer from here
__all__ = ["COMPARE_SCHEMA", "CompareSettings", "Run", "compare_runs", "is_run_dir", "load_run", "read_comparison",
           "write_comparison"]

TOP_FLIPS = 5
MAX_IDS_IN_MISMATCH = 20
PROMPT_TAIL_CHARS = 2000
# Settings that may differ without invalidating a comparison (dotted paths).
NON_BLOCKING_SETTINGS = ("settings.gen.seed",)


# ----------------------------------------------------------------------------- mismatches


def _flatten(obj: Any, prefix: str) -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: obj}


def _mismatch(bench: str | None, fld: str, base: Any, tuned: Any, blocking: bool,
              count: int | None = None, ids: list[str] | None = None) -> dict[str, Any]:
    return {"benchmark": bench, "field": fld, "base": base, "tuned": tuned, "blocking": blocking,
            "count": count, "ids": ids or []}


def _first_difference(sid: str, a: Any, b: Any, context: int = 40) -> dict[str, Any]:
    """Where two prompts first diverge, with some context, so the user sees what differs."""
    a, b = str(a or ""), str(b or "")
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, k - context)
    return {"id": sid, "offset": k, "base": a[lo : k + context], "tuned": b[lo : k + context]}


def find_mismatches(base: Run, tuned: Run, benches: list[str]) -> list[dict[str, Any]]:
    """Everything that differs between the runs in what shapes prompts and scoring."""
    out: list[dict[str, Any]] = []
    for key in ("name", "dtype"):
        b, t = base.results.backend.get(key), tuned.results.backend.get(key)
        if b != t:
            out.append(_mismatch(None, f"backend.{key}", b, t, False))
    # how prompts were rendered (chat template used or not, its hash, BOS text): all blocking
    bp = _flatten(dict(base.results.prompting), "prompting")
    tp = _flatten(dict(tuned.results.prompting), "prompting")
    for key in sorted(set(bp) | set(tp)):
        if bp.get(key) != tp.get(key):
            out.append(_mismatch(None, key, bp.get(key), tp.get(key), True))
    for name in benches:
        bi, ti = base.benchmarks[name], tuned.benchmarks[name]
        bs, ts = _flatten(dict(bi.settings), "settings"), _flatten(dict(ti.settings), "settings")
        for key in sorted(set(bs) | set(ts)):
            if bs.get(key) != ts.get(key):
                out.append(_mismatch(name, key, bs.get(key), ts.get(key), key not in NON_BLOCKING_SETTINGS))
        b_sha, t_sha = bi.data.get("sha256"), ti.data.get("sha256")
        if b_sha != t_sha:
            out.append(_mismatch(name, "data.sha256", b_sha, t_sha, True))
        brows, trows = base.samples[name], tuned.samples[name]
        aligned = [i for i in brows if i in trows]
        differ = [i for i in aligned if brows[i].prompt_hash != trows[i].prompt_hash]
        if differ:
            first = differ[0]
            out.append(_mismatch(name, "samples.prompt_hash", None, None, True, len(differ),
                                 differ[:MAX_IDS_IN_MISMATCH])
                       | {"example": _first_difference(first, brows[first].prompt, trows[first].prompt)})
        only = [i for i in brows if i not in trows] + [i for i in trows if i not in brows]
        if only:
            out.append(_mismatch(name, "samples.ids", len(brows), len(trows), False, len(only),
                                 only[:MAX_IDS_IN_MISMATCH]))
        if bi.prompts_digest != ti.prompts_digest and not differ and not only:
            # digests differ although every item's prompt hash agrees: the digest itself is suspect
            out.append(_mismatch(name, "prompts_digest", bi.prompts_digest, ti.prompts_digest, True))
    return out


def describe_mismatch(m: Mismatch | dict[str, Any]) -> str:
    if not isinstance(m, Mismatch):
        m = Mismatch.from_dict(m)
    where = f"{m.benchmark}: " if m.benchmark else ""
    if m.field == "samples.prompt_hash":
        ex = m.example
        text = (f"{where}samples.prompt_hash: {m.count} aligned items have different prompts "
                f"(e.g. ids {', '.join(m.ids[:5])})")
        if ex is not None:
            text += f"; item {ex.id} first differs at character {ex.offset}: " \
                    f"base ...{ex.base!r}... vs tuned ...{ex.tuned!r}..."
        return text
    if m.field == "samples.ids":
        return f"{where}samples.ids: {m.count} items are in only one run (base {m.base} items, tuned {m.tuned})"
    return f"{where}{m.field} differs: base {m.base!r}, tuned {m.tuned!r}"


# ----------------------------------------------------------------------------- per benchmark


def _reported(entry: BenchmarkResult, metric: str) -> dict[str, Any] | None:
    est = entry.metrics.get(metric)
    return est.to_dict() if est is not None else None


def _flip_example(direction: str, i: str, brow: SampleLine, trow: SampleLine) -> dict[str, Any]:
    return {
        "direction": direction, "id": i,
        "prompt": brow.prompt[-PROMPT_TAIL_CHARS:],
        "reference": brow.reference,
        "base_output": brow.output, "tuned_output": trow.output,
        "base_answer": brow.answer, "tuned_answer": trow.answer,
    }


def _score_changes(metric: str, brows: dict[str, SampleLine], trows: dict[str, SampleLine]) -> list[dict[str, Any]]:
    """The TOP_FLIPS largest drops and gains of a graded per-item score, as flip examples
    with the two scores (items without a score on both sides, or unchanged, are skipped)."""
    changes = []
    for i, b in brows.items():
        t = trows.get(i)
        bs, ts = b.scores.get(metric), t.scores.get(metric) if t is not None else None
        if t is not None and isinstance(bs, (int, float)) and isinstance(ts, (int, float)) and ts != bs:
            changes.append((float(ts) - float(bs), i, float(bs), float(ts)))
    changes.sort(key=lambda c: (c[0], c[1]))
    picked = [("lost", c) for c in changes[:TOP_FLIPS] if c[0] < 0]
    picked += [("gained", c) for c in reversed(changes[-TOP_FLIPS:]) if c[0] > 0]
    return [_flip_example(d, i, brows[i], trows[i]) | {"metric": metric, "base_score": bs, "tuned_score": ts,
                                                        "score_change": num(dv)}
            for d, (dv, i, bs, ts) in picked]


def _breakdown(bi: BenchmarkResult, ti: BenchmarkResult, metric: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, groups in bi.breakdown.items():
        tgroups = ti.breakdown.get(key, {})
        rows = {}
        for g, metrics in groups.items():
            be, te = metrics.get(metric), tgroups.get(g, {}).get(metric)
            if be is not None and te is not None:
                # only the two runs' own group estimates: no paired interval or test here
                rows[g] = {"base": be.to_dict(), "tuned": te.to_dict(), "delta": num(te.value - be.value),
                           "delta_ci95": [None, None], "n": None, "p_value": None, "q_value": None, "flagged": False}
        if rows:
            out[key] = rows
    return out


def compare_benchmark(name: str, base: Run, tuned: Run, settings: CompareSettings,
                      general: bool) -> BenchmarkComparison:
    """One benchmark's entry of comparison.json, typed (built as JSON, read through its record)."""
    bi, ti = base.benchmarks[name], tuned.benchmarks[name]
    brows, trows = base.samples[name], tuned.samples[name]
    if settings.split and (not settings.split_benchmarks or name in settings.split_benchmarks):
        # the half of the items a sweep did not choose its checkpoint on (sfteval.selection)
        brows = {i: r for i, r in brows.items() if split_of(i) == settings.split}
        trows = {i: r for i, r in trows.items() if split_of(i) == settings.split}
    metric_names = [m for m in bi.metrics if m in ti.metrics]
    primary = bi.primary_metric or (metric_names[0] if metric_names else None)
    metrics: dict[str, Any] = {}
    for metric in metric_names:
        stats = compare_metric(name, metric, brows, trows, bi.kind, settings)  # the statistics: metric_compare.py
        if stats is not None:
            metrics[metric] = stats | {"base_reported": _reported(bi, metric), "tuned_reported": _reported(ti, metric)}
    entry: dict[str, Any] = {
        "kind": bi.kind, "general": general, "primary_metric": primary,
        "n_base": len(brows), "n_tuned": len(trows), "n_aligned": sum(1 for i in brows if i in trows),
        "metrics": metrics, "forgetting": None, "top_flips": [], "breakdown": {},
    }
    prim = metrics.get(primary) if primary else None
    if prim is not None:
        if general:
            d = prim["delta"]
            nan = float("nan")  # JSON null back to NaN: no CI means "no evidence"
            lo, hi = (nan if x is None else x for x in d["ci95"])
            value = nan if d["value"] is None else d["value"]
            entry["forgetting"] = forgetting_verdict(value, (lo, hi), settings.margin, prim.get("uninformative")) \
                | {"metric": primary}
        if prim["flips"]:
            for direction in ("lost", "gained"):
                for i in prim["flips"][f"{direction}_ids"][:TOP_FLIPS]:
                    entry["top_flips"].append(_flip_example(direction, i, brows[i], trows[i]))
        else:  # graded scores (reference, judge...): the largest per-item changes either way
            entry["top_flips"] = _score_changes(primary, brows, trows)
        paired = {key: group_table(key, brows, trows, primary) for key in bi.breakdown}
        entry["breakdown"] = {k: v for k, v in paired.items() if v} or _breakdown(bi, ti, primary)
    return BenchmarkComparison.from_dict(json_safe(entry), Where(), f"benchmarks.{name}")


# ----------------------------------------------------------------------------- whole comparison


def run_summary(run: Run) -> dict[str, Any]:
    model = run.results.model
    return RunSummary(run.run_id, run.results.label or None, str(run.path), model.path, model.digest).to_dict()


def _is_general(name: str, info: BenchmarkResult, settings: CompareSettings) -> bool:
    """The benchmark's declared role (`general`), or named general by --general."""
    return info.general or name in settings.general


def compare_runs(base: Run, tuned: Run, settings: CompareSettings = CompareSettings()) -> dict[str, Any]:
    """The whole comparison as a JSON-ready dict (docs/compare-format.md).

    Raises SftevalError (exit 2) on blocking mismatches unless `allow_mismatch`.
    """
    benches = [b for b in base.benchmarks if b in tuned.benchmarks]
    if not benches:
        raise SftevalError(
            f"no benchmark in common (base: {', '.join(base.benchmarks) or 'none'}; "
            f"tuned: {', '.join(tuned.benchmarks) or 'none'})", path=str(tuned.path),
            hint="run both models on the same benchmarks",
        )
    mismatches = find_mismatches(base, tuned, benches)
    blocking = [m for m in mismatches if m["blocking"]]
    if blocking and not settings.allow_mismatch:
        lines = "\n  ".join(describe_mismatch(m) for m in blocking)
        raise SftevalError(
            f"the runs are not comparable:\n  {lines}", path=str(tuned.path),
            hint="re-run both with the same settings, or pass --allow-mismatch to compare anyway "
                 "(the differences stay listed in the report)",
        )
    per_bench = {b: compare_benchmark(b, base, tuned, settings, _is_general(b, base.benchmarks[b], settings))
                 for b in benches}
    family = [(b, str(e.primary_metric)) for b, e in per_bench.items() if e.primary_metric in e.metrics]
    pvals = [per_bench[b].metrics[m].p_value for b, m in family]
    finite = [(k, p) for k, p in zip(family, pvals) if p is not None]
    for (b, m), adj in zip([k for k, _ in finite], holm([p for _, p in finite])):
        e = per_bench[b]
        per_bench[b] = replace(e, metrics={**e.metrics, m: replace(e.metrics[m], p_holm=adj)})
    train_sources = training_sources(settings.train_data, tuned.results)
    # the diagnoses read the typed entries, as every later reader of the file does
    inputs = DiagnosisInput(base, tuned, tuple(benches), per_bench, settings, load_training(train_sources))
    diagnoses = {name: diagnose(inputs) for name, diagnose in DIAGNOSES.items()}
    doc = json_safe({
        "schema": COMPARE_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "base": run_summary(base),
        "tuned": run_summary(tuned),
        "lineage": lineage_of(base.results, tuned.results),
        "settings": {
            "seed": settings.seed, "resamples": settings.resamples, "alpha": settings.alpha,
            "margin": settings.margin,
            "general": sorted(b for b in benches if per_bench[b].general),
            "allow_mismatch": settings.allow_mismatch, "train_data": [str(p) for p in train_sources],
            "sweep": settings.sweep, "split": settings.split, "split_benchmarks": list(settings.split_benchmarks),
            "ngram": {"n": NGRAM, "share": SHARE, "run": RUN},
        },
        "mismatches": mismatches,
        "only_in_base": [b for b in base.benchmarks if b not in tuned.benchmarks],
        "only_in_tuned": [b for b in tuned.benchmarks if b not in base.benchmarks],
        "benchmarks": {b: e.to_dict() for b, e in per_bench.items()},
        "holm": {"family": [f"{b}/{m}" for b, m in family], "method": "holm"},
        **diagnoses,
    })
    # through the typed records: what is written is exactly what every reader reads back
    return Comparison.from_dict(doc).to_dict()


def json_safe(obj: Any) -> Any:
    """NaN/inf -> null everywhere (values copied from results.json included): strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def default_out(reports: str | Path, comparison: dict[str, Any]) -> Path:
    return Path(reports) / "compare" / f"{comparison['base']['run_id']}__{comparison['tuned']['run_id']}"
