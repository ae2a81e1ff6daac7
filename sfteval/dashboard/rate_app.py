"""The rater-only app: `sfteval dashboard --rate STUDY` serves this file and nothing else.

A rater opens their link (`/?t=<token>`, from `sfteval ratings add-raters`); the token
names exactly one rater of exactly this study, checked in constant time against the
stored hash. With a missing, wrong or other-study token the page shows one neutral line
and nothing else: no study list, no page list, no run names. There is no other page to
reach: this script has no navigation, and any URL path shows this same gate.
Once a session is authenticated it stays so for that browser tab (session state), and
the link itself resumes on refresh.
"""

from __future__ import annotations

import os

import streamlit as st
from rate_panel import ratings_db, rate, vote_store

st.set_page_config(page_title="Rate", layout="wide", initial_sidebar_state="collapsed")
st.markdown("<style>[data-testid='stSidebar'], [data-testid='stSidebarNav'], "
            "[data-testid='stSidebarCollapsedControl'] {display: none;}</style>", unsafe_allow_html=True)

STUDY = os.environ.get("SFTEVAL_RATE_STUDY", "")
store = vote_store(ratings_db())
who = st.session_state.get("rater_identity")
if who is None:
    who = store.authenticate(st.query_params.get("t"), STUDY) if STUDY else None
    if who is None:
        st.write("This page needs your personal rating link. Ask the study owner for it.")
        st.stop()
    st.session_state["rater_identity"] = who
study_id, rater = who
st.title("Rate")
st.caption(f"Signed in as {store.rater_name(study_id, rater)}. Judge the answers only; "
           "which model wrote which is hidden and changes from item to item.")
rate(store, study_id, rater)
