"""Compare: one comparison.json (docs/compare-format.md) made readable.

Pick base and tuned among the pairs `sfteval compare` has written. Shows the
comparability warnings, the delta table with CIs, p-values and verdicts, a forest plot
of the primary metrics, per-subject breakdowns, the flips, and output drift. Nothing is
recomputed here: the page only draws what compare wrote.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from data import comparison, settings
from numfmt import fmt_ci, fmt_p, fmt_value
from sfteval.diagnoses import DIAGNOSES
from sfteval.errors import SftevalError
from sfteval.report_verdict import verdict_section
from sfteval.runfolder import Comparison, list_comparisons
from sfteval.runfolder.compared import BenchmarkComparison, JsonEstimate
from sfteval.runfolder.diagnosed import MEASURES

st.title("Compare")
cfg = settings()
found: dict[tuple[str, str], tuple[Any, Comparison]] = {}
for path in list_comparisons(cfg.reports):
    try:
        comp = comparison(path)
    except SftevalError as e:
        st.warning(f"Skipped an unreadable comparison: {e}")
        continue
    found.setdefault((comp.base.run_id, comp.tuned.run_id), (path, comp))
if not found:
    st.info(f"No comparison.json under `{cfg.reports}` yet. Write one with `sfteval compare BASE_RUN TUNED_RUN`.")
    st.stop()

c1, c2 = st.columns(2)
base_id = c1.selectbox("Base run", sorted({b for b, _ in found}), key="cmp_base")
tuned_id = c2.selectbox("Tuned run", sorted(t for b, t in found if b == base_id), key="cmp_tuned")
path, comp = found[(base_id, tuned_id)]
st.caption(f"`{path}` written {comp.created or '?'}; base model `{comp.base.model_path}`, "
           f"tuned model `{comp.tuned.model_path}`")

for m in comp.mismatches:
    where = f"{m.benchmark}: " if m.benchmark else ""
    text = f"{where}`{m.field}` differs (base {m.base!r}, tuned {m.tuned!r})"
    if m.count:
        text += f" on {m.count} items"
    (st.error if m.blocking else st.warning)(("Not comparable: " if m.blocking else "") + text)
for side, names in (("only in base", comp.only_in_base), ("only in tuned", comp.only_in_tuned)):
    if names:
        st.warning(f"Benchmarks {side}: {', '.join(names)}")

# The headline first: the report's verdict card (sfteval.report_verdict), same words, same numbers.
with st.container(border=True):
    st.markdown("**Headline**")
    card = verdict_section(comp).blocks[0]
    st.markdown("\n".join(f"- **{finding}**: {evidence}" for finding, evidence in card.rows))


def _verdict(entry: BenchmarkComparison, is_primary: bool, delta: JsonEstimate) -> str:
    forgetting = entry.forgetting
    if is_primary and forgetting is not None:
        return f"{forgetting.verdict} ({forgetting.detail})"
    ci = delta.interval()
    if ci is None:
        return "n/a"
    return "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "no clear change"


rows = []
for bench, entry in comp.benchmarks.items():
    primary = entry.primary_metric
    for metric, m in entry.metrics.items():
        d = m.delta
        lo, hi = d.lo, d.hi
        rows.append({
            "benchmark": bench, "metric": metric, "primary": metric == primary,
            "base": m.base.value, "tuned": m.tuned.value,
            "delta": d.value, "ci_lo": lo, "ci_hi": hi, "95% CI": fmt_ci([lo, hi], signed=True),
            "p": fmt_p(m.p_value), "p_holm": fmt_p(m.p_holm),
            "retention": m.retention, "lost": m.flips.lost if m.flips else None,
            "gained": m.flips.gained if m.flips else None,
            "n": entry.n_aligned, "verdict": _verdict(entry, metric == primary, d),
        })
table = pd.DataFrame(rows)
st.subheader("Deltas (tuned - base, paired)")
if table.empty:
    st.info("The comparison has no benchmark in common.")
    st.stop()
table = table.sort_values(["primary", "benchmark"], ascending=[False, True], kind="stable")
first = ["benchmark", "metric", "verdict", "delta", "95% CI", "base", "tuned", "p", "p_holm"]
shown = table[first + [c for c in table.columns if c not in first and c not in ("ci_lo", "ci_hi")]]
num = {c: st.column_config.NumberColumn(c, format="%.3f") for c in ("base", "tuned", "retention")}
num["delta"] = st.column_config.NumberColumn("delta", format="%+.3f")
st.dataframe(shown, hide_index=True, column_config=num)

st.subheader("Forest plot (primary metrics, 95% CI)")
forest = table[table["primary"] & table["delta"].notna()].copy()
forest["label"] = forest["benchmark"] + " / " + forest["metric"]
if not forest.empty:
    y = alt.Y("label:N", title=None, sort=None, axis=alt.Axis(labelLimit=320))
    # Colour by direction, whatever the wording: red for a drop that counts, green for a gain.
    forest["direction"] = forest["verdict"].map(
        lambda v: "worse" if v.startswith(("forgot", "worse")) else
        "better" if v.startswith(("improved", "better")) else "no clear change")
    colour = alt.Color("direction:N", title=None, legend=alt.Legend(orient="bottom"),
                       scale=alt.Scale(domain=["worse", "no clear change", "better"],
                                       range=["#d62728", "#7f7f7f", "#2ca02c"]))
    bars = alt.Chart(forest).mark_rule(strokeWidth=3).encode(
        y=y, x=alt.X("ci_lo:Q", title="delta (tuned - base)"), x2="ci_hi:Q", color=colour)
    dots = alt.Chart(forest).mark_point(filled=True, size=120).encode(
        y=y, x="delta:Q", color=colour, tooltip=["benchmark", "metric", alt.Tooltip("delta:Q", format="+.3f"), "95% CI", "p", "verdict"])
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    st.altair_chart((bars + dots + zero).properties(height=alt.Step(40)), width="stretch")

with_breakdown = [b for b, e in comp.benchmarks.items() if e.breakdown]
if with_breakdown:
    st.subheader("Per-subject breakdown")
    bench = st.selectbox("Benchmark", with_breakdown, key="cmp_breakdown")
    for group, subjects in comp.benchmarks[bench].breakdown.items():
        sub = pd.DataFrame([{group: name, "base": s.base.value, "tuned": s.tuned.value, "delta": s.delta}
                            for name, s in subjects.items()]).sort_values("delta", kind="stable")
        st.dataframe(sub, hide_index=True)
        st.altair_chart(alt.Chart(sub).mark_bar().encode(
            x=alt.X("delta:Q"), y=alt.Y(f"{group}:N", sort=None, axis=alt.Axis(labelLimit=320)),
            color=alt.condition("datum.delta < 0", alt.value("#d62728"), alt.value("#2ca02c")))
            .properties(height=alt.Step(28)), width="stretch")

st.subheader("Flips")
for bench, entry in comp.benchmarks.items():
    prim = entry.primary()
    flips = prim.flips if prim is not None else None
    examples = entry.top_flips
    if not flips and not examples:
        continue
    head = f"{bench}: {flips.lost} lost, {flips.gained} gained" if flips else bench
    with st.expander(head, expanded=False):
        if flips:
            st.markdown(f"Lost ids: `{', '.join(flips.lost_ids[:50]) or '-'}`  \n"
                        f"Gained ids: `{', '.join(flips.gained_ids[:50]) or '-'}`")
        for ex in examples:
            st.markdown(f"**{ex.direction}** item `{ex.id}`, reference `{ex.reference}`")
            st.code(ex.prompt, language=None, wrap_lines=True)
            left, right = st.columns(2)
            left.caption(f"base answer: {ex.base_answer}")
            left.code(ex.base_output, language=None, wrap_lines=True)
            right.caption(f"tuned answer: {ex.tuned_answer}")
            right.code(ex.tuned_output, language=None, wrap_lines=True)

drift = comp.drift
if drift:
    st.subheader("Output drift")
    drows = [{"benchmark": b, "quantity": q, "base": fmt_value(c.base), "tuned": fmt_value(c.tuned),
              "delta": fmt_value(c.delta), "p": fmt_p(c.p_value), "flagged": q in d.flags}
             for b, d in drift.items() for q in MEASURES if (c := d.measure(q)) is not None]
    if drows:
        st.dataframe(pd.DataFrame(drows), hide_index=True)

# Every registered diagnosis (sfteval.diagnoses.DIAGNOSES, the keys compare writes and the
# report renders), as written: a new diagnosis shows up here without a page edit.
st.subheader("Diagnoses")
written = comp.to_dict()
for name in DIAGNOSES:
    doc = written.get(name)
    if doc is None:
        st.caption(f"`{name}`: not in this comparison (written by an older sfteval)")
        continue
    record = comp.diagnoses[name]
    unavailable = getattr(record, "available", True) is False
    with st.expander(f"{name}" + (f" (not available: {record.reason})" if unavailable else ""),
                     expanded=False):
        st.json(doc, expanded=False)
