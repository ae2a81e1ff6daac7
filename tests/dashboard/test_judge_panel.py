"""The Ratings page's judge section (AppTest): judge-vs-human agreement beside
human-human agreement, the confusion table, calibration; judge votes kept out of the
human win rate."""

from __future__ import annotations

from dash_helpers import open_page, rendered_text, run_ids

from sfteval.ratings import VoteStore, build_study, tuned_side


def _vote(store: VoteStore, sid: str, item: str, rater: str, outcome: str) -> None:
    side = tuned_side(sid, rater, item)
    choice = {"tuned": side, "base": "B" if side == "A" else "A"}.get(outcome, outcome)
    store.record_vote(sid, item, rater, choice)


def test_ratings_page_shows_the_judge_beside_the_humans(app_env) -> None:
    reports, db = app_env
    base, tuned = run_ids(reports)
    store = VoteStore(db)
    study = build_study(base, tuned, "chat")
    store.create_study(study)
    sid = study.study_id
    items = [it.item_id for it in study.items][:8]
    pattern = ["tuned", "tuned", "base", "tie", "tuned", "base", "tuned", "tie"]
    for k, item in enumerate(items):
        _vote(store, sid, item, "judge:tiny", pattern[k])
        _vote(store, sid, item, "ann", pattern[k])  # ann agrees with the judge everywhere
        _vote(store, sid, item, "bob", "tuned" if k % 2 else pattern[k])
    at = open_page("ratings")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Votes"] == "16"  # the human votes only
    raters = at.dataframe[0].value
    assert "judge:tiny" not in set(raters["rater"])
    frames = [d.value for d in at.dataframe]
    (table,) = [f for f in frames if "raters" in f.columns]
    assert list(table["raters"]) == ["judge:tiny vs humans", "humans vs humans"]
    assert list(table["pairs"]) == [16, 8]
    (confusion,) = [f for f in frames if list(f.columns) == ["tuned", "base", "tie"]]
    assert int(confusion.values.sum()) == 16 and int(confusion.loc["base", "base"]) == 3  # ann on items 2, 5; bob on 2
    assert "Make this study judge-calibrated" in [b.label for b in at.button]
    at.number_input(key="calib_width").set_value(1.9).run()
    at.button(key="calib_set").click().run()
    assert not at.exception
    text = rendered_text(at)
    assert "Judge-calibrated" in text and "human votes" in text


class _Prefers:
    """A JudgeModel (the seam) that prefers whichever answer is longer."""

    def reply(self, prompts):
        import re

        out = []
        for p in prompts:
            a, b = re.findall(r"Response\]\n(.*?)\n\[The End", p, re.S)
            out.append("[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "[[C]]")
        return out

    def info(self):
        return {"name": "scripted"}


def test_runs_and_samples_pages_read_a_judge_run(app_env, tmp_path, monkeypatch) -> None:
    import shutil

    from sfteval.judge_run import JudgeSettings, run_judge

    reports, _ = app_env
    out = tmp_path / "reports"
    shutil.copytree(reports / "runs", out / "runs")
    base, tuned = run_ids(out)
    run = run_judge(base, tuned, JudgeSettings(judge="scripted", backend="openai", out=str(out),
                                               benchmarks=("chat",)), model=_Prefers())
    monkeypatch.setenv("SFTEVAL_REPORTS", str(out))
    at = open_page("runs")
    table = at.dataframe[0].value
    assert "judge:scripted" in set(table["label"]) and "judge_chat/win_rate" in table.columns
    at = open_page("samples")
    at.selectbox(key="samples_base").select(run.name).run()
    at.selectbox(key="samples_tuned").select(run.name).run()
    assert not at.exception
