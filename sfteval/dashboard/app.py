"""sfteval dashboard: `sfteval dashboard` runs `streamlit run sfteval/dashboard/app.py`.

One file per page under views/. The app reads run folders only (never a model); the
Rate page writes votes to the database named by SFTEVAL_RATINGS_DB (a path or a URL).
Served beyond loopback, every page first asks for the owner's token (owner.py); raters
get the separate rater-only app (rate_app.py), never this one.
"""

from __future__ import annotations

import streamlit as st

from data import settings
from owner import require_owner

st.set_page_config(page_title="sfteval", layout="wide")
require_owner()

PAGES = [
    st.Page("views/runs.py", title="Runs", url_path="runs"),
    st.Page("views/compare.py", title="Compare", url_path="compare"),
    st.Page("views/samples.py", title="Samples", url_path="samples"),
    st.Page("views/checkpoints.py", title="Checkpoints", url_path="checkpoints"),
    st.Page("views/rate.py", title="Rate", url_path="rate"),
    st.Page("views/ratings.py", title="Ratings", url_path="ratings"),
]
# Streamlit serves its default page at "/" only, so a default Runs page made the deep link
# /runs "Page not found". The root gets its own Page of the same view; the menu is drawn
# here (page links) so that Runs is listed once.
HOME = st.Page("views/runs.py", title="Runs", url_path="home", default=True)

page = st.navigation([HOME, *PAGES], position="hidden")
for p in PAGES:
    st.sidebar.page_link(p, label=p.title)
cfg = settings()
# The Rate page stays free of anything that could identify a model, paths included.
if page.url_path != "rate":
    st.sidebar.caption(f"Reports: `{cfg.reports}`")
page.run()
