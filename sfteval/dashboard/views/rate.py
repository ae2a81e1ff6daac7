"""Rate: the blind pairwise panel.

What a rater sees: the prompt, two outputs labelled A and B, and four choices with none
preselected. What a rater never sees before voting: model names, run ids, paths, output
lengths or anything else that tells the sides apart. Sides come from
sfteval.ratings.tuned_side (a hash), so reruns, refreshes and second tabs agree.
Each vote is written to SQLite at once; the database refuses a second vote on an item.
Study and rater are kept in the URL (?study=...&rater=...), so a refresh resumes.
"""

from __future__ import annotations

import streamlit as st

from data import settings, vote_store
from sfteval.errors import SftevalError

CHOICE_LABELS = {"A": "A is better", "B": "B is better", "tie": "Tie", "both_bad": "Both bad"}

st.title("Rate")
store = vote_store(str(settings().db))
studies = store.studies()
if not studies:
    st.info("No rating study yet. An organiser creates one on the Ratings page.")
    st.stop()

known = {s.study_id: s for s in studies}
# Study and rater live in the URL too, so a refresh or a shared link resumes the session.
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


def _submit(sid: str, item: str, who: str, key: str) -> None:
    choice = st.session_state.get(key)
    if choice is None:
        st.session_state["rate_flash"] = ("warning", "Pick one of the four choices first.")
        return
    try:
        added = store.record_vote(sid, item, who, choice)
    except SftevalError as e:
        st.session_state["rate_flash"] = ("error", str(e))
        return
    # Should this item come back (undo), it comes back with no choice preselected.
    st.session_state.pop(key, None)
    st.session_state["rate_flash"] = (
        ("success", "Vote saved.") if added
        else ("warning", "You had already voted on that item (another tab?); your first vote stands.")
    )


def _undo(sid: str, who: str) -> None:
    item = store.undo_last(sid, who)
    st.session_state["rate_flash"] = (
        ("info", f"Took back your last vote (item {item}); it is shown again.") if item
        else ("info", "Nothing to undo.")
    )


flash = st.session_state.pop("rate_flash", None)
if flash:
    getattr(st, flash[0])(flash[1])

total = known[study_id].n_items
done = len(store.voted_items(study_id, rater))
st.progress(done / total if total else 1.0, text=f"{done} of {total} rated")
item = store.next_item(study_id, rater)
if item is None:
    st.success("You have rated every item in this study. Thank you!")
    st.button("Undo last vote", on_click=_undo, args=(study_id, rater), key="undo_done")
    st.stop()

pair = store.pair_for(study_id, rater, item)
st.markdown("**Prompt**")
st.code(pair.prompt, language=None, wrap_lines=True)
if pair.reference:
    with st.expander("Reference answer"):
        st.code(pair.reference, language=None, wrap_lines=True)
left, right = st.columns(2)
left.markdown("### A")
left.code(pair.text_a, language=None, wrap_lines=True)
right.markdown("### B")
right.code(pair.text_b, language=None, wrap_lines=True)

choice_key = f"choice::{study_id}::{item}"
st.radio("Which answer is better?", list(CHOICE_LABELS), index=None, horizontal=True,
         format_func=CHOICE_LABELS.__getitem__, key=choice_key)
b1, b2, _ = st.columns([1, 1, 4])
b1.button("Submit vote", type="primary", on_click=_submit, args=(study_id, item, rater, choice_key),
          key="submit")
b2.button("Undo last vote", on_click=_undo, args=(study_id, rater), key="undo", disabled=done == 0)
