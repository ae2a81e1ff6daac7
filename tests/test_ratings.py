"""Blind rating logic: sides, the vote store's guarantees, and the result statistics."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from sfteval.errors import SftevalError
from sfteval.ratings import (
    VoteStore,
    agreement,
    build_study,
    left_bias,
    outcome_of,
    study_results,
    tuned_side,
)


def _write_run(root: Path, run_id: str, outputs: dict[str, str], bench: str = "chat") -> Path:
    run = root / "runs" / run_id
    (run / "samples").mkdir(parents=True)
    rows = [{"id": i, "prompt": f"Q{i}?", "prompt_hash": "h", "output": o, "finish_reason": "stop",
             "answer": None, "reference": f"ref {i}", "scores": {"rougeL": 0.5}, "meta": {}}
            for i, o in outputs.items()]
    (run / "samples" / f"{bench}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {"schema": "sfteval.run/1", "run_id": run_id, "label": run_id, "created": "2026-11-23T17:00:00Z",
               "model": {"path": f"/ckpt/{run_id}", "kind": "checkpoint"},
               "benchmarks": {bench: {"kind": "reference", "n": len(rows), "primary_metric": "rougeL",
                                      "metrics": {"rougeL": {"value": 0.5, "stderr": 0.1, "ci95": [0.3, 0.7],
                                                             "n": len(rows), "method": "t"}},
                                      "samples_file": f"samples/{bench}.jsonl"}}}
    (run / "results.json").write_text(json.dumps(results))
    return run


@pytest.fixture()
def study_env(tmp_path: Path) -> tuple[VoteStore, str]:
    ids = [str(i) for i in range(30)]
    base = _write_run(tmp_path, "base-00000001", {i: f"base answer {i}" for i in ids})
    tuned = _write_run(tmp_path, "tuned-00000002", {i: f"tuned answer {i}" for i in ids})
    store = VoteStore(tmp_path / "ratings.sqlite3")
    study = build_study(base, tuned, "chat")
    assert store.create_study(study)
    return store, study.study_id


def test_sides_are_a_pure_function_and_roughly_balanced() -> None:
    sides = [tuned_side("s", "alice", str(i)) for i in range(2000)]
    assert sides == [tuned_side("s", "alice", str(i)) for i in range(2000)]
    assert 0.45 < sides.count("A") / len(sides) < 0.55
    # Different raters see different arrangements of the same item.
    assert [tuned_side("s", "bob", str(i)) for i in range(50)] != sides[:50]
    # The separator keeps (study "ab", rater "c") and (study "a", rater "bc") apart.
    assert [tuned_side("ab", "c", str(i)) for i in range(64)] != [tuned_side("a", "bc", str(i)) for i in range(64)]


def test_pair_hides_identity_and_maps_back(study_env: tuple[VoteStore, str]) -> None:
    store, sid = study_env
    for item in store.item_ids(sid)[:10]:
        pair = store.pair_for(sid, "alice", item)
        tuned_text = f"tuned answer {item}"
        assert (pair.text_a == tuned_text) == (tuned_side(sid, "alice", item) == "A")
        assert {pair.text_a, pair.text_b} == {tuned_text, f"base answer {item}"}
        assert not hasattr(pair, "tuned_side")
        # Voting for the side that shows the tuned text is recorded as a win for tuned.
        choice = "A" if pair.text_a == tuned_text else "B"
        assert store.record_vote(sid, item, "alice", choice)
    assert {v["outcome"] for v in store.votes(sid)} == {"tuned"}


def test_study_id_reveals_no_run_and_creation_is_idempotent(tmp_path: Path, study_env) -> None:
    store, sid = study_env
    assert "base" not in sid and "tuned" not in sid and sid.startswith("chat-")
    study = build_study(tmp_path / "runs" / "base-00000001", tmp_path / "runs" / "tuned-00000002", "chat")
    assert store.create_study(study) is False  # same study again: fine, nothing changes
    other = build_study(tmp_path / "runs" / "base-00000001", tmp_path / "runs" / "tuned-00000002", "chat",
                        study_id=sid, limit=5)
    with pytest.raises(SftevalError, match="already exists"):
        store.create_study(other)
    assert len(build_study(tmp_path / "runs" / "base-00000001", tmp_path / "runs" / "tuned-00000002", "chat",
                           limit=5).items) == 5


def test_second_vote_adds_no_row_and_db_enforces_uniqueness(study_env) -> None:
    store, sid = study_env
    item = store.next_item(sid, "alice")
    assert store.record_vote(sid, item, "alice", "A") is True
    assert store.record_vote(sid, item, "alice", "B") is False
    assert [v["choice"] for v in store.votes(sid)] == ["A"]
    with sqlite3.connect(store.path) as c:  # even a raw INSERT is refused by the schema
        with pytest.raises(sqlite3.IntegrityError):
            c.execute("INSERT INTO votes (study,item,rater,choice,tuned_side,outcome,created) "
                      "VALUES (?,?,?,?,?,?,?)", (sid, item, "alice", "tie", "A", "tie", "now"))
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_votes_are_refused(study_env) -> None:
    store, sid = study_env
    with pytest.raises(SftevalError, match="choice"):
        store.record_vote(sid, "0", "alice", "left")
    with pytest.raises(SftevalError, match="rater"):
        store.record_vote(sid, "0", "  ", "A")
    with pytest.raises(SftevalError, match="no item"):
        store.record_vote(sid, "nope", "alice", "A")
    assert store.votes(sid) == []


def test_resume_and_undo(study_env) -> None:
    store, sid = study_env
    order = store.order_for(sid, "alice")
    assert order != store.order_for(sid, "bob") and sorted(order) == sorted(store.item_ids(sid))
    for item in order[:3]:
        assert store.next_item(sid, "alice") == item
        store.record_vote(sid, item, "alice", "tie")
    # A fresh store object (a new session, a restarted app) resumes at the 4th item.
    again = VoteStore(store.path)
    assert again.next_item(sid, "alice") == order[3]
    assert again.undo_last(sid, "alice") == order[2]
    assert again.next_item(sid, "alice") == order[2]
    assert again.undo_last(sid, "bob") is None
    assert len(again.votes(sid)) == 2


def test_many_threads_voting_lose_and_double_nothing(study_env) -> None:
    store, sid = study_env
    items = store.item_ids(sid)
    raters = [f"r{k}" for k in range(6)]
    accepted: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def worker(rater: str) -> None:
        barrier.wait()
        for item in items:  # two threads per rater race on every item
            if store.record_vote(sid, item, rater, "A"):
                with lock:
                    accepted.append((item, rater))

    threads = [threading.Thread(target=worker, args=(r,)) for r in raters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [(v["item"], v["rater"]) for v in store.votes(sid)]
    expected = {(i, r) for i in items for r in raters}
    assert len(rows) == len(set(rows)) == len(expected)  # no double vote
    assert set(rows) == expected  # no lost vote
    assert sorted(accepted) == sorted(rows)  # exactly one writer won each race


def test_csv_export(study_env) -> None:
    store, sid = study_env
    for item, choice in zip(store.order_for(sid, "alice")[:4], ["A", "B", "tie", "both_bad"]):
        store.record_vote(sid, item, "alice", choice)
    rows = list(csv.DictReader(io.StringIO(store.export_csv(sid))))
    assert [r["choice"] for r in rows] == ["A", "B", "tie", "both_bad"]
    assert {r["outcome"] for r in rows} <= {"tuned", "base", "tie", "both_bad"}
    assert all(r["outcome"] == outcome_of(r["choice"], r["tuned_side"]) for r in rows)


def test_win_rate_counts_ties_half_with_item_bootstrap(study_env) -> None:
    store, sid = study_env
    items = store.order_for(sid, "alice")
    wanted = ["tuned"] * 12 + ["base"] * 4 + ["tie"] * 4  # (12 + 2) / 20 = 0.7
    for item, want in zip(items, wanted):
        side = tuned_side(sid, "alice", item)
        choice = want if want == "tie" else (side if want == "tuned" else ("B" if side == "A" else "A"))
        store.record_vote(sid, item, "alice", choice)
    res = study_results(store, sid)
    assert res.win_rate.value == pytest.approx(0.7)
    assert res.counts == {"tuned": 12, "base": 4, "tie": 4, "both_bad": 0}
    lo, hi = res.win_rate.ci95
    assert 0.45 < lo < 0.7 < hi < 0.9  # binomial-ish width for 20 items
    assert res.n_rated_items == 20 and res.n_items == 30
    (r,) = res.raters
    assert (r.votes, r.tuned, r.base, r.tie) == (20, 12, 4, 4)
    assert res.agreement is None  # one rater: nothing to agree on


def test_left_bias_is_balanced_over_sides() -> None:
    rng = np.random.default_rng(0)
    # A rater who always prefers tuned, with tuned placed on A 70% of the time: the raw
    # share of "A" is high, the balanced bias is zero.
    fair = [{"choice": s, "tuned_side": s} for s in rng.choice(["A", "B"], 400, p=[0.7, 0.3])]
    assert np.mean([v["choice"] == "A" for v in fair]) > 0.6
    est = left_bias(fair)
    assert est is not None and est.value == pytest.approx(0.0) and est.ci95[0] <= 0 <= est.ci95[1]
    # A rater who always clicks A has bias +0.5.
    lazy = [{"choice": "A", "tuned_side": s} for s in rng.choice(["A", "B"], 200)]
    assert left_bias(lazy).value == pytest.approx(0.5)
    assert left_bias([{"choice": "A", "tuned_side": "A"}]) is None


def test_agreement_krippendorff() -> None:
    def votes(table: dict[str, list[str]]) -> list[dict[str, str]]:
        return [{"item": i, "rater": f"r{k}", "outcome": o} for i, outs in table.items() for k, o in enumerate(outs)]

    perfect = votes({"1": ["tuned", "tuned"], "2": ["base", "base"], "3": ["tie", "tie"], "4": ["base"]})
    ag = agreement(perfect)
    assert ag is not None and ag.alpha == pytest.approx(1.0) and ag.percent == 1.0 and ag.n_items == 3
    # Known value: nominal alpha for this 2-rater table (Krippendorff 2011, by hand):
    # pairs (t,t),(t,b),(b,b),(b,t) -> D_o = 2*2/8 = 0.5, D_e = 2*4*4/(8*7) = 0.571 -> 1 - 0.875 = 0.125
    mixed = votes({"1": ["tuned", "tuned"], "2": ["tuned", "base"], "3": ["base", "base"], "4": ["base", "tuned"]})
    assert agreement(mixed).alpha == pytest.approx(0.125)
    assert agreement(votes({"1": ["tie", "tie"]})).alpha is None  # one category: undefined
    assert agreement(votes({"1": ["tie"]})) is None


def test_build_study_errors(tmp_path: Path) -> None:
    a = _write_run(tmp_path, "a-1", {"1": "x"})
    b = _write_run(tmp_path, "b-2", {"2": "y"})
    with pytest.raises(SftevalError, match="share no item"):
        build_study(a, b, "chat")
    with pytest.raises(SftevalError, match="same run"):
        build_study(a, a, "chat")
    with pytest.raises(SftevalError, match="not found"):
        build_study(a, b, "missing")


def test_study_name_must_not_name_a_model(tmp_path: Path) -> None:
    a = _write_run(tmp_path, "llama-base-1", {"1": "x"})
    b = _write_run(tmp_path, "llama-sft-2", {"1": "y"})
    for bad in ("LLAMA-SFT-2 vs base", "round-llama-base-1", "  "):
        with pytest.raises(SftevalError, match="study name"):
            build_study(a, b, "chat", study_id=bad)
    assert build_study(a, b, "chat", study_id="chat-round1").study_id == "chat-round1"


def test_left_bias_ci_stays_wide_at_the_extremes() -> None:
    # Three decisive votes per side, always for tuned: the point estimate is 0, but so few
    # votes cannot pin the bias to exactly zero (a normal approximation would say [0, 0]).
    votes = [{"choice": s, "tuned_side": s} for s in ("A", "B") * 3]
    est = left_bias(votes)
    assert est.value == 0.0 and est.ci95[0] < -0.15 and est.ci95[1] > 0.15
    assert -0.5 <= est.ci95[0] and est.ci95[1] <= 0.5


def test_left_bias_ci_covers_by_simulation() -> None:
    rng = np.random.default_rng(1)
    true_b, q, hits = 0.1, 0.7, 0
    for _ in range(400):
        votes = []
        for side in rng.choice(["A", "B"], 60):
            p_a = (q if side == "A" else 1 - q) + true_b
            votes.append({"choice": "A" if rng.random() < p_a else "B", "tuned_side": side})
        est = left_bias(votes)
        hits += est.ci95[0] <= true_b <= est.ci95[1]
    assert 0.92 <= hits / 400 <= 0.99
