"""Kind `choice` directly: the prompt of each mode, the exemplars recorded being the ones
in the prompt (a 0-shot vs k-shot mismatch is silent otherwise), scoring, aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfteval.benchmarks import parse_spec
from sfteval.errors import SftevalError
from sfteval.kinds import BuildContext, get_kind
from sfteval.prompts import Renderer
from sfteval.runfolder import SampleLine
from sfteval.types import Generation, GenRequest, Loglik, LoglikRequest

DEV = [
    {"id": "d0", "question": "What is 1 + 1?", "subject": "arith", "choices": ["2", "3", "4", "5"], "answer": 0},
    {"id": "d1", "question": "What is 2 + 2?", "subject": "arith", "choices": ["3", "4", "5", "6"], "answer": 1},
    {"id": "d2", "question": "What is 3 + 3?", "subject": "arith", "choices": ["6", "7", "8", "9"], "answer": 0},
    {"id": "d3", "question": "Capital of France?", "subject": "geo", "choices": ["Rome", "Paris"], "answer": "B"},
    {"id": "d4", "question": "Capital of Spain?", "subject": "geo", "choices": ["Madrid", "Oslo"], "answer": "A"},
]
TEST = [
    {"id": "t0", "question": "What is 5 + 5?", "subject": "arith", "choices": ["9", "10", "11", "12"], "answer": 1},
    {"id": "t1", "question": "Capital of Italy?", "subject": "geo", "choices": ["Rome", "Bern"], "answer": 0},
]


class _FakeTokenizer:
    """Just enough of a tokenizer for Renderer.conversation: a visible chat template."""

    chat_template = "fake"

    def apply_chat_template(self, messages, chat_template=None, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


def _spec(tmp_path: Path, mode: str, k: int, chat_k: int = 0):
    for name, rows in (("dev", DEV), ("test", TEST)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"name": "mc", "kind": "choice", "role": "general",
           "data": {"local": "test.jsonl", "fewshot_local": "dev.jsonl"},
           "prompt": {"num_fewshot": k, "chat_fewshot": chat_k}, "options": {"mode": mode}}
    return parse_spec(raw, tmp_path / "mc.toml")


def _build(spec, chat: bool):
    renderer = Renderer(_FakeTokenizer() if chat else None, chat=chat)
    return get_kind("choice").build(spec, BuildContext(renderer))


@pytest.mark.parametrize("mode", ["loglik", "generate"])
def test_recorded_exemplars_are_the_ones_in_the_prompt(tmp_path: Path, mode: str) -> None:
    """generate mode without a chat template recorded 2 exemplar ids per subject but sent a
    0-shot prompt: whatever is recorded must be what the model saw."""
    built = _build(_spec(tmp_path, mode, k=2), chat=False)
    by_id = {r["id"]: r for r in DEV}
    used = built.settings["fewshot_ids_by_subject"]
    assert built.settings["num_fewshot"] == 2 and used == {"arith": ["d0", "d1"], "geo": ["d3", "d4"]}
    for s in built.samples:
        shots = used[s.meta["subject"]]
        for sid in shots:
            assert by_id[sid]["question"] in s.prompt, (mode, s.id, sid)
        others = [r["question"] for r in DEV if r["id"] not in shots]
        assert not any(q in s.prompt for q in others)
        assert s.prompt.endswith("Answer:")


def test_loglik_and_plain_generate_send_the_same_text(tmp_path: Path) -> None:
    a = _build(_spec(tmp_path, "loglik", k=2), chat=False)
    b = _build(_spec(tmp_path, "generate", k=2), chat=False)
    assert [s.prompt for s in a.samples] == [s.prompt for s in b.samples]
    assert isinstance(a.samples[0].request, LoglikRequest) and a.samples[0].request.continuations == (" A", " B", " C", " D")
    assert isinstance(b.samples[0].request, GenRequest) and b.settings["gen"] is not None


def test_chat_mode_uses_chat_fewshot_as_turns(tmp_path: Path) -> None:
    built = _build(_spec(tmp_path, "generate", k=5, chat_k=1), chat=True)
    s = built.samples[0]
    assert built.settings["chat_template"] and built.settings["num_fewshot"] == 1
    assert built.settings["fewshot_ids_by_subject"]["arith"] == ["d0"]
    assert s.prompt.count("<user>") == 2 and "<assistant>A</assistant>" in s.prompt  # d0's answer, then the question
    assert "What is 1 + 1?" in s.prompt and "What is 2 + 2?" not in s.prompt


def test_too_few_exemplars_names_the_subject(tmp_path: Path) -> None:
    with pytest.raises(SftevalError, match="3-shot needs 3 exemplars for subject 'geo'"):
        _build(_spec(tmp_path, "loglik", k=3), chat=False)


def test_bad_mode_and_bad_answer(tmp_path: Path) -> None:
    with pytest.raises(SftevalError, match="unknown mode"):
        _build(_spec(tmp_path, "guess", k=0), chat=False)
    (tmp_path / "test.jsonl").write_text(json.dumps({**TEST[0], "answer": 7}) + "\n")
    spec = parse_spec({"name": "mc", "kind": "choice", "data": {"local": "test.jsonl"}}, tmp_path / "mc.toml")
    with pytest.raises(SftevalError) as e:
        get_kind("choice").build(spec, BuildContext(Renderer(None, chat=False)))
    assert e.value.field == "answer" and e.value.line == 1


def test_scoring_loglik_and_generated_letters(tmp_path: Path) -> None:
    kind = get_kind("choice")
    spec = _spec(tmp_path, "loglik", k=0)
    built = _build(spec, chat=False)
    recs = kind.score(spec, built.samples, [Loglik((-3.0, -0.5, -2.0, -4.0), (False,) * 4),
                                             Loglik((-0.1, -2.0), (True, False))])
    assert [r.answer for r in recs] == ["B", "A"] and [r.scores["accuracy"] for r in recs] == [1.0, 1.0]
    assert recs[0].meta["logprobs"]["B"] == -0.5
    gen = kind.score(spec, built.samples, [Generation(("The answer is C.",), ("stop",)),
                                           Generation(("I don't know",), ("length",))])
    assert [r.answer for r in gen] == ["C", None] and [r.scores["accuracy"] for r in gen] == [0.0, 0.0]
    lines = [SampleLine.from_dict({"id": str(i), "scores": {"accuracy": a}, "meta": {"subject": s}})
             for i, (a, s) in enumerate(((1.0, "arith"), (0.0, "arith"), (1.0, "geo"), (1.0, "geo")))]
    agg = kind.aggregate(spec, lines)
    assert agg.primary == "accuracy" and agg.metrics["accuracy"].value == 0.75
    assert agg.metrics["accuracy_macro"].value == pytest.approx(0.75)
    assert agg.breakdown["subject"]["arith"]["accuracy"].value == 0.5
