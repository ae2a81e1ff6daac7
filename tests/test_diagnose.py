"""Diagnoses: overlap rule, memorisation, contamination, drift, train/heldout gap, sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runfolders import FakeBench, write_run, write_sft, write_sweep
from sfteval.compare import CompareSettings, compare_runs, load_run
from sfteval.diagnoses.drift import drift, repetition
from sfteval.diagnoses.overfitting import train_heldout
from sfteval.diagnoses.sweep import sweep_analysis
from sfteval.diagnoses.training import training_sources
from sfteval.overlap import OverlapIndex, common_hashes, ngram_hashes, tokens
from sfteval.runfolder import RUN_SCHEMA, RunResults, SampleLine

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def sentence(seed: int, n: int = 30) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=n))


def test_overlap_rule_share_run_and_short_texts() -> None:
    train = [sentence(1, 60), sentence(2, 60)]
    idx = OverlapIndex(train)
    copied = idx.check(train[1])
    assert copied.flagged() and copied.share == 1.0 and copied.run and copied.doc == 1
    # a 25-token verbatim run inside unrelated text: flagged by the run rule alone
    mixed = sentence(3, 80) + " " + " ".join(train[0].split()[10:35]) + " " + sentence(4, 80)
    ov = idx.check(mixed)
    assert ov.run and ov.share < 0.5 and ov.flagged() and ov.doc == 0
    # a 12-token run is not enough, and unrelated text is clean
    short_run = sentence(5, 80) + " " + " ".join(train[0].split()[:12]) + " " + sentence(6, 80)
    assert not idx.check(short_run).flagged()
    assert not idx.check(sentence(7, 60)).flagged()
    # case and punctuation spacing do not hide a copy; fewer than 8 tokens never flag
    assert idx.check(train[0].upper().replace(" ", "  ")).flagged()
    assert not idx.check(" ".join(train[0].split()[:7])).flagged()


def test_common_hashes_ignore_shared_fewshot_text() -> None:
    shots = sentence(10, 40)
    prompts = [f"{shots}\nQ: {sentence(20 + i, 15)}" for i in range(5)]
    idx = OverlapIndex([shots])  # the training data holds the few-shot exemplar only
    assert idx.check(prompts[0]).flagged()  # naive matching would flag every item
    assert not any(o.flagged() for o in idx.check_many(prompts, ignore_shared=True))
    assert set(ngram_hashes(tokens(shots), 8)) <= set(common_hashes(prompts, 8))


def test_repetition() -> None:
    assert repetition("a b c d e f g h") == 0.0
    assert repetition("go on " * 50) > 0.9
    assert repetition("too short") == 0.0


def _drift_rows(outputs: list[str], finish: list[str], answers: list[object]) -> dict[str, SampleLine]:
    return {str(i): SampleLine.from_dict({"id": str(i), "output": o, "finish_reason": f, "answer": a, "scores": {}})
            for i, (o, f, a) in enumerate(zip(outputs, finish, answers))}


def test_drift_flags_leaks_truncation_failures_and_length() -> None:
    n = 60
    base = _drift_rows([f"The answer is {i}." for i in range(n)], ["stop"] * n, [str(i) for i in range(n)])
    tuned = _drift_rows(
        [f"The answer is {i}. <|im_end|> and then " + "more words " * 20 for i in range(n)],
        ["length"] * 40 + ["stop"] * 20,
        [None] * 30 + [str(i) for i in range(30)],
    )
    d = drift(base, tuned, alpha=0.05)
    assert d["template_leak_rate"]["tuned"] == 1.0 and d["template_tokens"] == {"<|im_end|>": n}
    assert d["truncation_rate"]["delta"] == pytest.approx(40 / 60)
    assert d["extraction_failure_rate"]["tuned"] == 0.5
    assert d["length_ratio"] > 1.5
    assert {"template_leak_rate", "truncation_rate", "extraction_failure_rate", "output_tokens",
            "repetition"} <= set(d["flags"])
    same = drift(base, base, alpha=0.05)
    assert same["flags"] == [] and same["length_ratio"] == 1.0


def test_strict_flexible_gap_change_is_measured(tmp_path: Path) -> None:
    n = 80
    strict_b = np.ones(n)
    strict_t = np.r_[np.zeros(30), np.ones(n - 30)]  # tuned loses the '####' format on 30 items
    flex = np.ones(n)
    base = write_run(tmp_path, "base", [FakeBench("gsm8k", {"exact_match_strict": strict_b,
                                                             "exact_match_flexible": flex}, kind="math")])
    tuned = write_run(tmp_path, "tuned", [FakeBench("gsm8k", {"exact_match_strict": strict_t,
                                                               "exact_match_flexible": flex}, kind="math")])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=200))
    gap = c["drift"]["gsm8k"]["strict_flexible_gap"]
    assert gap["base"] == 0.0 and gap["tuned"] == pytest.approx(30 / 80)
    assert "strict_flexible_gap" in c["drift"]["gsm8k"]["flags"]


def test_memorisation_and_contamination_end_to_end(tmp_path: Path) -> None:
    responses = [sentence(100 + i, 40) for i in range(20)]
    questions = [sentence(200 + i, 25) for i in range(20)]
    sft = write_sft(tmp_path / "sft.jsonl", list(zip(questions, responses)))
    n = 30
    shots = "Answer like the examples. " + sentence(999, 40)
    # heldout: the tuned model reproduces training responses on 10 of 30 items, the base never
    held_b = [sentence(300 + i, 40) for i in range(n)]
    held_t = [responses[i] if i < 10 else held_b[i] for i in range(n)]
    # benchmark: items 0-3 ARE training questions (contaminated); all prompts share a few-shot block
    prompts = [f"{shots}\nQ: {questions[i] if i < 4 else sentence(400 + i, 25)}\nA:" for i in range(n)]
    scores_b = np.r_[np.zeros(4), np.tile([1.0, 0.0], 13)]
    scores_t = np.r_[np.ones(4), np.tile([1.0, 0.0], 13)]  # only the contaminated items improved

    def benches(held: list[str], scores: np.ndarray) -> list[FakeBench]:
        return [FakeBench("heldout", {"rougeL": np.linspace(0, 1, n)}, kind="reference", outputs=held),
                FakeBench("bench", {"acc": scores}, prompts=prompts)]

    from sfteval.fileio import sha256_file

    trainer = {"step": 100, "data_files": [{"path": str(sft), "sha256": sha256_file(sft)}],
               "eval_files": [{"path": str(tmp_path / "eval.jsonl"), "sha256": None}]}
    base = write_run(tmp_path, "base", benches(held_b, scores_b))
    tuned = write_run(tmp_path, "tuned", benches(held_t, scores_t), trainer=trainer)
    assert training_sources((), load_run(tuned).results) == [sft]  # found via trainer metadata
    stale = RunResults.from_dict({"schema": RUN_SCHEMA, "benchmarks": {},
                                  "model": {"trainer": {"data_files": [{"path": str(sft), "sha256": "0" * 64}]}}})
    assert training_sources((), stale) == []  # the file changed since training: not what it saw
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=300))
    mem = c["overfitting"]["memorisation"]
    assert mem["available"] and mem["n_training"] == 20
    assert mem["heldout"]["tuned"]["count"] == 10 and mem["heldout"]["base"]["count"] == 0
    assert {i["train_id"] for i in mem["heldout"]["tuned"]["items"]} == {f"t{i}" for i in range(10)}
    cont = c["contamination"]["benchmarks"]["bench"]
    assert sorted(i["id"] for i in cont["items"]) == ["0", "1", "2", "3"]
    assert cont["clean"]["n"] == 26 and cont["clean"]["delta"]["value"] == 0.0
    assert c["benchmarks"]["bench"]["metrics"]["acc"]["delta"]["value"] > 0


def test_no_training_data_is_reported_not_invented(tmp_path: Path) -> None:
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0, 1]})])
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": [1, 0, 0]})])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=100))
    assert c["contamination"]["available"] is False and "--train-data" in c["contamination"]["reason"]
    assert c["overfitting"]["memorisation"]["available"] is False
    assert c["overfitting"]["train_heldout"]["available"] is False


def _est(v: float, se: float) -> dict:
    return {"value": v, "stderr": se, "ci95": [v - 1.96 * se, v + 1.96 * se], "n": 100, "method": "t"}


def test_train_heldout_gap_flags_only_a_gap_that_grew() -> None:
    def results(train: float, held: float) -> RunResults:
        return RunResults.from_dict({"schema": RUN_SCHEMA, "benchmarks": {
            "train": {"role": "train", "primary_metric": "rougeL", "metrics": {"rougeL": _est(train, 0.02)}},
            "offline_heldout": {"role": "target", "primary_metric": "rougeL", "metrics": {"rougeL": _est(held, 0.02)}}}})

    grew = train_heldout(results(0.30, 0.28), results(0.80, 0.40))
    assert grew["flag"] and grew["tuned"]["gap"]["value"] == pytest.approx(0.40)
    assert grew["benchmarks"] == ["train", "offline_heldout"]
    assert grew["gap_change"]["value"] == pytest.approx(0.38)
    same = train_heldout(results(0.30, 0.28), results(0.45, 0.43))
    assert not same["flag"]


def test_sweep_peak_divergence_and_keep(tmp_path: Path) -> None:
    values = {100: 0.30, 200: 0.42, 300: 0.40, 400: 0.33}
    cks = [{"step": s, "metrics": {"heldout": {"rougeL": _est(v, 0.01)}}} for s, v in values.items()]
    log = [{"step": s, "epoch": s / 400, "train_loss": 2.0 - s / 300, "lr": 1e-4, "grad_norm": 1.0,
            "tokens_per_s": 1000.0} for s in range(10, 410, 10)]
    for row in log:
        if row["step"] % 100 == 0:
            row["eval_loss"] = {100: 1.5, 200: 1.2, 300: 1.3, 400: 1.45}[row["step"]]
    path = write_sweep(tmp_path, "s", cks, log, select="heldout/rougeL")
    sw = sweep_analysis(path)
    assert sw["peak"]["step"] == 200 and sw["peak"]["before_end"]
    assert sw["keep"]["step"] == 200
    assert sw["loss"]["diverging"] and sw["loss"]["min_eval_step"] == 200
    # no per-item scores (the run folders are gone): nothing selection-aware is claimed (#13:
    # "last CI below best value" and "CIs overlap" were not tests of what they claimed)
    assert sw["selection_aware"] is False and sw["peak"]["significant"] is None
    assert sw["earliest_equivalent"] is None
    # a steadily improving sweep: peak at the end, no divergence
    mono = [{"step": s, "metrics": {"heldout": {"rougeL": _est(0.1 * s / 100, 0.01)}}} for s in (100, 200, 300)]
    flat_log = [{"step": s, "train_loss": 2 - s / 300, "eval_loss": 2 - s / 400} for s in (100, 200, 300)]
    sw2 = sweep_analysis(write_sweep(tmp_path, "m", mono, flat_log, select="heldout/rougeL"))
    assert not sw2["peak"]["before_end"] and not sw2["loss"]["diverging"] and sw2["keep"]["step"] == 300


def _reference_overlap(corpus: list[str], text: str) -> tuple[float, bool]:
    """The rule written the obvious way (sets of token tuples), to check the hashed index."""
    from sfteval.overlap import tokens

    def grams(t: list[str], n: int) -> set[tuple[str, ...]]:
        return {tuple(t[i : i + n]) for i in range(len(t) - n + 1)}

    short = set().union(*(grams(tokens(d), 8) for d in corpus))
    long = set().union(*(grams(tokens(d), 20) for d in corpus))
    g = grams(tokens(text), 8)
    return (len(g & short) / len(g) if g else 0.0), bool(grams(tokens(text), 20) & long)


def test_hashed_index_matches_the_plain_set_rule_on_random_texts() -> None:
    from sfteval.overlap import batch_hashes, ngram_hashes, tokens

    rng = np.random.default_rng(5)
    small = WORDS[:6]  # a tiny vocabulary makes partial overlaps common
    corpus = [" ".join(rng.choice(small, size=int(rng.integers(0, 60)))) for _ in range(40)]
    texts = [" ".join(rng.choice(small, size=int(rng.integers(0, 40)))) for _ in range(60)]
    texts += [corpus[3][: 80], corpus[7] + " " + texts[0], ""]
    idx = OverlapIndex(corpus)
    batch = idx.check_many(texts)
    for text, ov in zip(texts, batch):
        share, run = _reference_overlap(corpus, text)
        assert ov.share == pytest.approx(share) and ov.run == run, text
        assert idx.check(text) == ov
    toks = [tokens(t) for t in texts]
    h, owner = batch_hashes(toks, 8)
    for i, t in enumerate(toks):
        assert np.array_equal(h[owner == i], ngram_hashes(t, 8))
