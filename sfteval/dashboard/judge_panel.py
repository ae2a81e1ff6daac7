"""The Ratings page's judge section: a judge model's agreement with the human raters next
to the humans' agreement with each other, the confusion table, and judge calibration.

Judge votes are votes of raters named `judge:<model>` (`sfteval judge ... --ratings-db`).
The statistics live in `sfteval.agreement` (no Streamlit there); this only shows them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from sfteval import agreement as ag
from sfteval.errors import SftevalError
from sfteval.types import Estimate


def _ci(e: Estimate | None) -> str:
    if e is None:
        return "undefined"
    if math.isnan(e.ci95[0]):
        return f"{e.value:.2f}"
    return f"{e.value:.2f} [{e.ci95[0]:.2f}, {e.ci95[1]:.2f}]"


def _row(name: str, s: ag.AgreementStats | None) -> dict[str, Any]:
    if s is None:
        return {"raters": name, "Cohen's kappa [95% CI]": "no shared items", "Krippendorff's alpha [95% CI]": "",
                "raw agreement": None, "pairs": 0, "items": 0}
    return {"raters": name, "Cohen's kappa [95% CI]": _ci(s.kappa), "Krippendorff's alpha [95% CI]": _ci(s.alpha),
            "raw agreement": s.percent, "pairs": s.n_pairs, "items": s.n_items}


def show_judge_agreement(store: Any, study_id: str) -> None:
    st.subheader("Judge vs humans")
    votes = store.votes(study_id)
    judges = ag.judges(votes)
    if not judges:
        st.caption("No judge votes in this study. `sfteval judge BASE TUNED --judge MODEL --ratings-db DB "
                   "--study STUDY` casts a judge's verdicts as votes of rater judge:<model>.")
        return
    humans = ag.human_vs_human(votes)
    per_judge = {j: ag.judge_vs_humans(votes, j) for j in judges}
    rows = [_row(f"{j} vs humans", s) for j, s in per_judge.items()] + [_row("humans vs humans", humans)]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="judge_agreement",
                 column_config={"raw agreement": st.column_config.NumberColumn(format="percent")})
    st.caption("Agreement on outcomes (tuned / base / tie; 'both bad' counts as tie). Intervals: bootstrap over "
               "items. Kappa 1 = perfect agreement, 0 = what chance alone gives.")
    for j, s in per_judge.items():
        if s is not None:
            st.markdown(f"Confusion: `{j}` (rows) vs the humans (columns), pairs")
            st.dataframe(pd.DataFrame(s.confusion).T, key=f"judge_confusion_{j}")

    target = ag.get_calibration(store, study_id)
    c1, c2 = st.columns([1, 2])
    width = c1.number_input("Target kappa CI width", min_value=0.02, max_value=2.0, step=0.05,
                            value=target[0] if target else 0.2, key="calib_width")
    if c2.button("Make this study judge-calibrated" if not target else "Change the target width", key="calib_set"):
        try:
            ag.set_calibration(store, study_id, float(width))
            target = (float(width), None)
        except SftevalError as e:
            st.error(str(e))
    if not target:
        return
    for j in judges if target[1] is None else [target[1]]:
        cal = ag.calibration(votes, j, target[0])
        if cal.votes_needed is not None:
            st.success(f"Judge-calibrated: `{j}`'s kappa interval was narrower than {target[0]:.2f} after "
                       f"{cal.votes_needed} human votes (of {cal.human_votes}).")
        else:
            now = "n/a" if cal.width_now is None else f"{cal.width_now:.2f}"
            st.info(f"Not calibrated yet: `{j}`'s kappa interval is {now} wide after {cal.human_votes} human votes "
                    f"(target {target[0]:.2f}).")
        if cal.curve:
            st.line_chart(pd.DataFrame([{"human votes": k, "CI width": hi - lo} for k, lo, hi in cal.curve])
                          .set_index("human votes"))
