"""Kind `reference` directly: prompts are the conversation up to the last assistant turn
(rendered by the chat template or the default template), the reference is that turn,
per-sample ROUGE/BLEU scores, corpus BLEU with a bootstrap CI, and the run-level options
the runner copies in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfteval.benchmarks import parse_spec
from sfteval.errors import SftevalError
from sfteval.kinds import BuildContext, get_kind
from sfteval.prompts import Renderer
from sfteval.runfolder import SampleLine
from sfteval.types import Generation

ROWS = [
    {"id": "a", "instruction": "Reverse the words: red green blue", "output": "blue green red"},
    {"id": "b", "instruction": "Upper-case: hello world", "output": "HELLO WORLD"},
    {"id": "c", "instruction": "Sort: pear apple fig", "output": "apple fig pear"},
]


def _spec(tmp_path: Path, rows: list[dict] = ROWS, metrics: tuple[str, ...] = ("bleu", "rouge1", "rougeL")):
    (tmp_path / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"name": "held", "kind": "reference", "role": "target", "data": {"local": "held.jsonl", "format": "alpaca"},
           "options": {"metrics": list(metrics), "bootstrap_seed": 3, "bootstrap_resamples": 200}}
    return parse_spec(raw, tmp_path / "held.toml")


def test_prompt_is_the_conversation_and_reference_the_last_reply(tmp_path: Path) -> None:
    built = get_kind("reference").build(_spec(tmp_path), BuildContext(Renderer(None, chat=False)))
    assert [s.id for s in built.samples] == ["a", "b", "c"]
    s = built.samples[0]
    assert s.reference == "blue green red" and "Reverse the words: red green blue" in s.prompt
    assert "blue green red" not in s.prompt and s.prompt.endswith("assistant:")  # no tokenizer: plain roles
    assert built.settings["metrics"] == ["bleu", "rouge1", "rougeL"] and built.settings["chat_template"] is False


def test_scores_and_aggregate(tmp_path: Path) -> None:
    kind = get_kind("reference")
    spec = _spec(tmp_path)
    built = kind.build(spec, BuildContext(Renderer(None, chat=False)))
    outs = [Generation(("blue green red",), ("eos",)), Generation(("hello world",), ("eos",)),
            Generation(("nothing like it",), ("length",))]
    recs = kind.score(spec, built.samples, outs)
    # per item: sentence BLEU under its own name; `bleu` is corpus BLEU and has no per-item value
    assert recs[0].scores["rougeL"] == 1.0 and recs[0].scores["sentence_bleu"] == pytest.approx(100.0, abs=1e-6)
    assert recs[1].scores["rouge1"] == 1.0 and recs[1].scores["sentence_bleu"] < 100.0  # rouge lower-cases, BLEU not
    assert all("bleu" not in r.scores for r in recs)
    assert recs[2].scores["rougeL"] == 0.0 and all(r.answer is None for r in recs)
    lines = [SampleLine.from_dict({"id": s.id, "output": o.texts[0], "reference": s.reference, "scores": r.scores})
             for s, o, r in zip(built.samples, outs, recs)]
    agg = kind.aggregate(spec, lines)
    assert agg.primary == "rougeL"
    assert agg.metrics["rougeL"].value == pytest.approx(sum(r.scores["rougeL"] for r in recs) / 3)
    # no hypothesis reaches 4 tokens, so corpus BLEU is 0 (sacrebleu's rule): not [0, 0] (#13)
    assert agg.metrics["bleu"].method.startswith("corpus-bleu-zero") and agg.metrics["bleu"].n == 3
    assert agg.metrics["bleu"].ci95[0] == 0.0 and agg.metrics["bleu"].ci95[1] > 0.0
    from sfteval.metrics.text import corpus_bleu

    assert agg.metrics["bleu"].value == pytest.approx(corpus_bleu([o.texts[0] for o in outs],
                                                                  [s.reference for s in built.samples]))
    again = kind.aggregate(spec, lines)
    assert again.metrics["bleu"].ci95 == agg.metrics["bleu"].ci95  # seeded


def test_unknown_metric_and_duplicate_ids(tmp_path: Path) -> None:
    with pytest.raises(SftevalError) as e:
        get_kind("reference").build(_spec(tmp_path, metrics=("meteor",)), BuildContext(Renderer(None, chat=False)))
    assert e.value.field == "options.metrics"
    with pytest.raises(SftevalError, match="duplicate"):
        get_kind("reference").build(_spec(tmp_path, rows=[ROWS[0], ROWS[0]]), BuildContext(Renderer(None, chat=False)))


def test_the_kind_declares_what_the_runner_gives_it() -> None:
    kind = get_kind("reference")
    assert kind.user_data is True  # no catalog data: skipped without --data
    assert set(kind.run_options) == {"bertscore_model", "bootstrap_seed", "bootstrap_resamples"}
