"""`sfteval judge`: a scripted judge behind a local OpenAI-compatible server (position
swap, ties from order-dependent verdicts, stored replies, resume, votes, gate, report,
runs listing) and the tiny local model as a real hf judge."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runfolders import FakeBench, write_run
from sfteval.config import EngineSettings
from sfteval.errors import SftevalError
from sfteval.judge import RUBRIC_SHA256, Reply, combine, parse_verdict
from sfteval.judge_run import JudgeSettings, record_votes, run_judge
from sfteval.ratings import tuned_side as ag_side

# id -> (base output, tuned output). The scripted judge prefers the answer that says
# "better"; "biased" answers make it pick position A whatever is there; "???" makes it
# answer without a verdict; otherwise it says tie.
ITEMS = {
    "0": ("plain answer", "better answer"),  # win
    "1": ("better answer", "plain answer"),  # loss
    "2": ("biased one", "biased two"),  # [[A]] in both orders: order-dependent -> tie
    "3": ("plain answer", "plain too"),  # [[C]] twice: tie
    "4": ("??? x", "??? y"),  # unparsed: tie
    "5": ("plain", "better, much"),  # win
}
_ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Response\]\n(.*?)\n\[The End of Assistant \1's Response\]", re.S)


class Script:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.fail_after: int | None = None
        self.finish = "stop"  # the finish reason every reply reports
        self.lock = threading.Lock()

    def reply(self, prompt: str) -> str:
        answers = dict(_ANSWER.findall(prompt))
        a, b = answers["A"], answers["B"]
        if "???" in a:
            return "I cannot decide."
        if "biased" in a:
            return "Position A always wins.\n[[A]]"
        if "better" in a and "better" not in b:
            return "A is more helpful.\n[[A]]"
        if "better" in b and "better" not in a:
            return "B is more helpful.\n[[B]]"
        return "About the same.\n[[C]]"


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def _send(self, code: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {"data": [{"id": "scripted-judge"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path.endswith("/chat/completions") and body["temperature"] == 0.0
            (msg,) = body["messages"]
            with script.lock:
                if script.fail_after is not None and len(script.requests) >= script.fail_after:
                    self._send(400, {"error": {"message": "scripted failure"}})
                    return
                script.requests.append(msg["content"])
            text = script.reply(msg["content"])
            self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": script.finish}]})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()
    httpd.server_close()


def _runs(root: Path) -> tuple[Path, Path]:
    ids = list(ITEMS)
    prompts = [f"<|im_start|>user\nQuestion {i}?<|im_end|>\n<|im_start|>assistant\n" for i in ids]
    kw = {"kind": "reference", "ids": ids, "prompts": prompts}
    base = write_run(root, "base", [FakeBench("heldout", {"rougeL": [0.5] * len(ids)}, outputs=[ITEMS[i][0] for i in ids], **kw),
                                    FakeBench("mmlu", {"acc": [1.0] * len(ids)}, ids=ids, finish_reasons=["loglik"] * len(ids))])
    tuned = write_run(root, "tuned", [FakeBench("heldout", {"rougeL": [0.5] * len(ids)}, outputs=[ITEMS[i][1] for i in ids], **kw),
                                      FakeBench("mmlu", {"acc": [1.0] * len(ids)}, ids=ids, finish_reasons=["loglik"] * len(ids))])
    return base, tuned


def _settings(url: str, out: Path, concurrency: int = 2, **kw: Any) -> JudgeSettings:
    return JudgeSettings(judge="scripted-judge", backend="openai", out=str(out),
                         engine=EngineSettings(base_url=url, model_name="scripted-judge", concurrency=concurrency), **kw)


def test_parse_and_combine() -> None:
    assert parse_verdict("blah [[A]] then [[B]]") == "B"
    assert parse_verdict("[[ tie ]]") == "C" and parse_verdict("no verdict") is None
    v = combine("x", {"base_first": "[[B]]", "tuned_first": "[[A]]"})  # tuned wins in both orders
    assert v.outcome == "win" and v.consistent and v.position_first == 0.5
    v = combine("x", {"base_first": "[[A]]", "tuned_first": "[[A]]"})  # always the first position
    assert v.outcome == "tie" and not v.consistent and v.position_first == 1.0


def test_scripted_judge_end_to_end(tmp_path: Path, server: tuple[str, Script]) -> None:
    url, script = server
    base, tuned = _runs(tmp_path)
    r = subprocess.run([sys.executable, "-m", "sfteval.cli", "judge", str(base), str(tuned), "--judge", "scripted-judge",
                        "--backend", "openai", "--base-url", url, "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "judge heldout: 6/6" in r.stderr and "mmlu" not in r.stderr  # log-likelihood benchmarks are not judged
    (run,) = (tmp_path / "runs").glob("judge-scripted-judge-*")
    res = json.loads((run / "results.json").read_text())
    assert res["schema"] == "sfteval.run/1" and res["model"]["kind"] == "judge" and res["label"] == "judge:scripted-judge"
    assert res["prompting"]["rubric_sha256"] == RUBRIC_SHA256 and "[[A]]" in res["rubric"]
    b = res["benchmarks"]["judge_heldout"]
    assert b["counts"] == {"win": 2, "tie": 3, "loss": 1}
    m = b["metrics"]
    assert m["win_rate"]["value"] == pytest.approx((2 + 0.5 * 3) / 6)
    assert m["net_win"]["value"] == pytest.approx(1 / 6)
    assert m["position_bias"]["value"] == pytest.approx(0.5 / 6)  # item 2 always picked A
    assert m["consistency"]["value"] == pytest.approx(4 / 6)  # item 2 flipped, item 4 had no verdict
    assert m["win_rate"]["ci95"][0] < m["win_rate"]["value"] < m["win_rate"]["ci95"][1]
    assert b["unparsed_verdicts"] == 2
    # every item asked twice, positions swapped
    assert len(script.requests) == 12
    for i, (bo, to) in ITEMS.items():
        asked = [dict(_ANSWER.findall(p)) for p in script.requests if f"Question {i}?" in p]
        assert sorted((a["A"], a["B"]) for a in asked) == sorted([(bo, to), (to, bo)])
        assert all("<|im_start|>" not in p for p in script.requests)  # the judge reads the question, not template tokens
    rows = {json.loads(x)["id"]: json.loads(x) for x in (run / "samples" / "judge_heldout.jsonl").read_text().splitlines()}
    assert rows["2"]["meta"]["replies"] == {"base_first": "Position A always wins.\n[[A]]",
                                            "tuned_first": "Position A always wins.\n[[A]]"}
    assert rows["0"]["answer"] == "win" and rows["1"]["answer"] == "loss" and rows["4"]["meta"]["verdicts"] == {
        "base_first": None, "tuned_first": None}

    # readers: the gate (same CI semantics as any min rule), the runs listing, report
    rules = tmp_path / "gate.toml"
    rules.write_text('[min]\n"judge_heldout/win_rate" = 0.5\n')
    from typer.testing import CliRunner

    from sfteval.cli import app

    g = CliRunner().invoke(app, ["gate", str(run), "--rules", str(rules), "--out", str(tmp_path / "gate")])
    assert g.exit_code == 3 and "judge_heldout/win_rate" in g.stdout  # 6 items decide nothing: inconclusive
    try:  # the listing moves from sfteval.runs to sfteval.runfolder (#15)
        from sfteval.runfolder import list_runs
    except ImportError:
        from sfteval.runs import list_runs

    listed = {i.run_id: i for i in list_runs(tmp_path)}
    assert listed[run.name].headline[0].metric == "win_rate"
    rep = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    assert any("win_rate" in p.read_text() for p in (tmp_path / "rep").rglob("*.md"))

    # rerun: nothing asked again
    before = len(script.requests)
    assert run_judge(base, tuned, _settings(url, tmp_path)) == run
    assert len(script.requests) == before


def test_resume_after_a_failure_asks_only_the_rest(tmp_path: Path, server: tuple[str, Script]) -> None:
    url, script = server
    base, tuned = _runs(tmp_path / "a")
    full = run_judge(base, tuned, _settings(url, tmp_path / "full", chunk=2))
    script.requests.clear()
    script.fail_after = 5  # chunk 1 (requests 1-4) is answered, chunk 2 fails from its second request
    with pytest.raises(SftevalError, match="scripted failure"):
        run_judge(base, tuned, _settings(url, tmp_path / "resumed", concurrency=1, chunk=2))
    (part,) = (tmp_path / "resumed" / "runs").glob("judge-*")
    assert len((part / "samples" / "judge_heldout.jsonl").read_text().splitlines()) == 2
    assert not (part / "results.json").exists()
    script.fail_after = None
    asked_before = len(script.requests)
    resumed = run_judge(base, tuned, _settings(url, tmp_path / "resumed", chunk=2))
    asked = [re.search(r"Question (\d)\?", p).group(1) for p in script.requests[asked_before:]]  # type: ignore[union-attr]
    on_disk = {"0", "1"}
    assert not on_disk & set(asked)  # items already judged are not asked again
    assert all(asked.count(i) >= 2 for i in set(ITEMS) - on_disk)  # the rest in both orders
    a = json.loads((full / "results.json").read_text())["benchmarks"]
    b = json.loads((resumed / "results.json").read_text())["benchmarks"]
    assert a["judge_heldout"]["metrics"] == b["judge_heldout"]["metrics"]
    # a changed tuned output is not silently mixed with old verdicts
    samples = tuned / "samples" / "heldout.jsonl"
    rows = [json.loads(x) for x in samples.read_text().splitlines()]
    rows[0]["output"] = "changed"
    samples.write_text("".join(json.dumps(x) + "\n" for x in rows))
    with pytest.raises(SftevalError, match="judged on other prompts or outputs"):
        run_judge(base, tuned, _settings(url, tmp_path / "resumed", chunk=2))


def test_judge_votes_go_to_the_vote_store(tmp_path: Path, server: tuple[str, Script]) -> None:
    from sfteval.ratings import VoteStore

    url, _ = server
    base, tuned = _runs(tmp_path)
    run = run_judge(base, tuned, _settings(url, tmp_path))
    db = str(tmp_path / "ratings.sqlite")
    study, rater, n = record_votes(run, db)
    assert rater == "judge:scripted-judge" and n == len(ITEMS)
    votes = {v["item"]: v for v in VoteStore(db).votes(study)}
    assert {i: v["outcome"] for i, v in votes.items()} == {"0": "tuned", "1": "base", "2": "tie", "3": "tie", "4": "tie",
                                                           "5": "tuned"}
    assert all(v["rater"] == "judge:scripted-judge" for v in votes.values())
    assert record_votes(run, db)[2] == 0  # idempotent: the store refuses second votes
    # humans agree with the judge on every item; --calibrate sets the study and reports
    store = VoteStore(db)
    for i, v in votes.items():
        for h in ("ann", "bob"):
            side = ag_side(study, h, i)
            store.record_vote(study, i, h, {"tuned": side, "base": "B" if side == "A" else "A"}.get(v["outcome"], "tie"))
    from typer.testing import CliRunner

    from sfteval.cli import app

    r = CliRunner().invoke(app, ["judge", str(base), str(tuned), "--judge", "scripted-judge", "--backend", "openai",
                                 "--base-url", url, "--out", str(tmp_path), "--ratings-db", db, "--calibrate", "1.9"])
    assert r.exit_code == 0, r.output
    # perfect agreement: narrow from the first count (10 votes, the minimum) on
    assert "0 new vote(s)" in r.output and "after 10 of 12 human votes" in r.output
    from sfteval import agreement

    assert agreement.get_calibration(store, study) == (1.9, "judge:scripted-judge")


def test_votes_go_to_the_humans_study_of_the_same_runs(tmp_path: Path, server: tuple[str, Script]) -> None:
    from sfteval.ratings import VoteStore, build_study

    url, _ = server
    base, tuned = _runs(tmp_path)
    db = str(tmp_path / "ratings.sqlite")
    store = VoteStore(db)
    humans = build_study(base, tuned, "heldout", study_id="round-1", limit=4)  # a subset, under its own name
    store.create_study(humans)
    study, _, n = record_votes(run_judge(base, tuned, _settings(url, tmp_path)), db)
    assert study == "round-1" and n == 4  # only the study's items
    store.create_study(build_study(base, tuned, "heldout", study_id="round-2"))
    with pytest.raises(SftevalError, match="say which with --study"):
        record_votes(next((tmp_path / "runs").glob("judge-*")), db)


def test_bad_input_fails_before_the_judge_loads(tmp_path: Path) -> None:
    base, tuned = _runs(tmp_path)
    s = JudgeSettings(judge=str(tmp_path / "nope"), backend="hf", benchmarks=("mmlu",), out=str(tmp_path))
    with pytest.raises(SftevalError, match="log-likelihood"):
        run_judge(base, tuned, s)
    with pytest.raises(SftevalError, match="not in both runs"):
        run_judge(base, tuned, JudgeSettings(judge="x", backend="hf", benchmarks=("gsm8k",), out=str(tmp_path)))


def test_tiny_model_as_judge(tmp_path: Path, tiny_model: Path) -> None:
    base, tuned = _runs(tmp_path)
    s = JudgeSettings(judge=str(tiny_model), backend="hf", max_new_tokens=8, out=str(tmp_path), limit=3)
    run = run_judge(base, tuned, s)
    res = json.loads((run / "results.json").read_text())
    b = res["benchmarks"]["judge_heldout"]
    assert b["n"] == 3 and sum(b["counts"].values()) == 3
    assert res["backend"]["name"] == "hf" and res["backend"]["chat_template_used"] is True
    rows = [json.loads(x) for x in (run / "samples" / "judge_heldout.jsonl").read_text().splitlines()]
    assert all(set(r["meta"]["replies"]) == {"base_first", "tuned_first"} for r in rows)
    assert all(isinstance(t, str) for r in rows for t in r["meta"]["replies"].values())
    # resumed with everything on disk: no model is loaded
    again = run_judge(base, tuned, s)
    assert again == run
    assert json.loads((run / "results.json").read_text())["backend"] == {"name": "hf", "chat_template_used": None}


def _many(root: Path, tuned_wins: bool, n: int = 40) -> tuple[Path, Path]:
    ids = [str(i) for i in range(n)]
    good, plain = [f"better answer {i}" for i in ids], [f"plain answer {i}" for i in ids]
    prompts = [f"Question {i}?" for i in ids]
    kw = {"kind": "reference", "ids": ids, "prompts": prompts}
    base = write_run(root, "base", [FakeBench("heldout", {"rougeL": [0.5] * n}, outputs=plain if tuned_wins else good, **kw)])
    tuned = write_run(root, "tuned", [FakeBench("heldout", {"rougeL": [0.5] * n}, outputs=good if tuned_wins else plain, **kw)])
    return base, tuned


@pytest.mark.parametrize(("tuned_wins", "verdict"), [(True, "pass"), (False, "fail")])
def test_gate_on_the_judge_win_rate(tmp_path: Path, server: tuple[str, Script], tuned_wins: bool, verdict: str) -> None:
    from sfteval.gate import evaluate, load_rules, load_target

    url, _ = server
    base, tuned = _many(tmp_path, tuned_wins)
    run = run_judge(base, tuned, _settings(url, tmp_path, concurrency=4))
    rules = tmp_path / "gate.toml"
    rules.write_text('[min]\n"judge_heldout/win_rate" = 0.5\n"judge_heldout/consistency" = 0.8\n')
    result = evaluate(load_rules(rules), load_target(run))
    checks = {c.target: c.verdict for c in result.checks}
    assert checks["judge_heldout/win_rate"] == verdict  # the CI's lower bound clears 0.5, or its upper bound does not
    assert checks["judge_heldout/consistency"] == "pass"


def test_compare_reads_two_judge_runs(tmp_path: Path, server: tuple[str, Script]) -> None:
    """Two judge runs on the same items (tuned A vs base, tuned B vs base) compare like runs."""
    from typer.testing import CliRunner

    from sfteval.cli import app

    url, _ = server
    worse = run_judge(*_many(tmp_path / "a", False), _settings(url, tmp_path / "o1", concurrency=4))
    better = run_judge(*_many(tmp_path / "b", True), _settings(url, tmp_path / "o2", concurrency=4))
    r = CliRunner().invoke(app, ["compare", str(worse), str(better), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    comp = json.loads(next((tmp_path / "cmp").rglob("comparison.json")).read_text())
    delta = comp["benchmarks"]["judge_heldout"]["metrics"]["win_rate"]["delta"]
    assert delta["value"] == pytest.approx(1.0) and delta["ci95"][0] > 0.5


def test_a_judge_reply_cut_at_max_tokens_is_recorded_as_length(tmp_path: Path, server: tuple[str, Script]) -> None:
    """The judge backend's finish reasons reach the samples file (both orders), not a
    hard-coded clean stop: a truncated verdict must be visible in the run folder."""
    url, script = server
    script.finish = "length"
    base, tuned = _runs(tmp_path)
    run = run_judge(base, tuned, _settings(url, tmp_path))
    from sfteval.runfolder import read_samples

    lines = read_samples(run / "samples" / "judge_heldout.jsonl")
    assert set(lines) == set(ITEMS)
    assert all(line.finish_reasons == ("length", "length") for line in lines.values())
    assert lines["2"].outputs == ("Position A always wins.\n[[A]]",) * 2


class _OddJudge:
    """An in-process judge whose backend reports a finish reason no document lists."""

    def reply(self, prompts: list[str]) -> list[Reply]:
        return [Reply("[[C]]", "max_tokens_reached") for _ in prompts]

    def info(self) -> dict[str, Any]:
        return {"name": "odd"}


def test_a_judge_line_with_an_unknown_finish_reason_is_refused(tmp_path: Path) -> None:
    base, tuned = _runs(tmp_path)
    with pytest.raises(SftevalError, match="max_tokens_reached") as err:
        run_judge(base, tuned, JudgeSettings(judge="odd", backend="openai", out=str(tmp_path / "j")),
                  model=_OddJudge())
    assert err.value.field == "finish_reason" and "judge_heldout.jsonl" in str(err.value.path)
    (folder,) = (tmp_path / "j" / "runs").glob("judge-*")
    path = folder / "samples" / "judge_heldout.jsonl"
    assert not path.exists() or path.read_text() == ""  # nothing half-written
    assert not (folder / "results.json").exists()


def test_a_clean_sweep_of_wins_keeps_an_honest_interval() -> None:
    """The tuned model winning all 40 pairs is not certainty: a percentile bootstrap gave
    win_rate [1, 1] (every resample alike), which a gate then had to call 'measured nothing'.
    The bounded interval is Wilson with the real n at the end of the range (with t's
    quantile, so a little wider than z's)."""
    from sfteval.judge import aggregate
    from sfteval.stats import wilson_interval

    wins = [{"win_rate": 1.0, "net_win": 1.0, "win_share": 1.0, "tie_share": 0.0, "loss_share": 0.0,
             "consistency": 1.0, "position_bias": 0.0}] * 40
    est = aggregate(wins)
    lo, hi = est["win_rate"].ci95
    assert hi == 1.0 and 0.85 < lo <= wilson_interval(40, 40)[0]
    assert est["net_win"].ci95[0] == pytest.approx(2 * lo - 1)  # the same evidence on [-1, 1]
