"""Samples: two runs side by side on one benchmark, regressions first.

The pairing is cached per (files, metric); filtering is vectorised pandas; only one
page of items is rendered in full, so a 10,000-sample run opens quickly (perf/
dashboard_samples.py measures it).
"""

from __future__ import annotations

import math

import streamlit as st

from data import STATUS_ORDER, comparison, filter_pairs, list_runs, metric_names, pairs, results, settings
from sfteval.errors import SftevalError
from sfteval.runfolder import common_benchmarks, list_comparisons

ANSWER_KINDS = ("choice", "math")  # kinds whose score is decided by an extracted answer
# What to show: a reader hunting regressions and one checking what the tuning bought both
# want one control, not two toggles that can contradict each other.
SHOW = {
    "all items": None,
    "regressions only": ["regression"],
    "improvements only": ["improvement"],
    "changed either way": ["regression", "improvement"],
}
SORTS = {
    "delta: largest drop first": ("delta", True),
    "delta: largest gain first": ("delta", False),
    "status (regressions first)": (None, True),
    "item id": ("id", True),
}


def _default_pair(reports, ids: list[str]) -> tuple[int, int]:
    """Indices of base and tuned: ?base=&tuned= in the URL, else the newest comparison's
    pair (what a user compared is what they want to read), else the two newest runs."""
    q = st.query_params
    if q.get("base") in ids and q.get("tuned") in ids:
        return ids.index(q["base"]), ids.index(q["tuned"])
    newest = None
    for path in list_comparisons(reports):
        try:
            comp = comparison(path)
        except SftevalError:
            continue
        key = (comp.created, comp.base.run_id, comp.tuned.run_id)
        if key[1] in ids and key[2] in ids and (newest is None or key > newest):
            newest = key
    if newest:
        return ids.index(newest[1]), ids.index(newest[2])
    return min(1, len(ids) - 1), 0

PAGE_SIZE = 10

st.title("Samples")
cfg = settings()
runs = [r for r in list_runs(cfg.reports) if r.complete]
if len(runs) < 2:
    st.info("Samples compares two finished runs; fewer than two are under the reports folder.")
    st.stop()

ids = [r.run_id for r in runs]
by_id = {r.run_id: r for r in runs}
c1, c2, c3, c4 = st.columns(4)
base_ix, tuned_ix = _default_pair(cfg.reports, ids)
base_id = c1.selectbox("Base run", ids, index=base_ix, key="samples_base")
tuned_id = c2.selectbox("Tuned run", ids, index=tuned_ix, key="samples_tuned")
if base_id == tuned_id:
    st.warning("Pick two different runs.")
    st.stop()
base, tuned = by_id[base_id], by_id[tuned_id]
benches = common_benchmarks(base.path, tuned.path)
if not benches:
    st.warning("These two runs have no benchmark in common.")
    st.stop()
bench = c3.selectbox("Benchmark", benches, key="samples_bench")
metric = c4.selectbox("Metric", metric_names(base.path, bench) or ["score"], key="samples_metric")

try:
    df = pairs(base.path, tuned.path, bench, metric)
except SftevalError as e:  # a damaged samples file (torn mid-file, an id twice): say which, not crash
    st.error(f"Cannot read these runs' samples: {e}")
    st.stop()
counts = df["status"].value_counts()
cols = st.columns(len(STATUS_ORDER))
for col, status in zip(cols, STATUS_ORDER):
    col.metric(status, int(counts.get(status, 0)))

f0, f1, f2, f3 = st.columns([2, 3, 2, 3])
show = f0.selectbox("Show", list(SHOW), key="samples_show")
text = f1.text_input("Search text", placeholder="in prompt, reference, outputs, answers", key="samples_text")
id_query = f2.text_input("Item ids", placeholder="e.g. 17, 42", key="samples_ids")
sort_label = f3.selectbox("Sort by", list(SORTS), key="samples_sort")
view = filter_pairs(df, text=text, ids=id_query, statuses=SHOW[show])
column, ascending = SORTS[sort_label]
if column is not None:
    view = view.sort_values(column, ascending=ascending, kind="stable", na_position="last")

# Generative kinds (reference, instruction, judged...) are scored on the whole output, and
# extract no answer worth a column: show what each model wrote instead of empty answers.
kind = ((results(base.path)["benchmarks"].get(bench) or {}).get("kind"))
generative = kind not in ANSWER_KINDS or not (
    view["base_answer"].astype(bool).any() or view["tuned_answer"].astype(bool).any())
answer_cols = ["base_output", "tuned_output"] if generative else ["base_answer", "tuned_answer"]
st.dataframe(
    view[["id", "status", "delta", "base_score", "tuned_score", *answer_cols, "reference"]],
    hide_index=True,
    height=260,
    column_config={"reference": st.column_config.TextColumn(max_chars=80),
                   "base_output": st.column_config.TextColumn("base output", max_chars=120),
                   "tuned_output": st.column_config.TextColumn("tuned output", max_chars=120),
                   **{c: st.column_config.NumberColumn(c, format="%.3f") for c in ("base_score", "tuned_score")},
                   "delta": st.column_config.NumberColumn("delta", format="%+.3f")},
)
n_pages = max(1, math.ceil(len(view) / PAGE_SIZE))
page = st.number_input(f"Page (of {n_pages}, {len(view)} items)", 1, n_pages, 1, key="samples_page")
start = (int(page) - 1) * PAGE_SIZE
for row in view.iloc[start:start + PAGE_SIZE].itertuples(index=False):
    delta = "" if row.delta is None or math.isnan(row.delta) else f", delta {row.delta:+.3g}"
    with st.expander(f"{row.id}: {row.status}{delta}", expanded=row.status == "regression"):
        st.markdown("**Prompt**")
        if len(row.prompt) > 4000:
            st.caption(f"the last 4000 of {len(row.prompt)} characters")
        st.code(row.prompt[-4000:], language=None, wrap_lines=True)
        st.markdown(f"**Reference:** `{row.reference}`")
        left, right = st.columns(2)
        for side, name, out, ans, score, finish in (
            (left, f"Base ({base_id})", row.base_output, row.base_answer, row.base_score, row.base_finish),
            (right, f"Tuned ({tuned_id})", row.tuned_output, row.tuned_answer, row.tuned_score, row.tuned_finish),
        ):
            side.markdown(f"**{name}**")
            side.code(out, language=None, wrap_lines=True)
            side.caption(f"answer: `{ans or '(none)'}` | {metric}: {score} | finish: {finish or '-'}")
