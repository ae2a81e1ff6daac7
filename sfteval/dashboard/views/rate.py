"""Rate: the blind pairwise panel on the owner's dashboard (open studies, any rater name).

A team's raters use their own links instead (`sfteval ratings add-raters`, served by
`sfteval dashboard --rate STUDY`), which show this panel and nothing else. Here, study
and rater live in the URL (?study=...&rater=...), so a refresh resumes.
"""

from __future__ import annotations

import streamlit as st
from rate_panel import ratings_db, rate, vote_store

from sfteval.errors import SftevalError
from sfteval.ratings import rater_key

st.title("Rate")
store = vote_store(ratings_db())
studies = store.studies()
if not studies:
    st.info("No rating study yet. An organiser creates one on the Ratings page.")
    st.stop()

known = {s.study_id: s for s in studies}
url = st.query_params
c1, c2 = st.columns(2)
study_id = c1.selectbox(
    "Study", list(known), index=list(known).index(url["study"]) if url.get("study") in known else None,
    placeholder="choose a study", key="study",
    format_func=lambda s: f"{s} ({known[s].benchmark}, {known[s].n_items} items)",
)
rater = c2.text_input("Your name", value=url.get("rater", ""), key="rater",
                      placeholder="the same name every time").strip()
for name, value in (("study", study_id), ("rater", rater)):
    if value and url.get(name) != value:
        url[name] = value
if not study_id or not rater:
    st.info("Choose a study and enter your name to start. Your progress is saved with every vote.")
    st.stop()
try:
    rate(store, study_id, rater_key(rater))
except SftevalError as e:  # a study with rater accounts takes votes through the raters' links only
    st.error(str(e))
