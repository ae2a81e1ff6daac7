"""The Rate page and the rater-only app: blind, stable, one vote per item, undo, resume,
and links that open exactly one rater's panel (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dash_helpers import APP, IDENTITY, rendered_text, run_ids
from streamlit.testing.v1 import AppTest

from sfteval.ratings import VoteStore, build_study, tuned_side

RATE_APP = APP.parent / "rate_app.py"
VOTE_KEYS = {"A": "vote_A", "B": "vote_B", "tie": "vote_tie", "both_bad": "vote_both_bad"}


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


def _shown(at: AppTest, store: VoteStore, sid: str, rater: str) -> tuple[str, str, str]:
    """(item id, text under A, text under B) as rendered."""
    md = [m.value for m in at.main.markdown]
    a, b = md.index("#### A"), md.index("#### B")
    strip = lambda s: s.removeprefix("```text\n").removesuffix("\n```")  # noqa: E731
    return store.next_item(sid, rater), strip(md[a + 1]), strip(md[b + 1])


def _vote(at: AppTest, choice: str) -> None:
    at.button(key=VOTE_KEYS[choice]).click().run()


def test_sides_are_stable_across_reruns_and_sessions(study) -> None:
    store, sid = study
    at = _rate_page(sid, "ann")
    first = _shown(at, store, sid, "ann")
    at.run()
    assert _shown(at, store, sid, "ann") == first
    # A new session (a refresh, another tab) resumes on the same item with the same sides.
    assert _shown(_rate_page(sid, "ann"), store, sid, "ann") == first
    item, text_a, _ = first
    assert ("careful" in text_a) == (tuned_side(sid, "ann", item) == "A")
    # "Ann" is the same rater as "ann": same item, same sides.
    assert _shown(_rate_page(sid, "Ann"), store, sid, "ann") == first


def test_nothing_identifies_a_model_before_the_vote(study, reports: Path) -> None:
    store, sid = study
    at = _rate_page(sid, "ann")
    labels = [b.label for b in at.button]
    assert labels[:4] == ["A is better", "B is better", "Tie", "Both bad"]
    assert [b.proto.shortcut.upper() for b in at.button][:5] == ["A", "B", "T", "X", "U"]
    page = rendered_text(at)
    base, tuned = run_ids(reports)
    for secret in (*IDENTITY, base.name, tuned.name, str(reports)):
        assert secret not in page, secret
    assert "careful" in page and "short reply" in page  # the outputs are there, unlabelled
    captions = " ".join(c.value for c in at.caption)
    assert "char" not in captions and "token" not in captions  # nothing like "123 chars" under an output
    assert "Write a haiku" in page and "<|im_start|>" not in page  # the prompt as chat turns


def test_vote_advances_and_a_stale_tab_adds_no_row(study) -> None:
    store, sid = study
    tab1, tab2 = _rate_page(sid, "ann"), _rate_page(sid, "ann")  # the same rater in two tabs
    item = _shown(tab1, store, sid, "ann")[0]
    _vote(tab1, "A")
    assert [v["item"] for v in store.votes(sid)] == [item]
    assert _shown(tab1, store, sid, "ann")[0] != item and "1 of" in tab1.get("progress")[0].proto.text
    _vote(tab2, "B")  # the stale tab votes on the same item again
    votes = store.votes(sid)
    assert len(votes) == 1 and votes[0]["choice"] == "A"
    assert any("already voted" in w.value for w in tab2.warning)


def test_undo_brings_the_item_back_and_resume(study) -> None:
    store, sid = study
    at = _rate_page(sid, "ann")
    first = _shown(at, store, sid, "ann")
    _vote(at, "tie")
    second = _shown(at, store, sid, "ann")
    _vote(at, "B")
    assert len(store.votes(sid)) == 2
    at.button(key="undo").click().run()
    assert _shown(at, store, sid, "ann") == second
    assert [v["item"] for v in store.votes(sid)] == [first[0]]
    # Resume: a fresh session for this rater starts at the first unvoted item.
    assert _shown(_rate_page(sid, "ann"), store, sid, "ann")[0] == second[0]
    # Another rater starts from their own order, unaffected by ann's votes.
    assert _shown(_rate_page(sid, "bob"), store, sid, "bob")[0] == store.order_for(sid, "bob")[0]


def test_finishing_a_study(study) -> None:
    store, sid = study
    for item in store.item_ids(sid):
        store.record_vote(sid, item, "ann", "tie")
    at = _rate_page(sid, "ann")
    assert any("Done" in s.value for s in at.success)
    assert "vote_A" not in [b.key for b in at.button]


# -- the rater-only app, through links --------------------------------------------------

@pytest.fixture()
def team(app_env, monkeypatch: pytest.MonkeyPatch) -> tuple[VoteStore, str, dict[str, str], str]:
    reports, db = app_env
    base, tuned = run_ids(reports)
    store = VoteStore(db)
    s = build_study(base, tuned, "chat", study_id="round-1", overlap=2)
    store.create_study(s)
    other = build_study(base, tuned, "gsm8k", study_id="round-2")
    store.create_study(other)
    tokens = dict(store.add_raters("round-1", ["Ana", "Ben", "Cy"]))
    (_, other_token), = store.add_raters("round-2", ["Ana"])
    monkeypatch.setenv("SFTEVAL_RATE_STUDY", "round-1")
    return store, "round-1", tokens, other_token


def _rater_app(token: str | None) -> AppTest:
    at = AppTest.from_file(str(RATE_APP), default_timeout=60)
    if token is not None:
        at.query_params["t"] = token
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("bad", [None, "", "nonsense", "0" * 24 + ".xyz", "other-study"])
def test_without_a_valid_link_the_rater_app_shows_nothing(team, reports: Path, bad: str | None) -> None:
    store, sid, tokens, other_token = team
    at = _rater_app(other_token if bad == "other-study" else bad)
    page = rendered_text(at)
    assert "personal rating link" in page
    base, tuned = run_ids(reports)
    for secret in (sid, "round-2", "chat", "haiku", *IDENTITY, base.name, tuned.name, "Ana", "Ben"):
        assert secret not in page, secret
    assert not at.button and not at.selectbox and not at.text_input


def test_a_link_opens_that_raters_panel_and_votes_as_them(team, reports: Path) -> None:
    store, sid, tokens, _ = team
    at = _rater_app(tokens["Ben"])
    page = rendered_text(at)
    assert "Signed in as Ben" in page and "Write a haiku" in page
    base, tuned = run_ids(reports)
    for secret in (*IDENTITY, base.name, tuned.name, str(reports), "round-2"):
        assert secret not in page, secret
    mine = store.order_for(sid, "ben")
    assert f"0 of {len(mine)} rated" in at.get("progress")[0].proto.text
    item = store.next_item(sid, "ben")
    _vote(at, "B")
    assert [(v["rater"], v["item"], v["choice"]) for v in store.votes(sid)] == [("ben", item, "B")]
    # The session keeps its rater even if the URL's token is changed to another rater's.
    at.query_params["t"] = tokens["Ana"]
    at.run()
    assert "Signed in as Ben" in rendered_text(at)


def test_owner_dashboard_beyond_loopback_needs_the_owner_token(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.setenv("SFTEVAL_OWNER_TOKEN_SHA256", hashlib.sha256(b"s3cret").hexdigest())
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert "needs the owner link" in rendered_text(at) and "llama-base" not in rendered_text(at)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["owner"] = "wrong"
    at.run()
    assert "llama-base" not in rendered_text(at)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["owner"] = "s3cret"
    at.run()
    assert not at.exception and "llama-base" in rendered_text(at)
