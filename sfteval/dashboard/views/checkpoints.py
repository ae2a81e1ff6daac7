"""Checkpoints: a metric against the training step over a sweep, beside the losses.

Reads `OUT/sweeps/<name>/sweep.json` (per-checkpoint metrics with CIs, the trainer's
log, the selected best step). When the sweep carries no train log, the trainer's
`train_log.jsonl` is looked for in the sweep's source folder.
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from data import results, settings, sweep
from numfmt import fmt_ci, fmt_value
from sfteval.errors import SftevalError
from sfteval.runfolder import list_sweeps, read_train_log

st.title("Checkpoints")
cfg = settings()
paths = list_sweeps(cfg.reports)
if not paths:
    st.info(f"No sweep under `{cfg.reports}/sweeps/` yet.")
    st.stop()
path = st.selectbox("Sweep", paths, format_func=lambda p: p.parent.name, key="ck_sweep")
try:
    data = sweep(path)
except SftevalError as e:
    st.error(str(e))
    st.stop()

points = [{"step": ck["step"], "run_id": ck.get("run_id"), "key": f"{b}/{m}", "value": e.get("value"),
           "lo": (e.get("ci95") or [None, None])[0], "hi": (e.get("ci95") or [None, None])[1]}
          for ck in data.get("checkpoints") or [] for b, ms in (ck.get("metrics") or {}).items()
          for m, e in ms.items() if isinstance(e, dict)]
frame = pd.DataFrame(points)
select = (data.get("select") or {}).get("metric")
best = data.get("best") or {}
if frame.empty:
    st.warning("The sweep lists no checkpoint metrics.")
else:
    keys = sorted(frame["key"].unique())
    key = st.selectbox("Metric", keys, index=keys.index(select) if select in keys else 0, key="ck_metric")
    cur = frame[frame["key"] == key].sort_values("step")
    base = alt.Chart(cur).encode(x=alt.X("step:Q", title="step"))
    chart = base.mark_area(opacity=0.2).encode(y=alt.Y("lo:Q", title=key), y2="hi:Q") + \
        base.mark_line(point=True).encode(y="value:Q", tooltip=["step", "value", "lo", "hi", "run_id"])
    if best.get("step") is not None:
        chart += alt.Chart(pd.DataFrame({"step": [best["step"]]})).mark_rule(strokeDash=[4, 4], color="green") \
            .encode(x="step:Q")
    st.altair_chart(chart, width="stretch")
    if best:
        st.caption(f"Best by {select or key} ({(data.get('select') or {}).get('mode', '')}): step {best.get('step')}"
                   f" (`{best.get('run_id')}`), value {fmt_value(best.get('value'))}")
    shown = cur.assign(**{"95% CI": [fmt_ci([lo, hi]) for lo, hi in zip(cur["lo"], cur["hi"])]})
    st.dataframe(shown.drop(columns=["key", "lo", "hi"]), hide_index=True,
                 column_config={"value": st.column_config.NumberColumn("value", format="%.3f")})

    # Target against forgetting: one line per benchmark (its primary metric) by step, so a
    # target gain and a general benchmark's drop show on one chart.
    def _primary(bench: str) -> str | None:
        for ck in data.get("checkpoints") or []:
            try:
                return results(Path(ck["run_dir"]))["benchmarks"][bench]["primary_metric"]
            except Exception:  # noqa: BLE001 - run folder moved or unreadable: fall back below
                continue
        return None

    sel_bench = (select or "").partition("/")[0]
    lines = []
    for bench in sorted({k.partition("/")[0] for k in keys}):
        metric = (select or "").partition("/")[2] if bench == sel_bench else _primary(bench)
        wanted = f"{bench}/{metric}" if metric else next(k for k in keys if k.startswith(bench + "/"))
        lines.append(wanted)
    overlay = frame[frame["key"].isin(lines)].assign(
        role=lambda f: ["target (selection)" if k == select else "other benchmark" for k in f["key"]])
    st.subheader("Target vs general benchmarks by step")
    st.altair_chart(alt.Chart(overlay).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q", title="primary metric"), color=alt.Color("key:N", title=None),
        strokeDash=alt.StrokeDash("role:N", title=None),
        tooltip=["step", "key", alt.Tooltip("value:Q", format=".3f"), "run_id"]), width="stretch")

log = data.get("train_log") or []
source = Path(str(data.get("source") or ""))
if not log and (source / "train_log.jsonl").is_file():
    log = [row.to_dict() for row in read_train_log(source / "train_log.jsonl")]
st.subheader("Training loss")
if not log:
    st.info("No train log in this sweep.")
else:
    lf = pd.DataFrame(log)
    losses = [c for c in ("train_loss", "eval_loss") if c in lf.columns]
    long = lf.melt(id_vars="step", value_vars=losses, var_name="loss", value_name="value").dropna()
    st.altair_chart(alt.Chart(long).mark_line(point=True).encode(
        x="step:Q", y=alt.Y("value:Q", title="loss"), color="loss:N", tooltip=["step", "loss", "value"]),
        width="stretch")
