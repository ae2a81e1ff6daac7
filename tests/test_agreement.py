"""Agreement statistics cross-checked against sklearn and the krippendorff package, on
simulated votes with known agreement; interval coverage; judge calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sfteval import agreement as ag

krippendorff = pytest.importorskip("krippendorff")
sk_metrics = pytest.importorskip("sklearn.metrics")

CATS = ("tuned", "base", "tie")
JUDGE = "judge:tiny"


def noisy(rng: np.random.Generator, truth: int, accuracy: float) -> int:
    if rng.random() < accuracy:
        return truth
    return int(rng.choice([c for c in range(3) if c != truth]))


def simulate(n_items: int, humans: int, judge_acc: float, human_acc: float, seed: int, coverage: float = 1.0,
             both_bad: float = 0.0) -> list[dict]:
    """Votes on items with a true preference (tuned 50%, base 30%, tie 20%); each rater
    reports it with some accuracy, else another category at random."""
    rng = np.random.default_rng(seed)
    votes, seq = [], 0
    for i in range(n_items):
        truth = int(rng.choice(3, p=[0.5, 0.3, 0.2]))
        seq += 1
        votes.append({"item": str(i), "rater": JUDGE, "outcome": CATS[noisy(rng, truth, judge_acc)], "seq": seq})
        for h in range(humans):
            if rng.random() > coverage:
                continue
            seq += 1
            out = CATS[noisy(rng, truth, human_acc)]
            if out == "tie" and rng.random() < both_bad:
                out = "both_bad"
            votes.append({"item": str(i), "rater": f"h{h}", "outcome": out, "seq": seq})
    rng.shuffle(votes)  # the store's order is `seq`, not list order
    return votes


def population_kappa(judge_acc: float, human_acc: float) -> float:
    prior = np.array([0.5, 0.3, 0.2])

    def channel(acc: float) -> np.ndarray:
        return np.full((3, 3), (1 - acc) / 2) + np.eye(3) * (acc - (1 - acc) / 2)

    joint = (channel(judge_acc).T * prior) @ channel(human_acc)  # P(judge=j, human=h)
    return float(ag.kappa_from(joint[None])[0])


def test_judge_vs_humans_matches_sklearn_and_krippendorff() -> None:
    votes = simulate(300, 3, 0.8, 0.7, seed=1, coverage=0.7, both_bad=0.5)
    stats = ag.judge_vs_humans(votes, JUDGE, resamples=300)
    assert stats is not None
    judge_of = {v["item"]: v["outcome"] for v in votes if v["rater"] == JUDGE}
    pairs = [(judge_of[v["item"]], "tie" if v["outcome"] == "both_bad" else v["outcome"])
             for v in votes if v["rater"] != JUDGE]
    j, h = zip(*pairs)
    assert stats.n_pairs == len(pairs)
    assert stats.kappa.value == pytest.approx(sk_metrics.cohen_kappa_score(j, h), abs=1e-12)
    code = {c: k for k, c in enumerate(CATS)}
    data = np.array([[code[x] for x in j], [code[x] for x in h]], dtype=float)
    assert stats.alpha.value == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"),
                                              abs=1e-12)
    conf = stats.confusion
    assert sum(conf[a][b] for a in CATS for b in CATS) == len(pairs)
    assert conf["tuned"]["base"] == sum(1 for a, b in pairs if a == "tuned" and b == "base")
    assert stats.kappa.ci95[0] < stats.kappa.value < stats.kappa.ci95[1]


def test_human_vs_human_matches_krippendorff_with_missing_values() -> None:
    votes = simulate(250, 4, 0.8, 0.75, seed=2, coverage=0.6)
    stats = ag.human_vs_human(votes, resamples=300)
    assert stats is not None
    humans = sorted({v["rater"] for v in votes if v["rater"] != JUDGE})
    items = sorted({v["item"] for v in votes}, key=int)
    code = {c: k for k, c in enumerate(CATS)}
    data = np.full((len(humans), len(items)), np.nan)
    for v in votes:
        if v["rater"] != JUDGE:
            data[humans.index(v["rater"]), items.index(v["item"])] = code[v["outcome"]]
    assert stats.alpha.value == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"),
                                              abs=1e-12)
    # pooled kappa = sklearn on every ordered pair of humans on an item
    a, b = [], []
    for col in data.T:
        seen = [int(x) for x in col if not np.isnan(x)]
        for p in range(len(seen)):
            for q in range(len(seen)):
                if p != q:
                    a.append(seen[p])
                    b.append(seen[q])
    assert stats.kappa.value == pytest.approx(sk_metrics.cohen_kappa_score(a, b), abs=1e-12)
    assert ag.human_vs_human([v for v in votes if v["rater"] in (JUDGE, "h0")]) is None  # one human: nothing shared


def test_known_agreement_is_recovered_and_covered() -> None:
    truth = population_kappa(0.85, 0.7)
    big = ag.judge_vs_humans(simulate(4000, 2, 0.85, 0.7, seed=3), JUDGE, resamples=200)
    assert big is not None and big.kappa.value == pytest.approx(truth, abs=0.02)
    hits = 0
    reps = 80
    for s in range(reps):
        st = ag.judge_vs_humans(simulate(120, 2, 0.85, 0.7, seed=100 + s), JUDGE, seed=s, resamples=400)
        hits += st.kappa.ci95[0] <= truth <= st.kappa.ci95[1]
    assert 0.85 <= hits / reps <= 1.0  # nominal 95%; a pairs-as-independent interval would undercover


def test_perfect_and_degenerate_agreement() -> None:
    votes = [{"item": str(i), "rater": r, "outcome": CATS[i % 3], "seq": k} for k, (i, r) in
             enumerate((i, r) for i in range(30) for r in (JUDGE, "ann"))]
    st = ag.judge_vs_humans(votes, JUDGE, resamples=200)
    assert st.kappa.value == pytest.approx(1.0) and st.alpha.value == pytest.approx(1.0) and st.percent == 1.0
    same = [{"item": str(i), "rater": r, "outcome": "tuned", "seq": i} for i in range(5) for r in (JUDGE, "ann")]
    st = ag.judge_vs_humans(same, JUDGE, resamples=50)
    assert st.kappa is None and st.percent == 1.0  # one category: kappa undefined, not 0 or 1
    assert ag.judge_vs_humans(same, "judge:other") is None


def test_calibration_reports_the_votes_needed() -> None:
    votes = simulate(400, 2, 0.85, 0.8, seed=4)
    cal = ag.calibration(votes, JUDGE, 0.3, resamples=300)
    assert cal.votes_needed is not None and cal.human_votes == 800
    widths = {k: hi - lo for k, lo, hi in cal.curve}
    assert widths[cal.votes_needed] < 0.3
    assert all(w >= 0.3 for k, w in widths.items() if k < cal.votes_needed)  # the first time, not any time
    assert widths[max(widths)] < widths[min(widths)]  # more votes, a narrower interval
    assert ag.calibration(votes, JUDGE, 0.01, resamples=100).votes_needed is None
    # the vote-by-vote (Poisson) interval ends where the item bootstrap of all votes is
    full = ag.judge_vs_humans(votes, JUDGE, resamples=1000).kappa
    assert cal.width_now == pytest.approx(full.ci95[1] - full.ci95[0], rel=0.2)


def test_study_setting_is_stored_beside_the_votes(tmp_path: Path) -> None:
    from sfteval.ratings import Study, StudyItem, VoteStore

    store = VoteStore(str(tmp_path / "r.sqlite"))
    store.create_study(Study("s1", "heldout", "b", "t", (StudyItem("0", "p", "", "x", "y"),)))
    assert ag.get_calibration(store, "s1") is None
    ag.set_calibration(store, "s1", 0.25, JUDGE)
    assert ag.get_calibration(store, "s1") == (0.25, JUDGE)
    ag.set_calibration(store, "s1", 0.2)
    assert ag.get_calibration(store, "s1") == (0.2, None)
    with pytest.raises(Exception, match="unknown study"):
        ag.set_calibration(store, "nope", 0.2)
