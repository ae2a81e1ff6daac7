"""Ratings: set up a blind study and read its results (the organiser's page).

This page names the runs, so raters never see it: they get personal links to the
rater-only app (`sfteval dashboard --rate STUDY`). Here the owner creates a study (with
the overlap: how many raters see each item), adds raters and copies their links, follows
each rater's progress, and reads the results: win rate of tuned over base (ties and
"both bad" count half) with a bootstrap CI over items, counts, per-rater counts and
left-side bias, Krippendorff's alpha on items several raters saw, and CSV / JSONL
exports of every vote from which all of it can be recomputed (`sfteval ratings results`).
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from data import list_runs, settings
from judge_panel import show_judge_agreement
from rate_panel import ratings_db, vote_store

from sfteval.agreement import human_votes
from sfteval.errors import SftevalError
from sfteval.ratings import build_study, results_from_votes
from sfteval.ratings.access import rater_link
from sfteval.runfolder import common_benchmarks

st.title("Ratings")
cfg = settings()
store = vote_store(ratings_db())
st.caption(f"Votes database: `{store.display_url}`")

with st.expander("New study", expanded=not store.studies()):
    runs = [r for r in list_runs(cfg.reports) if r.complete]
    if len(runs) < 2:
        st.info("A study needs two finished runs under the reports folder.")
    else:
        ids = [r.run_id for r in runs]
        by_id = {r.run_id: r for r in runs}
        c1, c2 = st.columns(2)
        base_id = c1.selectbox("Base run", ids, index=min(1, len(ids) - 1), key="new_base")
        tuned_id = c2.selectbox("Tuned run", ids, index=0, key="new_tuned")
        benches = common_benchmarks(by_id[base_id].path, by_id[tuned_id].path) if base_id != tuned_id else []
        c3, c4, c5 = st.columns(3)
        bench = c3.selectbox("Benchmark", benches, key="new_bench", placeholder="no shared benchmark")
        limit = c4.number_input("Items (0 = all)", min_value=0, value=0, step=10, key="new_limit")
        name = c5.text_input("Study name (optional)", key="new_name",
                             help="Raters see this name: keep model names out of it.")
        skip = st.checkbox("Skip items where both outputs are identical", key="new_skip")
        overlap = st.number_input("Raters per item (overlap)", min_value=1, value=2, step=1, key="new_overlap",
                                  help="With rater links, every item goes to this many raters, so their "
                                       "agreement can be measured.")
        if st.button("Create study", disabled=not bench, key="new_create"):
            try:
                study = build_study(by_id[base_id].path, by_id[tuned_id].path, bench,
                                    study_id=name.strip() or None, limit=int(limit) or None, skip_identical=skip,
                                    overlap=int(overlap))
                created = store.create_study(study)
                st.success(f"Study `{study.study_id}` {'created' if created else 'already exists'}"
                           f" with {len(study.items)} items. Add raters below to get their links.")
            except SftevalError as e:
                st.error(str(e))

studies = store.studies()
if not studies:
    st.stop()
known = {s.study_id: s for s in studies}
sid = st.selectbox("Study", list(known), key="ratings_study",
                   format_func=lambda s: f"{s} ({known[s].benchmark}, {known[s].n_items} items)")
info = known[sid]
st.markdown(f"Base: `{info.base_run}`  \nTuned: `{info.tuned_run}`  \nCreated {info.created}, "
            f"{info.overlap} rater(s) per item")

with st.expander("Raters and their links", expanded=False):
    r1, r2, r3 = st.columns([3, 1, 2])
    names = r1.text_input("New raters (comma-separated names)", key="new_raters")
    quota = r2.number_input("Quota (0 = none)", min_value=0, value=0, step=5, key="new_quota")
    base_url = r3.text_input("Rater app address", value="http://HOST:8502", key="rate_base_url",
                             help="where `sfteval dashboard --rate STUDY --host 0.0.0.0 --port 8502` serves")
    if st.button("Create raters", disabled=not names.strip(), key="create_raters"):
        try:
            made = store.add_raters(sid, [n for n in names.split(",") if n.strip()], quota=int(quota) or None)
            st.success("Send each rater their own link (shown once; it is not stored):")
            st.code("\n".join(f"{n}: {rater_link(base_url, tok)}" for n, tok in made), language=None)
        except SftevalError as e:
            st.error(str(e))
    accounts = store.raters(sid)
    if accounts:
        st.dataframe(pd.DataFrame([{"rater": a.display_name, "assigned": a.assigned, "rated": a.done,
                                    "progress": a.done / a.assigned if a.assigned else 0.0,
                                    "quota": a.quota} for a in accounts]), hide_index=True,
                     column_config={"progress": st.column_config.ProgressColumn("progress", format="percent")})

# Human raters only: a judge's votes (rater judge:<model>) are read in the judge section.
res = results_from_votes(sid, human_votes(store.votes(sid)), len(store.item_ids(sid)))
if res.n_votes == 0:
    st.info("No votes yet.")
    st.stop()

m1, m2, m3, m4 = st.columns(4)
w = res.win_rate
m1.metric("Tuned win rate", f"{w.value:.1%}", help="ties and 'both bad' count one half")
m2.metric("95% CI", "n/a" if math.isnan(w.ci95[0]) else f"{w.ci95[0]:.0%} to {w.ci95[1]:.0%}",
          help="percentile bootstrap over items")
m3.metric("Items rated", f"{res.n_rated_items} / {res.n_items}")
m4.metric("Votes", res.n_votes)
st.bar_chart(pd.DataFrame({"votes": res.counts}), horizontal=True)

st.subheader("Raters")
st.dataframe(pd.DataFrame([{
    "rater": r.rater, "votes": r.votes, "tuned": r.tuned, "base": r.base, "tie": r.tie, "both bad": r.both_bad,
    "share of A among A/B": r.left_share,
    "left bias": None if r.left_bias is None else r.left_bias.value,
    "left bias 95% CI": None if r.left_bias is None else f"[{r.left_bias.ci95[0]:+.2f}, {r.left_bias.ci95[1]:+.2f}]",
} for r in res.raters]), hide_index=True)
st.caption("Left bias is balanced over the two side assignments: 0 means none, +0.5 means always A.")

st.subheader("Agreement")
ag = res.agreement
if ag is None:
    st.info("No item has votes from two raters yet.")
else:
    a1, a2, a3 = st.columns(3)
    a1.metric("Krippendorff's alpha (nominal)", "undefined" if ag.alpha is None else f"{ag.alpha:.2f}")
    a2.metric("Raw pairwise agreement", f"{ag.percent:.0%}")
    a3.metric("Shared items / raters", f"{ag.n_items} / {ag.n_raters}")

show_judge_agreement(store, sid)

d1, d2 = st.columns(2)
d1.download_button("Download votes (CSV)", store.export_csv(sid), file_name=f"{sid}-votes.csv",
                   mime="text/csv", key="ratings_csv")
d2.download_button("Download votes (JSONL)", store.export_jsonl(sid), file_name=f"{sid}-votes.jsonl",
                   mime="application/jsonl", key="ratings_jsonl")
