"""Every kind aggregates the typed lines of a samples file as the one reader returns them
("generate once, score many": metrics from disk alone, no model), and gets what the
per-item scores say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sfteval.benchmarks import load_spec
from sfteval.kinds import get_kind
from sfteval.runfolder import SampleLine, append_samples, read_samples


def _line(i: int, scores: dict[str, float], meta: dict[str, Any] | None = None, output: str = "x",
          reference: Any = "x", finish: str = "stop") -> SampleLine:
    return SampleLine(id=str(i), prompt=f"p{i}", prompt_hash=f"h{i}", outputs=(output,), finish_reasons=(finish,),
                      answer=output, reference=reference, scores=scores, meta=meta or {})


def _from_disk(tmp_path: Path, lines: list[SampleLine]) -> list[SampleLine]:
    path = tmp_path / "samples" / "b.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    append_samples(path, lines)
    return list(read_samples(path).values())


def test_choice_aggregates_typed_lines_by_subject(tmp_path: Path) -> None:
    lines = [_line(i, {"accuracy": float(i % 2 == 0)}, {"subject": "a" if i < 4 else "b"}, finish="loglik")
             for i in range(8)]
    agg = get_kind("choice").aggregate(load_spec("offline_mmlu"), _from_disk(tmp_path, lines))
    assert agg.metrics["accuracy"].value == pytest.approx(0.5) and agg.metrics["accuracy"].n == 8
    assert set(agg.breakdown["subject"]) == {"a", "b"} and "accuracy_macro" in agg.metrics


def test_math_aggregates_typed_lines(tmp_path: Path) -> None:
    lines = [_line(i, {"exact_match_strict": float(i < 3), "exact_match_flexible": float(i < 5)}) for i in range(10)]
    agg = get_kind("math").aggregate(load_spec("offline_gsm8k"), _from_disk(tmp_path, lines))
    assert agg.primary == "exact_match_strict"
    assert agg.metrics["exact_match_strict"].value == pytest.approx(0.3)
    assert agg.metrics["exact_match_flexible"].value == pytest.approx(0.5)


def test_reference_aggregates_the_first_output_of_typed_lines(tmp_path: Path) -> None:
    spec = load_spec("demo_heldout")
    kind = get_kind("reference")
    from sfteval.types import GenParams, GenRequest, Generation, Sample

    texts = [("the cat sat", "the cat sat"), ("a dog ran", "a dog ran far"), ("x y z", "p q r")]
    lines = []
    for i, (out, ref) in enumerate(texts):
        (rec,) = kind.score(spec, [Sample(str(i), "p", ref, GenRequest("p", GenParams()))],
                            [Generation((out,), ("stop",))])
        lines.append(_line(i, dict(rec.scores), output=out, reference=ref))
    agg = kind.aggregate(spec, _from_disk(tmp_path, lines))
    assert agg.metrics["exact_match"].value == pytest.approx(1 / 3)
    assert 0.0 < agg.metrics["rougeL"].value < 1.0


def test_instruction_aggregates_typed_lines(tmp_path: Path) -> None:
    lines = [_line(0, {}, {"strict": [True, True], "loose": [True, True],
                           "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"]}),
             _line(1, {}, {"strict": [False, True], "loose": [True, True],
                           "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"]})]
    agg = get_kind("instruction").aggregate(load_spec("ifeval"), _from_disk(tmp_path, lines))
    assert agg.metrics["prompt_strict"].value == pytest.approx(0.5)
    assert agg.metrics["prompt_loose"].value == pytest.approx(1.0)
    assert agg.metrics["instruction_strict"].value == pytest.approx(0.75)


def test_code_aggregates_typed_lines(tmp_path: Path) -> None:
    lines = [_line(i, {"pass@1": float(i == 0)}, {"outcomes": ["passed" if i == 0 else "failed"]}) for i in range(4)]
    agg = get_kind("code").aggregate(load_spec("demo_humaneval"), _from_disk(tmp_path, lines))
    assert agg.primary == "pass@1" and agg.metrics["pass@1"].value == pytest.approx(0.25)
