"""The blind rating panel, shared by the owner's Rate page and the rater-only app.

What a rater sees: the conversation (chat turns, never template tokens), two answers
labelled A and B, one button per choice with a hotkey (A, B, T, X; U undoes), and their
progress. What a rater never sees before voting: model names, run ids, paths, output
lengths or anything else that tells the sides apart; sides come from
sfteval.ratings.tuned_side (a hash), so reruns, refreshes and second tabs agree. Each
vote is written at once; the database refuses a second vote on an item.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from sfteval.errors import SftevalError
from sfteval.ratings import VoteStore
from sfteval.ratings.render import chat_turns

CHOICES = (("A", "A is better", "A"), ("B", "B is better", "B"), ("tie", "Tie", "T"), ("both_bad", "Both bad", "X"))
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


def ratings_db() -> str:
    """The vote store's URL or path, as `sfteval dashboard --db` passed it (a URL must not
    go through Path, which folds its '//')."""
    reports = Path(os.environ.get("SFTEVAL_REPORTS") or "reports").expanduser()
    return os.environ.get("SFTEVAL_RATINGS_DB") or str(reports / "ratings.sqlite3")


@st.cache_resource(show_spinner=False)
def vote_store(db: str) -> VoteStore:
    return VoteStore(db)


def show_prompt(prompt: str) -> None:
    for role, text in chat_turns(prompt):
        with st.chat_message("user" if role != "assistant" else "assistant"):
            st.caption(ROLE_NAMES.get(role, role))
            st.markdown(_plain(text))


def _plain(text: str) -> str:
    # Outputs are shown as written: no Markdown or HTML interpretation of a model's text.
    return "```text\n" + text.replace("```", "` ` `") + "\n```"


def _vote(store: VoteStore, sid: str, item: str, who: str, choice: str) -> None:
    try:
        added = store.record_vote(sid, item, who, choice)
    except SftevalError as e:
        st.session_state["rate_flash"] = ("error", str(e))
        return
    st.session_state["rate_flash"] = (
        ("success", "Vote saved.") if added
        else ("warning", "You had already voted on that item (another tab?); your first vote stands.")
    )


def _undo(store: VoteStore, sid: str, who: str) -> None:
    item = store.undo_last(sid, who)
    st.session_state["rate_flash"] = (
        ("info", "Took back your last vote; that item is shown again.") if item else ("info", "Nothing to undo.")
    )


def rate(store: VoteStore, study_id: str, rater: str) -> None:
    """One screen of the panel for this rater: the next item, or the done screen."""
    flash = st.session_state.pop("rate_flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])
    order = store.order_for(study_id, rater)
    voted = store.voted_items(study_id, rater)
    done = len(voted & set(order))
    total = len(order)
    st.progress(done / total if total else 1.0, text=f"{done} of {total} rated")
    # What store.next_item computes, from the two reads above instead of two more queries.
    item = next((i for i in order if i not in voted), None)
    if item is None:
        st.success("Done: you have rated every item assigned to you. Thank you!")
        st.button("Undo last vote", on_click=_undo, args=(store, study_id, rater), key="undo_done", shortcut="U")
        st.stop()
    pair = store.pair_for(study_id, rater, item)
    st.markdown("#### Conversation")
    show_prompt(pair.prompt)
    if pair.reference:
        with st.expander("Reference answer"):
            st.markdown(_plain(pair.reference))
    left, right = st.columns(2)
    left.markdown("#### A")
    left.markdown(_plain(pair.text_a))
    right.markdown("#### B")
    right.markdown(_plain(pair.text_b))
    st.markdown("**Which answer is better?**")
    cols = st.columns(len(CHOICES) + 1)
    for col, (choice, label, key) in zip(cols, CHOICES):  # Streamlit draws each hotkey on its button
        col.button(label, on_click=_vote, args=(store, study_id, item, rater, choice),
                   key=f"vote_{choice}", shortcut=key, type="primary" if choice in ("A", "B") else "secondary",
                   width="stretch")
    cols[-1].button("Undo", on_click=_undo, args=(store, study_id, rater), key="undo", disabled=done == 0,
                    shortcut="U", width="stretch")
    st.caption("Hotkeys: A, B, T (tie), X (both bad), U (undo). Each vote is saved at once.")
