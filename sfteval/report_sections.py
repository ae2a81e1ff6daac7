"""What a report says: the sections of a comparison report and of a run report.

Split from `sfteval.report` (rendering) to keep each module readable. Every number
comes from comparison.json or the run folder; nothing is recomputed here except
run-level output health (means of per-sample measures, `sfteval.diagnoses.drift.health`).
`SECTIONS` renders each diagnosis of `sfteval.diagnoses.DIAGNOSES` under the same key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sfteval.compare import describe_mismatch
from sfteval.diagnoses import drift as drift_diagnosis
from sfteval.report_blocks import (
    FLIP_TEXT_CHARS,
    MAX_GROUPS,
    Block,
    Pre,
    Section,
    Table,
    figure,
    fmt,
    fmt_ci,
    fmt_p,
    plots_note,
)
from sfteval.report_plots import forest_plot, group_bars, sweep_plot
from sfteval.runfolder import Comparison, RunResults, read_run
from sfteval.runfolder.compared import GroupDelta
from sfteval.runfolder.diagnosed import MEASURES, Rate, SweepAnalysis
from sfteval.runfolder.records import finite


def _clip(text: Any, n: int = FLIP_TEXT_CHARS) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else "..." + s[-n:]


def _group_rows(groups: Mapping[str, GroupDelta]) -> list[tuple[str, float, float, float | None, float | None]]:
    rows = [(g, float(v.base.value), float(v.tuned.value), v.base.stderr, v.tuned.stderr) for g, v in groups.items()
            if v.base.value is not None and v.tuned.value is not None]
    rows.sort(key=lambda r: abs(r[2] - r[1]), reverse=True)
    return sorted(rows[:MAX_GROUPS], key=lambda r: r[0])


# ----------------------------------------------------------------------------- comparison


def _scores(c: Comparison, missing: list[str]) -> Section:
    rows, forest = [], []
    for b, e in c.benchmarks.items():
        for m, x in e.metrics.items():
            d = x.delta
            rows.append((b, m + (" *" if m == e.primary_metric else ""), fmt(x.base.value), fmt(x.tuned.value),
                         f"{fmt(d.value)} {fmt_ci(d.ci95, True)}", f"{fmt_p(x.p_value)} ({x.test})", fmt_p(x.p_holm),
                         fmt(x.retention), f"-{x.flips.lost} / +{x.flips.gained}" if x.flips else "-"))
            ci = d.interval()
            if m == e.primary_metric and d.value is not None and ci is not None:
                forest.append((f"{b}/{m}", d.value, ci[0], ci[1]))
    blocks: list[Block] = [
        Table(("benchmark", "metric", "base", "tuned", "delta [95% CI]", "p", "p (Holm)", "retention",
               "flips lost / gained"), tuple(rows)),
        "* primary metric (the Holm family). CIs: paired bootstrap over aligned items "
        f"(B={c.settings['resamples']}, seed={c.settings['seed']}).",
    ]
    blocks += figure("forest", forest_plot(forest, c.margin or 0.0), "Deltas of the primary metrics", missing)
    return Section("Scores: tuned vs base", tuple(blocks))


def _forgetting(c: Comparison, missing: list[str]) -> Section | None:
    rows = [(b, f.metric or "", f.verdict, f.detail, fmt(f.delta), fmt_ci(f.ci95, True))
            for b, e in c.benchmarks.items() if (f := e.forgetting) is not None]
    if not rows:
        return None
    m = c.margin or 0.0
    return Section("Catastrophic forgetting (general benchmarks)", (
        f"Margin {m:g}: forgot when the whole CI is below -{m:g}; improved when it is above +{m:g}.",
        Table(("benchmark", "metric", "verdict", "detail", "delta", "95% CI"), tuple(rows)),
    ))


def _breakdowns(c: Comparison, missing: list[str]) -> Section | None:
    blocks: list[Block] = []
    for b, e in c.benchmarks.items():
        for key, groups in e.breakdown.items():
            rows = _group_rows(groups)
            blocks += figure(f"groups_{b}_{key}", group_bars(f"{b} by {key} ({e.primary_metric})", rows),
                             f"{b}: {e.primary_metric} by {key}", missing)
            worst = sorted(groups.items(), key=lambda kv: kv[1].delta if kv[1].delta is not None else 0)[:10]
            # the largest of many groups' drops is large by chance: read it with its interval and
            # its Benjamini-Hochberg q-value over all groups (flagged: q < 0.05)
            blocks.append(Table((key, "base", "tuned", "delta", "95% CI", "q (BH)", "flagged"), tuple(
                (g, fmt(v.base.value), fmt(v.tuned.value), fmt(v.delta), fmt_ci(v.delta_ci95, True),
                 fmt(v.q_value), "yes" if v.flagged else "") for g, v in worst)))
    return Section("Per-group scores (largest drops first; flagged only when q < 0.05 over all groups)",
                   tuple(blocks)) if blocks else None


def _rate(r: Rate | None) -> str:
    if r is None or r.share is None:
        return "-"
    return f"{r.count}/{r.n} ({fmt(r.share.value)})"


def _sweep_blocks(sw: SweepAnalysis, missing: list[str]) -> list[Block]:
    blocks: list[Block] = figure("sweep", sweep_plot(sw), f"Checkpoint sweep: {sw.metric} and losses", missing)
    pk, loss, keep, eq = sw.peak, sw.loss, sw.keep, sw.earliest_equivalent
    if pk is not None:
        blocks.append(f"Peak {sw.metric} = {fmt(pk.value)} at step {pk.step}; last step {pk.last_step}: "
                      f"{fmt(pk.last_value)}" + (
                          f" (peaked before the end: last below best, paired test corrected for {pk.correction}, "
                          f"p = {fmt(pk.p_corrected)})" if pk.significant else
                          " (peaked before the end by point estimate; not tested: no per-item scores)"
                          if pk.significant is None and pk.before_end else ""))
    if loss is not None and loss.available:
        blocks.append(f"Eval loss minimum {fmt(loss.min_eval_loss)} at step {loss.min_eval_step}, last "
                      f"{fmt(loss.last_eval_loss)}; " + ("EVAL LOSS RISING WHILE TRAIN LOSS FALLS."
                                                        if loss.diverging else "no divergence."))
    if keep is not None:
        reported = f"; on the report split: {fmt(keep.value)} {fmt_ci(keep.ci95)}" if keep.reported_on else ""
        blocks.append(f"Keep step {keep.step} ({keep.reason}{reported})"
                      + (f"; earliest equivalent to the best within {eq['margin']:g} (TOST): step {eq['step']}."
                         if eq and eq.get("step") is not None else "."))
    blocks.append(Table(("step", "run", sw.metric or "", "95% CI"), tuple(
        (str(p.step), str(p.run_id), fmt(p.value), fmt_ci(p.ci95)) for p in sw.points)))
    return blocks


def sweep_sections(sw: SweepAnalysis | Mapping[str, Any]) -> tuple[str, list[Section]]:
    """A report for one sweep.json (the analysis of `sfteval.diagnoses.sweep.sweep_analysis`)."""
    if not isinstance(sw, SweepAnalysis):
        sw = SweepAnalysis.from_dict(sw)
    missing: list[str] = []
    title = f"sfteval sweep: {sw.path}"
    if not sw.available:
        return title, [Section("Sweep", (f"Not available ({sw.reason}).",))]
    return title, [Section("Checkpoints", tuple(_sweep_blocks(sw, missing)))] + plots_note(missing)


def _overfitting(c: Comparison, missing: list[str]) -> Section | None:
    o = c.overfitting
    if o is None:
        return None
    blocks: list[Block] = []
    th = o.train_heldout
    if th.available:
        rows = [(who, fmt(g.train.value), fmt(g.heldout.value), f"{fmt(g.gap.value)} {fmt_ci(g.gap.ci95, True)}")
                for who, g in (("tuned", th.tuned), ("base", th.base)) if g is not None]
        blocks += [f"Train vs held-out ({th.metric}): {'GAP FLAGGED' if th.flag else 'no significant gap'}.",
                   Table(("model", "train", "heldout", "gap [95% CI]"), tuple(rows))]
    else:
        blocks.append(f"Train vs held-out: not available ({th.reason}).")
    mem = o.memorisation
    if mem.available:
        rows = []
        if mem.heldout is not None:
            rows.append(("heldout (reproduces a training response)", _rate(mem.heldout.tuned),
                         _rate(mem.heldout.base)))
        rows += [(f"{b} (regurgitates training text)", _rate(v.tuned), _rate(v.base))
                 for b, v in mem.regurgitation.items()]
        blocks += [f"Memorisation against {mem.n_training} training examples "
                   f"({', '.join(mem.training_sources)}):", Table(("generations", "tuned", "base"), tuple(rows))]
    else:
        blocks.append(f"Memorisation: not available ({mem.reason}).")
    sw = o.sweep
    if sw.available:
        blocks += _sweep_blocks(sw, missing)
    else:
        blocks.append(f"Checkpoint sweep: not available ({sw.reason}).")
    return Section("Overfitting and memorisation", tuple(blocks))


def _drift(c: Comparison, missing: list[str]) -> Section:
    rows = []
    for b, d in c.drift.items():
        for q in MEASURES:
            x = d.measure(q)
            if x is not None:
                rows.append((b, q, fmt(x.base), fmt(x.tuned), fmt(x.delta), fmt_p(x.p_value),
                             "FLAG" if q in d.flags else ""))
        if d.template_tokens:
            toks = ", ".join(f"{k} x{v}" for k, v in d.template_tokens.items())
            rows.append((b, "template tokens in tuned outputs", "", toks, "", "", ""))
        if d.length_ratio is not None:
            rows.append((b, "length ratio (tuned/base)", "", fmt(d.length_ratio), "", "", ""))
    return Section("Behaviour drift", (Table(("benchmark", "measure", "base", "tuned", "change", "p", ""),
                                             tuple(rows)),))


def _contamination(c: Comparison, missing: list[str]) -> Section | None:
    ct = c.contamination
    if ct is None:
        return None
    if not ct.available:
        return Section("Contamination", (f"Not available ({ct.reason}).",))
    rows, blocks = [], []
    for b, v in ct.benchmarks.items():
        cl = v.clean
        base = cl.base.value if cl is not None and cl.base is not None else None
        tuned = cl.tuned.value if cl is not None and cl.tuned is not None else None
        delta = cl.delta if cl is not None else None
        rows.append((b, f"{v.flagged}/{v.n}", fmt(base), fmt(tuned),
                     f"{fmt(delta.value)} {fmt_ci(delta.ci95, True)}" if delta is not None else "-"))
        if v.items:
            ids = ", ".join(f"{i.id} (train {i.train_id})" for i in v.items[:20])
            blocks.append(f"{b}: flagged items {ids}" + (" ..." if len(v.items) > 20 else ""))
    return Section("Contamination", (
        f"Benchmark items whose own text overlaps the SFT data ({ct.n_training} examples); "
        "scores recomputed without them.",
        Table(("benchmark", "flagged", "clean base", "clean tuned", "clean delta [95% CI]"), tuple(rows)), *blocks))


def _flips(c: Comparison) -> Section | None:
    """Pass/fail flips, and for graded scores the largest per-item changes; prompts folded."""
    blocks: list[Block] = []
    for b, e in c.benchmarks.items():
        for f in e.top_flips:
            if f.score_change is not None:  # a graded metric (reference kinds, judges)
                what = f"{f.metric} {fmt(f.base_score)} -> {fmt(f.tuned_score)} ({f.score_change:+.3f})"
            else:
                what = f"base answer {f.base_answer!r}, tuned {f.tuned_answer!r}"
            head = f"{b} #{f.id}: {f.direction} ({what}, reference {_clip(f.reference, 80)!r})"
            blocks += [head, Pre("prompt (end)", _clip(f.prompt), folded=True),
                       Pre("base output", _clip(f.base_output)), Pre("tuned output", _clip(f.tuned_output))]
    return Section("Top flips (largest per-item changes for graded scores)", tuple(blocks)) if blocks else None


def _names(xs: Sequence[str] | None) -> str:
    return ", ".join(xs) if xs else "none"


# One renderer per diagnosis, keyed like `sfteval.diagnoses.DIAGNOSES` (a test checks the keys
# agree); each takes the whole comparison and the list of plots left out.
SECTIONS: dict[str, Callable[[Comparison, list[str]], Section | None]] = {
    "forgetting": _forgetting,
    "overfitting": _overfitting,
    "drift": _drift,
    "contamination": _contamination,
}


def comparison_sections(c: Comparison | Mapping[str, Any], gate: str | None = None) -> tuple[str, list[Section]]:
    """The sections of a comparison report, the verdict card first (`gate`: the gate's
    one-line result when there is one)."""
    from sfteval.report_verdict import verdict_section

    if not isinstance(c, Comparison):
        c = Comparison.from_dict(c)
    base, tuned = c.base, c.tuned
    title = f"sfteval comparison: {base.label or base.run_id} -> {tuned.label or tuned.run_id}"
    missing: list[str] = []
    intro = [f"Base run `{base.run_id}` ({base.model_path}), tuned run `{tuned.run_id}` ({tuned.model_path})."]
    fg = c.forgetting
    if fg is not None:
        intro.append(f"Forgetting (margin {fg.margin or 0.0:g}): forgot {_names(fg.forgot)}; improved "
                     f"{_names(fg.improved)}; no evidence {_names(fg.no_evidence)}; "
                     f"not measured {_names(fg.not_measured)}.")
    sections = [verdict_section(c, gate), Section("Summary", tuple(intro))]
    if c.mismatches:
        rows = tuple((describe_mismatch(m), "yes" if m.blocking else "no") for m in c.mismatches)
        sections.append(Section("Differences between the runs", (
            "ACCEPTED WITH --allow-mismatch: read the deltas with these in mind."
            if any(m.blocking for m in c.mismatches) else "Informational only.",
            Table(("difference", "blocking"), rows))))
    sections.append(_scores(c, missing))
    groups = _breakdowns(c, missing)
    if groups:
        sections.append(groups)
    for name, render in SECTIONS.items():
        if name in c.diagnoses:
            section = render(c, missing)
            if section:
                sections.append(section)
    flips = _flips(c)
    if flips:
        sections.append(flips)
    return title, sections + plots_note(missing)


# ----------------------------------------------------------------------------- single run


def run_sections(results: RunResults, run_dir: str | Path | None) -> tuple[str, list[Section]]:
    title = f"sfteval run: {results.label or results.run_id}"
    missing: list[str] = []
    rows, bars = [], []
    for b, e in results.benchmarks.items():
        for m, est in e.metrics.items():
            primary = m == e.primary_metric
            rows.append((b, m + (" *" if primary else ""), fmt(finite(est.value)),
                         fmt_ci([finite(est.ci95[0]), finite(est.ci95[1])]), str(est.n), est.method))
            if primary and finite(est.value) is not None:
                bars.append((f"{b}/{m}", est.value, None, finite(est.stderr), None))
    sections = [Section("Run", (f"Run `{results.run_id}`, model {results.model.path}, backend "
                                f"{results.backend_name}, finished {results.finished}.",)),
                Section("Scores", (Table(("benchmark", "metric", "value", "95% CI", "n", "method"), tuple(rows)),
                                   "* primary metric",
                                   *figure("scores", group_bars("primary metrics (95% CI)", bars),
                                           "Primary metrics", missing)))]
    blocks: list[Block] = []
    for b, e in results.benchmarks.items():
        metric = e.primary_metric
        for key, groups in e.breakdown.items():
            rows_g = [(g, ms[metric].value, None, finite(ms[metric].stderr), None)
                      for g, ms in sorted(groups.items()) if metric in ms][:MAX_GROUPS]
            blocks += figure(f"groups_{b}_{key}", group_bars(f"{b} by {key}", rows_g), f"{b} by {key}", missing)
    if blocks:
        sections.append(Section("Per-group scores", tuple(blocks)))
    if run_dir is not None:
        run = read_run(run_dir)
        hrows = []
        for b, samples in run.samples.items():
            h = drift_diagnosis.health(samples, run.benchmarks[b].kind)
            hrows.append((b, *(fmt(h[k]) for k in drift_diagnosis.ITEM_MEASURES)))
        sections.append(Section("Output health", (Table(("benchmark", *drift_diagnosis.ITEM_MEASURES), tuple(hrows)),)))
    return title, sections + plots_note(missing)
