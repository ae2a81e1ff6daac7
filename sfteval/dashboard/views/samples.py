"""Samples: two runs side by side on one benchmark, regressions first.

The pairing is cached per (files, metric); filtering is vectorised pandas; only one
page of items is rendered in full, so a 10,000-sample run opens quickly (perf/
dashboard_samples.py measures it).
"""

from __future__ import annotations

import math

import streamlit as st

from data import STATUS_ORDER, filter_pairs, list_runs, metric_names, pairs, settings
from sfteval.errors import SftevalError
from sfteval.runfolder import common_benchmarks

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
base_id = c1.selectbox("Base run", ids, index=min(1, len(ids) - 1), key="samples_base")
tuned_id = c2.selectbox("Tuned run", ids, index=0, key="samples_tuned")
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

f1, f2, f3 = st.columns([3, 2, 3])
text = f1.text_input("Search text", placeholder="in prompt, reference, outputs, answers", key="samples_text")
id_query = f2.text_input("Item ids", placeholder="e.g. 17, 42", key="samples_ids")
statuses = f3.multiselect("Show", list(STATUS_ORDER), default=list(STATUS_ORDER), key="samples_status")
view = filter_pairs(df, text=text, ids=id_query, statuses=statuses)

st.dataframe(
    view[["id", "status", "delta", "base_score", "tuned_score", "base_answer", "tuned_answer", "reference"]],
    hide_index=True,
    height=260,
    column_config={"reference": st.column_config.TextColumn(max_chars=80)},
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
