"""The Rate page: blind, stable, one vote per item, undo and resume (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dash_helpers import APP, IDENTITY, rendered_text, run_ids
from streamlit.testing.v1 import AppTest

from sfteval.ratings import VoteStore, build_study, tuned_side


@pytest.fixture()
def study(app_env) -> tuple[VoteStore, str]:
    reports, db = app_env
    base, tuned = run_ids(reports)
    store = VoteStore(db)
    s = build_study(base, tuned, "chat")
    store.create_study(s)
    return store, s.study_id


def _rate_page(sid: str, rater: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("views/rate.py")
    at.run()
    at.selectbox(key="study").select(sid).run()
    at.text_input(key="rater").input(rater).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown(at: AppTest) -> tuple[str, str, str]:
    """(item id, text under A, text under B) as rendered."""
    radio = at.radio[0]
    item = radio.key.rsplit("::", 1)[1]
    codes = [c.value for c in at.main.code]  # prompt, then A, then B (reference is in an expander)
    return item, codes[-2], codes[-1]


def test_sides_are_stable_across_reruns_and_sessions(study) -> None:
    store, sid = study
    at = _rate_page(sid, "ann")
    first = _shown(at)
    at.run()
    assert _shown(at) == first
    # A new session (a refresh, another tab) resumes on the same item with the same sides.
    assert _shown(_rate_page(sid, "ann")) == first
    item, text_a, _ = first
    assert ("careful" in text_a) == (tuned_side(sid, "ann", item) == "A")


def test_nothing_identifies_a_model_before_the_vote(study, reports: Path) -> None:
    _, sid = study
    at = _rate_page(sid, "ann")
    assert at.radio[0].value is None and at.radio[0].index is None  # nothing preselected
    assert [str(o) for o in at.radio[0].options] == ["A is better", "B is better", "Tie", "Both bad"]
    page = rendered_text(at)
    base, tuned = run_ids(reports)
    for secret in (*IDENTITY, base.name, tuned.name, str(reports)):
        assert secret not in page, secret
    assert "careful" in page and "short reply" in page  # the outputs are there, unlabelled
    assert not at.caption  # no captions at all: nothing like "123 chars" under an output


def test_vote_advances_and_second_submit_adds_no_row(study) -> None:
    store, sid = study
    tab1, tab2 = _rate_page(sid, "ann"), _rate_page(sid, "ann")  # the same rater in two tabs
    item = _shown(tab1)[0]
    assert _shown(tab2)[0] == item
    tab1.radio[0].set_value("A")
    tab1.button(key="submit").click().run()
    assert [v["item"] for v in store.votes(sid)] == [item]
    assert _shown(tab1)[0] != item and "1 of" in tab1.get("progress")[0].proto.text
    tab2.radio[0].set_value("B")
    tab2.button(key="submit").click().run()  # the stale tab submits the same item again
    votes = store.votes(sid)
    assert len(votes) == 1 and votes[0]["choice"] == "A"
    assert any("already voted" in w.value for w in tab2.warning)


def test_submit_without_choice_writes_nothing(study) -> None:
    store, sid = study
    at = _rate_page(sid, "ann")
    at.button(key="submit").click().run()
    assert store.votes(sid) == []
    assert any("Pick one" in w.value for w in at.warning)


def test_undo_brings_the_item_back_unselected_and_resume(study) -> None:
    store, sid = study
    at = _rate_page(sid, "ann")
    first = _shown(at)
    at.radio[0].set_value("tie")
    at.button(key="submit").click().run()
    second = _shown(at)
    at.radio[0].set_value("B")
    at.button(key="submit").click().run()
    assert len(store.votes(sid)) == 2
    at.button(key="undo").click().run()
    assert _shown(at) == second and at.radio[0].value is None
    assert [v["item"] for v in store.votes(sid)] == [first[0]]
    # Resume: a fresh session for this rater starts at the first unvoted item.
    assert _shown(_rate_page(sid, "ann"))[0] == second[0]
    # Another rater starts from their own order, unaffected by ann's votes.
    assert _shown(_rate_page(sid, "bob"))[0] == store.order_for(sid, "bob")[0]


def test_finishing_a_study(study) -> None:
    store, sid = study
    for item in store.item_ids(sid):
        store.record_vote(sid, item, "ann", "tie")
    at = _rate_page(sid, "ann")
    assert any("every item" in s.value for s in at.success)
    assert not at.radio
