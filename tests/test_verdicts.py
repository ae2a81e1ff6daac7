"""Diagnoses and verdicts that fit the data: one name for one BLEU statistic, "not
measured" for metrics that measured nothing, kind-aware extraction rates, answer
collapse on choice benchmarks, and drift / per-group tables under false-discovery control.
Each test failed on the code before #13."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from runfolders import FakeBench, write_run
from sfteval.compare import CompareSettings, compare_runs, load_run
from sfteval.diagnoses.drift import collapse, drift
from sfteval.gate import Rules, evaluate, markdown_summary
from sfteval.metric_compare import group_table
from sfteval.metrics.text import corpus_bleu, corpus_bleu_estimate, sentence_bleu
from sfteval.runfolder import SampleLine

WORDS = "the cat sat on a mat dog ran far away quickly slowly and then".split()


def _texts(seed: int, n: int) -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(n)]
    base = [r if rng.random() < 0.5 else " ".join(rng.choice(WORDS) for _ in range(8)) for r in refs]
    tuned = [r if rng.random() < 0.4 else " ".join(rng.choice(WORDS) for _ in range(8)) for r in refs]
    return refs, base, tuned


def _reference_run(tmp: Path, label: str, outputs: list[str], refs: list[str]) -> Path:
    per = sentence_bleu(outputs, refs)
    run = write_run(tmp, label, [FakeBench("heldout", {"sentence_bleu": per}, kind="reference", outputs=outputs,
                                           references=refs, answers=[None] * len(refs))])
    # results.json's `bleu` is what the reference kind writes: corpus BLEU
    path = run / "results.json"
    data = json.loads(path.read_text())
    data["benchmarks"]["heldout"]["metrics"]["bleu"] = corpus_bleu_estimate(outputs, refs, seed=0, resamples=500).to_dict()
    data["benchmarks"]["heldout"]["primary_metric"] = "bleu"
    path.write_text(json.dumps(data))
    return run


def test_bleu_is_one_statistic_across_results_comparison_gate_and_report(tmp_path: Path) -> None:
    """`bleu` was corpus BLEU in results.json (0.000 for one checkpoint) but the mean of
    sentence BLEU in compare, gate and the Compare page (27.5; retention 12481.3)."""
    refs, base_out, tuned_out = _texts(0, 120)
    b, t = _reference_run(tmp_path, "base", base_out, refs), _reference_run(tmp_path, "tuned", tuned_out, refs)
    comp = compare_runs(load_run(b), load_run(t), CompareSettings(resamples=1000))
    m = comp["benchmarks"]["heldout"]["metrics"]
    cb, ct = corpus_bleu(base_out, refs), corpus_bleu(tuned_out, refs)
    for side, value in (("base", cb), ("tuned", ct)):
        assert abs(m["bleu"][side]["value"] - value) < 1e-9  # comparison == corpus BLEU
        assert abs(m["bleu"][f"{side}_reported"]["value"] - value) < 1e-9  # == results.json
    assert abs(m["bleu"]["delta"]["value"] - (ct - cb)) < 1e-9
    assert abs(m["bleu"]["retention"] - ct / cb) < 1e-9
    assert m["bleu"]["test"] == "paired-bootstrap(corpus-bleu)"
    mean_sentence = float(np.mean(sentence_bleu(base_out, refs)))
    assert abs(m["sentence_bleu"]["base"]["value"] - mean_sentence) < 1e-9 and abs(mean_sentence - cb) > 0.5
    gate = evaluate(Rules(min={}, max_drop={"heldout/bleu": 5.0}), comp)
    assert abs(gate.checks[0].value - (ct - cb)) < 1e-9 and f"{ct - cb:+.4f}" in markdown_summary(gate)
    from sfteval.report import build_report, render_markdown  # the report shows the same numbers

    md = render_markdown(*build_report(comp))
    assert any(f"{cb:.{k}f}" in md for k in (2, 3, 4)) and any(f"{ct:.{k}f}" in md for k in (2, 3, 4))


def _gsm8k_pair(tmp: Path) -> dict:
    rng = np.random.default_rng(5)
    flex_b = (rng.random(300) < 0.6).astype(float)
    flex_t = np.where(rng.random(300) < 0.07, 0.0, flex_b)
    answers = [None] * 300  # strict extraction failed everywhere ("A: N" outputs)
    b = write_run(tmp, "base", [FakeBench("gsm8k", {"exact_match_strict": np.zeros(300), "exact_match_flexible": flex_b},
                                          kind="math", general=True, answers=answers)])
    t = write_run(tmp, "tuned", [FakeBench("gsm8k", {"exact_match_strict": np.zeros(300), "exact_match_flexible": flex_t},
                                           kind="math", general=True, answers=answers)])
    return compare_runs(load_run(b), load_run(t), CompareSettings(resamples=500))


def test_forgetting_says_not_measured_for_a_metric_that_measured_nothing(tmp_path: Path) -> None:
    comp = _gsm8k_pair(tmp_path)
    e = comp["benchmarks"]["gsm8k"]
    assert e["forgetting"]["verdict"] == "not measured" and "measured nothing" in e["forgetting"]["detail"]
    assert comp["forgetting"]["not measured"] == ["gsm8k"]
    strict = e["metrics"]["exact_match_strict"]
    assert strict["uninformative"] and strict["delta"]["ci95"] != [0.0, 0.0]
    assert e["metrics"]["exact_match_flexible"]["uninformative"] is None  # the flexible metric did measure
    # the extraction rule alone (strict scores vary a little, extraction failed on >= 95%)
    assert comp["drift"]["gsm8k"]["extraction_failure_rate"]["base"] == 1.0


def test_extraction_rate_only_for_kinds_that_extract(tmp_path: Path) -> None:
    """extraction_failure_rate was 1.000 for every reference benchmark."""
    refs, base_out, tuned_out = _texts(1, 40)
    b, t = _reference_run(tmp_path, "base", base_out, refs), _reference_run(tmp_path, "tuned", tuned_out, refs)
    comp = compare_runs(load_run(b), load_run(t), CompareSettings(resamples=300))
    assert comp["drift"]["heldout"]["extraction_failure_rate"] is None
    assert "extraction_failure_rate" not in comp["drift"]["heldout"]["flags"]


def _choice_rows(answers: list[str], refs: list[str]) -> dict[str, SampleLine]:
    return {str(i): SampleLine(str(i), "q", "h", (a,), ("loglik",), a, r, {"accuracy": float(a == r)})
            for i, (a, r) in enumerate(zip(answers, refs))}


def test_choice_collapse_is_flagged() -> None:
    """A model answering "C" on 88 of 88 items was not flagged."""
    refs = [random.Random(i).choice("ABCD") for i in range(88)]
    base = _choice_rows([r if i % 3 else "A" for i, r in enumerate(refs)], refs)
    tuned = _choice_rows(["C"] * 88, refs)
    assert collapse(tuned)["flagged"] and collapse(tuned)["top_share"] == 1.0
    assert not collapse(base)["flagged"]
    d = drift(base, tuned, 0.05, "choice")
    assert "answer_collapse" in d["flags"] and d["collapse"]["tuned"]["top_answer"] == "C"


def _aa_rows(rng: np.random.Generator, n: int) -> tuple[dict[str, SampleLine], dict[str, SampleLine]]:
    q = rng.beta(0.5, 0.5, size=(4, n))  # per item: P(no answer), P(truncated), P(leak), P(correct)

    def one() -> dict[str, SampleLine]:
        draw = rng.random((4, n)) < q * np.array([[0.3], [0.3], [0.1], [1.0]])
        return {str(i): SampleLine(str(i), "q", "h", ("x <|im_end|>" if draw[2, i] else "x y z w v",),
                                   ("length" if draw[1, i] else "stop",), None if draw[0, i] else "1", "1",
                                   {"exact_match_strict": float(draw[3, i] and not draw[0, i]),
                                    "exact_match_flexible": float(draw[3, i])})
                for i in range(n)}

    return one(), one()


def test_drift_flags_are_fdr_controlled_under_a_a() -> None:
    """Nothing changed, four benchmarks: per-measure 5% flags fired in ~31% of such
    comparisons; Benjamini-Hochberg over the comparison keeps it near 5%."""
    from sfteval.diagnoses import drift as drift_mod
    from sfteval.paired import bh_qvalues

    rng = np.random.default_rng(0)
    raw = fdr = 0
    trials = 120
    for _ in range(trials):
        ds = [drift(*_aa_rows(rng, 150), 0.05, "math") for _ in range(4)]
        raw += any(d["flags"] for d in ds)  # drift() alone: unadjusted
        family = [(i, k) for i, d in enumerate(ds) for k in drift_mod._candidates(d)]
        q = bh_qvalues([ds[i][k]["p_value"] for i, k in family])
        fdr += any(v < 0.05 for v in q)
    assert raw / trials > 0.12 and fdr / trials <= 0.08, (raw / trials, fdr / trials)


def test_per_group_table_has_intervals_and_fdr_under_a_a() -> None:
    """MMLU per-subject "largest drops" under A/A showed a median -9.8-point top drop
    with no interval; now each group has a paired CI and a BH q-value."""
    rng = np.random.default_rng(1)
    flagged_any = 0
    trials = 25
    for _ in range(trials):
        q = rng.beta(0.6, 0.4, size=(57, 25))
        rows = []
        for run in range(2):
            draw = rng.random(q.shape) < q
            rows.append({f"{s}-{i}": SampleLine(f"{s}-{i}", "q", "h", ("A",), ("loglik",), "A", "A",
                                                {"accuracy": float(draw[s, i])}, meta={"subject": f"s{s}"})
                         for s in range(57) for i in range(25)})
        table = group_table("subject", rows[0], rows[1], "accuracy")
        flagged_any += any(g["flagged"] for g in table.values())
        worst = min(table.values(), key=lambda g: g["delta"])
        assert worst["delta_ci95"][0] < worst["delta"] < worst["delta_ci95"][1] and worst["q_value"] is not None
        assert worst["delta"] < -0.05  # the top "drop" is large, as the audit saw ...
    assert flagged_any / trials <= 0.10  # ... but it is not flagged
