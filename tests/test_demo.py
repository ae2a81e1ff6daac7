"""sfteval demo: the corpus and task files (fast, deterministic), the formats the base
model is pretrained in (they must match what the benchmark kinds send), pretraining
determinism, and (slow) the whole `--fast` demo end to end, checked against the files
it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sfteval.demo.corpus import (
    CODE_INSTRUCTION,
    MATH_INSTRUCTION,
    MC_HEADER,
    TaskSizes,
    chat_text,
    corpus_docs,
    mc_bank,
    mc_solved,
    task_rows,
    write_task_files,
)

SMALL = TaskSizes(code_test=10, math_test=12, sft_train=40, sft_heldout=10)


def test_corpus_is_deterministic_and_seeded() -> None:
    a, b = corpus_docs(300, seed=3), corpus_docs(300, seed=3)
    assert a == b
    assert corpus_docs(300, seed=4) != a
    assert all(d.endswith("</s>") for d in a)
    kinds = {"mc": "multiple choice questions", "math": "#### ", "code": "def check(candidate)", "chat": "<|im_start|>"}
    for name, marker in kinds.items():
        assert any(marker in d for d in a), f"no {name} documents in the corpus"


def test_task_files_are_deterministic(tmp_path: Path) -> None:
    f1 = write_task_files(tmp_path / "a", SMALL, seed=0)
    f2 = write_task_files(tmp_path / "b", SMALL, seed=0)
    for p1, p2 in ((f1.mmlu, f2.mmlu), (f1.gsm8k, f2.gsm8k), (f1.humaneval, f2.humaneval), (f1.sft_train, f2.sft_train), (f1.sft_heldout, f2.sft_heldout)):
        assert p1.read_bytes() == p2.read_bytes()
    assert task_rows(SMALL, seed=1)["gsm8k"] != task_rows(SMALL, seed=0)["gsm8k"]


def test_sft_splits_are_disjoint_and_math_tests_never_in_the_corpus() -> None:
    rows = task_rows(SMALL, seed=0)
    key = lambda r: (r["instruction"], r["input"])  # noqa: E731
    assert not {key(r) for r in rows["sft_train"]} & {key(r) for r in rows["sft_heldout"]}
    assert len(rows["sft_train"]) == SMALL.sft_train and len(rows["sft_heldout"]) == SMALL.sft_heldout
    exclude = frozenset(r["question"] for r in rows["gsm8k"])
    text = "".join(corpus_docs(3000, seed=0, exclude=exclude))
    assert not [q for q in exclude if q in text]


def test_mc_bank_rows_are_valid_mmlu_rows() -> None:
    bank = mc_bank(0)
    assert bank == mc_bank(0)
    assert len({r["id"] for r in bank}) == len(bank)
    counts = [0, 0, 0, 0]
    for r in bank:
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        counts[r["answer"]] += 1
    assert min(counts) > 0  # the right letter is not always the same one


def test_corpus_mc_format_is_what_the_choice_kind_sends() -> None:
    """The base model is pretrained on the exact text the `choice` kind prompts with."""
    from sfteval.benchmarks import load_spec
    from sfteval.kinds import BuildContext, get_kind
    from sfteval.prompts import Renderer

    spec = load_spec("demo_mmlu")
    bank = mc_bank(0)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mmlu.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in bank[:3]))
        built = get_kind("choice").build(spec, BuildContext(Renderer(None, chat=False), str(path), None, 0))
    for sample, row in zip(built.samples, bank[:3]):
        doc = MC_HEADER.format(subject=row["subject"].replace("_", " ")) + mc_solved(row)
        assert doc.startswith(sample.prompt)
        assert doc[len(sample.prompt):].startswith(" " + sample.reference + "\n")


def test_code_tasks_pass_their_own_tests() -> None:
    """Canonical solutions are right (our own generated code, run in-process)."""
    tasks = task_rows(SMALL, seed=0)["humaneval"]
    assert len({t["prompt"] for t in tasks}) == len(tasks) == SMALL.code_test
    for t in tasks:
        scope: dict = {}
        exec(t["prompt"] + t["canonical_solution"] + "\n" + t["test"], scope)  # noqa: S102
        scope["check"](scope[t["entry_point"]])
        wrong: dict = {}
        exec(t["prompt"] + "    return None\n" + "\n" + t["test"], wrong)  # noqa: S102
        with pytest.raises(AssertionError):
            wrong["check"](wrong[t["entry_point"]])


def test_corpus_chat_format_is_the_tokenizers_template() -> None:
    from sfteval.kinds.code import DEFAULT_INSTRUCTION as CODE_DEFAULT
    from sfteval.kinds.math import DEFAULT_INSTRUCTION
    from sfteval.tinymodel import build_tokenizer

    assert MATH_INSTRUCTION == DEFAULT_INSTRUCTION
    assert CODE_INSTRUCTION == CODE_DEFAULT
    tok = build_tokenizer(corpus_docs(50, seed=0), vocab_size=300)
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "#### 3"}], tokenize=False
    )
    assert rendered == chat_text("Q?", "#### 3")


def test_pretraining_is_deterministic(tmp_path: Path) -> None:
    """Same seed, same base-model losses; another seed, another model."""
    from sfteval.demo.pretrain import PretrainSettings, build_base
    from sfteval.tinymodel import TinySpec

    docs, held = corpus_docs(150, seed=0), corpus_docs(20, seed=1, bank_seed=0)
    spec = TinySpec(vocab_size=300, hidden_size=64, num_layers=1, num_heads=1, intermediate_size=128)
    s = PretrainSettings(steps=4, batch_size=2, seq_len=32, warmup_steps=1, eval_windows=4, log_every=2, threads=1)
    r1 = build_base(tmp_path / "a", docs, held, spec, s)
    r2 = build_base(tmp_path / "b", docs, held, spec, s)
    r3 = build_base(tmp_path / "c", docs, held, spec, PretrainSettings(**{**s.__dict__, "seed": 1}))
    assert (r1.train_loss, r1.eval_loss) == (r2.train_loss, r2.eval_loss)
    assert r1.eval_loss < r1.eval_loss_init  # four steps already learn something of so regular a corpus
    assert r3.train_loss != r1.train_loss
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_demo_command_is_registered() -> None:
    from sfteval.cli import app

    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--fast" in result.output and "--out" in result.output


def _verdict_supported(entry: dict, margin: float) -> str:
    lo, hi = entry["metrics"][entry["primary_metric"]]["delta"]["ci95"]
    if hi < -margin:
        return "forgot"
    if lo > margin:
        return "improved"
    return "no evidence"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # under 5 minutes on 2 idle cores; shared CI runners are slower
def test_fast_demo_end_to_end(tmp_path: Path) -> None:
    from sfteval.cli import app

    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo_summary.json").read_text())
    comparison = json.loads(Path(summary["best"]["comparison"]).read_text())
    benches, margin = comparison["benchmarks"], comparison["settings"]["margin"]

    # The base model learned something measurable: fact accuracy well above chance (0.25).
    base_mmlu = benches["demo_mmlu"]["metrics"]["accuracy"]["base"]
    assert base_mmlu["ci95"][0] > 0.25, base_mmlu

    # A target-task gain that the CI supports, as printed and as in comparison.json.
    target = benches["demo_heldout"]["metrics"][benches["demo_heldout"]["primary_metric"]]["delta"]
    assert target["ci95"][0] > 0, target
    assert summary["best"]["target"]["delta"] == target["value"]
    assert f"{target['value']:+.3f}" in result.output

    # Every forgetting verdict follows from its CI and the margin; at least one general
    # benchmark is judged, and each verdict is printed.
    judged = {b: e for b, e in benches.items() if e.get("forgetting")}
    assert {"demo_mmlu", "demo_gsm8k", "demo_humaneval"} <= set(judged)
    for b, e in judged.items():
        assert e["forgetting"]["verdict"] == _verdict_supported(e, margin), (b, e["forgetting"])
        assert f"{b}/" in result.output and e["forgetting"]["verdict"] in result.output
    assert sorted(comparison["forgetting"]["forgot"]) == sorted(b for b, e in judged.items() if e["forgetting"]["verdict"] == "forgot")

    # The report, the gate and the dashboard pointer are there.
    report = Path(summary["best"]["report_md"]).read_text()
    assert "demo_heldout" in report
    for b, e in judged.items():
        assert any(b in line and e["forgetting"]["verdict"] in line for line in report.splitlines()), b
    assert (Path(summary["best"]["comparison"]).parent / "report.html").is_file()
    assert summary["gate"]["verdict"] in {"pass", "fail", "inconclusive"}
    assert summary["gate"]["verdict"].upper() in result.output
    assert f"sfteval dashboard --reports {out.resolve() / 'reports'}" in result.output
    sweep = json.loads(Path(summary["sweep"]).read_text())
    assert [c["step"] for c in sweep["checkpoints"]] == summary["sft"]["checkpoints"]
    assert len(sweep["checkpoints"]) >= 2
