"""Runs: every run folder under the reports folder, with its headline metrics.

Filter by text (run id, label, model) and benchmark; sort by any column. One run's
settings and environment open below the table.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from data import list_runs, results, settings
from numfmt import fmt_ci

st.title("Runs")
cfg = settings()
runs = list_runs(cfg.reports)
if not runs:
    st.info(f"No runs under `{cfg.reports}` yet. Score a checkpoint with `sfteval run CKPT --out {cfg.reports}`.")
    st.stop()

benchmarks = sorted({b for r in runs for b in r.benchmarks})
left, mid, right = st.columns([2, 2, 1])
query = left.text_input("Filter", placeholder="run id, label or model path", key="runs_filter")
chosen = mid.multiselect("Benchmarks", benchmarks, key="runs_benchmarks")
sort_by = right.selectbox("Sort by", ["created", "run_id", "label", "model"], key="runs_sort")

rows = []
for r in runs:
    row: dict[str, object] = {"run_id": r.run_id, "label": r.label, "model": r.model, "backend": r.backend,
                              "benchmarks": ", ".join(r.benchmarks), "created": r.created,
                              "status": "complete" if r.complete else "in progress / incomplete"}
    for h in r.headline:
        row[f"{h.benchmark}/{h.metric}"] = h.value
    rows.append((r, row))

q = query.strip().lower()
kept = [(r, row) for r, row in rows
        if (not q or q in f"{r.run_id} {r.label} {r.model}".lower())
        and all(b in r.benchmarks for b in chosen)]
table = pd.DataFrame([row for _, row in kept])
if table.empty:
    st.warning("No run matches the filter.")
    st.stop()
table = table.sort_values(sort_by, ascending=sort_by != "created", kind="stable")
metric_cols = [c for c in table.columns if "/" in c]
# the metrics next to the run's name: after five text columns they sat off-screen
table = table[["run_id", "label", *metric_cols, *(c for c in table.columns if c not in metric_cols
                                                  and c not in ("run_id", "label"))]]
st.dataframe(
    table,
    hide_index=True,
    column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in metric_cols},
)
st.caption(f"{len(table)} of {len(runs)} runs. Metrics are each benchmark's primary metric.")

ids = list(table["run_id"])
pick = st.selectbox("Details of run", ids, index=None, placeholder="choose a run", key="runs_detail")
if pick:
    run = next(r for r, _ in kept if r.run_id == pick)
    st.markdown(f"Folder: `{run.path}`")
    if not run.complete:
        st.warning("results.json is missing: the run is still going, or it stopped. Re-run the same command to resume.")
    else:
        data = results(run.path)
        metrics = [{"benchmark": b, "metric": m, "value": e.get("value"), "95% CI": fmt_ci(e.get("ci95")),
                    "n": e.get("n"), "method": e.get("method")}
                   for b, info in data["benchmarks"].items() for m, e in (info.get("metrics") or {}).items()]
        st.dataframe(pd.DataFrame(metrics), hide_index=True,
                     column_config={"value": st.column_config.NumberColumn("value", format="%.3f")})
        with st.expander("Settings, model and environment"):
            st.json({k: data.get(k) for k in ("model", "config", "backend", "environment")}, expanded=False)
