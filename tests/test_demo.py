"""sfteval demo: the corpus and task files (fast, deterministic), the formats the base
model is pretrained in (they must match what the benchmark kinds send), pretraining
determinism, and (slow) the whole demo end to end (the README's command), checked against the files
it wrote."""

from __future__ import annotations

import json
import re
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


def test_target_task_asks_about_facts_the_corpus_states_and_held_out_animals_are_never_asked() -> None:
    """Every reply is the animal's fact; the corpus states the facts of every animal
    (train and held-out) in plain sentences and never as a question; held-out questions
    are about animals that no training row mentions."""
    from sfteval.demo.task import ANIMALS, FACTS, RELATIONS

    rows = task_rows(SMALL, seed=0)
    train, held = rows["sft_train"], rows["sft_heldout"]
    animal = lambda r: re.findall(r"the (\w+)", r["instruction"])[-1]  # noqa: E731
    for r in train + held:
        assert animal(r) in ANIMALS and r["output"] == FACTS[animal(r)][r["kind"]], r
        assert r["input"] == "" and r["kind"] in RELATIONS
    assert not {animal(r) for r in train} & {animal(r) for r in held}
    assert {r["kind"] for r in held} == set(RELATIONS)
    assert len({(r["instruction"], r["output"]) for r in held}) == len(held)  # no held-out row twice
    text = "".join(corpus_docs(3000, seed=0))
    for a in {animal(r) for r in held}:
        for rel in RELATIONS:
            assert f"the {a} " in text.lower() and FACTS[a][rel] in text
    assert not [r for r in held if r["instruction"] in text]  # the questions are never in the corpus
    assert task_rows(SMALL, seed=1)["sft_heldout"] != held  # the seed picks the held-out animals


@pytest.mark.parametrize(("output", "reference", "exact"), [
    ("river, stone", "river, stone", 1.0),
    ("  river, stone\n", "river, stone", 1.0),  # outer whitespace is not the reply
    ("river, stone.", "river, stone", 0.0),
    ("River, stone", "river, stone", 0.0),  # case is part of the reply
    ("", "river", 0.0),
])
def test_reference_kind_exact_match(output: str, reference: str, exact: float) -> None:
    """exact_match (added for the demo's target task) scores the whole reply."""
    from sfteval.benchmarks import load_spec
    from sfteval.kinds import get_kind
    from sfteval.types import Generation, GenParams, GenRequest, Sample

    spec = load_spec("demo_heldout")
    kind = get_kind("reference")
    sample = Sample("h0", "p", reference, GenRequest("p", GenParams()))
    (record,) = kind.score(spec, [sample], [Generation((output,), ("stop",))])
    assert record.scores["exact_match"] == exact
    from sfteval.runfolder import SampleLine

    line = SampleLine.from_dict({"id": "h0", "reference": reference, "output": output, "scores": record.scores})
    agg = kind.aggregate(spec, [line] * 4)
    assert agg.metrics["exact_match"].value == exact


def test_headline_is_computed_from_the_summary_facts() -> None:
    """One sentence with the solved share, the losses, what was kept, the step and the gate."""
    from sfteval.demo.summary import headline

    st = {
        "target": {"benchmark": "demo_heldout", "metric": "exact_match", "base": 0.0, "tuned": 0.8125},
        "forgot": [{"benchmark": "demo_gsm8k", "metric": "exact_match_strict", "base": 0.6, "tuned": 0.2,
                    "delta": -0.4, "ci95": [-0.55, -0.25]}],
        "dropped": [],
        "kept": [{"benchmark": "demo_mmlu", "metric": "accuracy", "base": 0.97, "tuned": 0.96, "delta": -0.01,
                  "ci95": [-0.04, 0.02]}],
        "keep_step": 120, "final_step": 200,
        "final_worse": [{"benchmark": "demo_gsm8k", "metric": "exact_match_strict", "best": 0.2, "final": 0.1}],
        "gate": {"verdict": "fail", "failed": ["demo_gsm8k/exact_match_strict"]},
    }
    text = headline(st)
    assert text.startswith("The tuned model solves 81% of the held-out task exactly, up from 0%;")
    assert "lost 40 points on demo_gsm8k (0.60 -> 0.20)" in text and "kept demo_mmlu" in text
    assert "keep step 120, not the last (200): it loses 10 more points on demo_gsm8k" in text
    assert text.endswith("the gate says FAIL (demo_gsm8k/exact_match_strict dropped beyond the allowed drop).")
    assert "\n" not in text


def test_headline_names_a_significant_drop_within_the_margin() -> None:
    """Seen with --seed 1: MMLU-style 0.73 -> 0.63, CI [-0.196, -0.018], significant but not
    beyond the 0.02 margin ("no evidence"); the headline said "it lost no general skill
    beyond the margin but kept demo_gsm8k ..." and never named demo_mmlu."""
    from sfteval.demo.summary import headline, story

    def f(verdict: str, base: float, tuned: float, ci: list[float]) -> dict:
        return {"metric": "m", "base": base, "tuned": tuned, "delta": tuned - base, "ci95": ci, "verdict": verdict,
                "detail": ""}

    forgetting = {"demo_mmlu": f("no evidence", 0.727, 0.625, [-0.196, -0.018]),
                  "demo_gsm8k": f("no evidence", 0.233, 0.167, [-0.293, 0.166])}
    summary = {"best": {"forgetting": forgetting, "target": {"metric": "exact_match", "base": 0.0, "tuned": 0.61}},
               "final": {"forgetting": forgetting}, "best_checkpoint": {"step": 300, "final_step": 300},
               "gate": {"verdict": "inconclusive", "checks": []}}
    st = story(summary)
    assert [r["benchmark"] for r in st["dropped"]] == ["demo_mmlu"] and [r["benchmark"] for r in st["kept"]] == ["demo_gsm8k"]
    text = headline(st)
    assert "it lost 10 points on demo_mmlu (0.73 -> 0.62, a significant drop not shown beyond the margin) but kept " \
           "demo_gsm8k (0.23 -> 0.17, no significant drop)" in text, text
    st.update(dropped=[], forgot=[])
    assert "it kept demo_gsm8k (0.23 -> 0.17, no significant drop)" in headline(st)


def test_demo_command_is_registered() -> None:
    from sfteval.cli import app

    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--out" in result.output and "--fast" not in result.output  # one recipe; the old flag is hidden


def _verdict_supported(entry: dict, margin: float) -> str:
    lo, hi = entry["metrics"][entry["primary_metric"]]["delta"]["ci95"]
    if hi < -margin:
        return "forgot"
    if lo > margin:
        return "improved"
    return "no evidence"


def _numbers(obj: object, path: str = "") -> dict[str, float]:
    """Every number in a JSON document by its key path, timings aside (they are not results)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            timing = str(k).endswith("_s") or any(t in str(k) for t in ("seconds", "time", "elapsed", "per_s", "created"))
            if not timing:
                out.update(_numbers(v, f"{path}/{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{path}[{i}]"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[path] = obj
    return out


def _demo_numbers(out: Path) -> dict[str, dict[str, float]]:
    """The numbers of every file a reader of the demo looks at (summary, comparisons, sweep, runs)."""
    summary = json.loads((out / "demo_summary.json").read_text())
    files = {"summary": out / "demo_summary.json", "sweep": Path(summary["sweep"]),
             "best": Path(summary["best"]["comparison"]), "final": Path(summary["final"]["comparison"])}
    found = {name: _numbers(json.loads(p.read_text())) for name, p in files.items()}
    for results in sorted((out / "reports" / "runs").glob("*/results.json")):
        doc = json.loads(results.read_text())
        found[f"run:{doc.get('label')}"] = _numbers(doc.get("benchmarks"))
    return found


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `sfteval demo` run (the README's command), shared by the assertions below (it takes minutes)."""
    from sfteval.cli import app

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
@pytest.mark.timeout(1800)  # under 5 minutes on 2 idle cores; shared CI runners are slower
def test_demo_meets_its_targets(demo_run: tuple[Path, str]) -> None:
    """The issue's targets, read from the files the demo wrote: the tuned model solves
    most held-out rows (exact match >= 0.5 on the report half) on a curve that rises and
    bends; forgetting is partial (one general benchmark forgot, one shows no significant
    drop) and the final checkpoint is worse than the kept one on a general benchmark."""
    out, _ = demo_run
    summary = json.loads((out / "demo_summary.json").read_text())
    best = json.loads(Path(summary["best"]["comparison"]).read_text())["benchmarks"]
    final = json.loads(Path(summary["final"]["comparison"]).read_text())["benchmarks"]
    sweep = json.loads(Path(summary["sweep"]).read_text())

    target = best["demo_heldout"]["metrics"]
    assert target["exact_match"]["tuned"]["value"] >= 0.5, target["exact_match"]
    # claims on the half of the held-out items the sweep did not choose on (sfteval.selection)
    assert best["demo_heldout"]["n_aligned"] < len((out / "data" / "sft_heldout.jsonl").read_text().splitlines())
    assert target["exact_match"]["base"]["value"] <= 0.1  # the base cannot do it: the gain is the tuning's

    # The learning curve: rises from the base, then bends (the first half of training
    # gains more than the second half), and the sweep keeps a checkpoint before the last.
    assert sweep["select"]["metric"] == "demo_heldout/exact_match"
    steps = [c["step"] for c in sweep["checkpoints"]]
    curve = [c["metrics"]["demo_heldout"]["exact_match"]["value"] for c in sweep["checkpoints"]]
    base_value = target["exact_match"]["base"]["value"]
    assert len(curve) >= 4, curve
    mid = len(curve) // 2 - 1
    assert curve[mid] - base_value > curve[-1] - curve[mid] and max(curve) > curve[0], curve
    assert sweep["best"]["step"] < max(steps) and sweep["best"]["step"] == summary["best_checkpoint"]["step"]

    general = {b: e for b, e in best.items() if e.get("forgetting")}
    assert {"demo_mmlu", "demo_gsm8k", "demo_humaneval"} <= set(general)
    forgot = [b for b, e in general.items() if e["forgetting"]["verdict"] == "forgot"]
    kept = [b for b, e in general.items() if e["metrics"][e["primary_metric"]]["delta"]["ci95"][1] >= 0]
    assert forgot and kept, {b: e["metrics"][e["primary_metric"]]["delta"] for b, e in general.items()}
    worse = [b for b, e in general.items()
             if final[b]["metrics"][e["primary_metric"]]["tuned"]["value"] < e["metrics"][e["primary_metric"]]["tuned"]["value"]]
    assert worse, "the final checkpoint should be worse than the kept one on some general benchmark"

    # The summary's story is these same facts.
    story = summary["story"]
    assert story["target"]["tuned"] == target["exact_match"]["tuned"]["value"]
    assert sorted(r["benchmark"] for r in story["forgot"]) == sorted(forgot)
    assert sorted(r["benchmark"] for r in story["kept"]) == sorted(kept)
    assert sorted(r["benchmark"] for r in story["final_worse"]) == sorted(worse)
    assert story["keep_step"] == sweep["best"]["step"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_held_out_rouge_reaches_the_issue_target(demo_run: tuple[Path, str]) -> None:
    """The issue's rougeL >= 0.6 at the kept checkpoint, on the report half (one-word
    replies: rougeL is exact match here; measured 0.732 on 41 report-half items)."""
    out, _ = demo_run
    summary = json.loads((out / "demo_summary.json").read_text())
    best = json.loads(Path(summary["best"]["comparison"]).read_text())["benchmarks"]
    assert best["demo_heldout"]["metrics"]["rougeL"]["tuned"]["value"] >= 0.6


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_says_it_in_one_sentence_and_seeds_a_study(demo_run: tuple[Path, str]) -> None:
    """The headline leads the output whole (CliRunner's output is a pipe: no terminal
    width); the rating study holds base vs best on every held-out pair; the backend was
    chosen for the model's size."""
    from sfteval.ratings import VoteStore

    out, output = demo_run
    summary = json.loads((out / "demo_summary.json").read_text())
    lines = [line for line in output.splitlines() if line.strip()]
    assert summary["headline"] in lines  # one whole line, never cut at a terminal's width
    assert summary["headline"].startswith(f"The tuned model solves {summary['story']['target']['tuned'] * 100:.0f}%")
    assert f"keep step {summary['story']['keep_step']}" in summary["headline"]
    assert output.index(summary["headline"]) < output.index("What the demo found")

    study = summary["study"]
    store = VoteStore(out / "reports" / "ratings.sqlite3")
    info = store.study(study["study_id"])
    held = (out / "data" / "sft_heldout.jsonl").read_text().splitlines()
    assert info.n_items == len(held) == study["n_items"] and info.benchmark == "demo_heldout" and info.overlap == 2
    ck = {c["step"]: c["run_dir"] for c in json.loads(Path(summary["sweep"]).read_text())["checkpoints"]}
    assert Path(info.tuned_run).resolve() == Path(ck[summary["best_checkpoint"]["step"]]).resolve()
    assert "base" not in info.study_id and f"ratings add-raters {study['study_id']}" in output
    assert f"sfteval dashboard --reports {out.resolve() / 'reports'}" in output

    assert summary["backend"] == "hf"
    assert "parameters" in summary["backend_reason"] or "not importable" in summary["backend_reason"] \
        or "unavailable" in summary["backend_reason"], summary["backend_reason"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_twice_gives_the_same_numbers(demo_run: tuple[Path, str], tmp_path: Path) -> None:
    """A second demo (in another folder, on a copy of the first's pretrained base, to
    keep CI bounded: pretraining's own determinism is test_pretraining_is_deterministic)
    writes the same numbers, byte for byte, in every file a reader looks at."""
    import shutil

    from sfteval.cli import app

    first, _ = demo_run
    second = tmp_path / "again"
    shutil.copytree(first / "base", second / "base")
    result = CliRunner().invoke(app, ["demo", "--out", str(second)])
    assert result.exit_code == 0, result.output
    a, b = _demo_numbers(first), _demo_numbers(second)
    assert set(a) == set(b)
    for name in a:
        assert json.dumps(a[name], sort_keys=True) == json.dumps(b[name], sort_keys=True), name
    sa, sb = (json.loads((d / "demo_summary.json").read_text()) for d in (first, second))
    assert sa["headline"] == sb["headline"] and sa["story"] == sb["story"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_end_to_end(demo_run: tuple[Path, str]) -> None:
    """What the demo prints follows from its files: verdicts, CIs, report, gate."""
    out, output = demo_run
    summary = json.loads((out / "demo_summary.json").read_text())
    comparison = json.loads(Path(summary["best"]["comparison"]).read_text())
    benches, margin = comparison["benchmarks"], comparison["settings"]["margin"]

    # The base model learned something measurable: fact accuracy well above chance (0.25).
    base_mmlu = benches["demo_mmlu"]["metrics"]["accuracy"]["base"]
    assert base_mmlu["ci95"][0] > 0.25, base_mmlu

    # A target-task gain that the CI supports, as printed and as in comparison.json.
    target = benches["demo_heldout"]["metrics"][benches["demo_heldout"]["primary_metric"]]["delta"]
    assert target["ci95"][0] > 0, target
    assert summary["best"]["target_rougeL"]["delta"] == target["value"]
    assert f"{target['value']:+.3f}" in output

    # Every forgetting verdict follows from its CI and the margin; at least one general
    # benchmark is judged, and each verdict is printed.
    judged = {b: e for b, e in benches.items() if e.get("forgetting")}
    assert {"demo_mmlu", "demo_gsm8k", "demo_humaneval"} <= set(judged)
    for b, e in judged.items():
        if e["forgetting"]["verdict"] != "not measured":  # a metric that measured nothing has no CI verdict
            assert e["forgetting"]["verdict"] == _verdict_supported(e, margin), (b, e["forgetting"])
        assert f"{b}/" in output and e["forgetting"]["verdict"] in output
    assert sorted(comparison["forgetting"]["forgot"]) == sorted(b for b, e in judged.items() if e["forgetting"]["verdict"] == "forgot")

    # The report, the gate and the dashboard pointer are there.
    report = Path(summary["best"]["report_md"]).read_text()
    assert "demo_heldout" in report
    for b, e in judged.items():
        assert any(b in line and e["forgetting"]["verdict"] in line for line in report.splitlines()), b
    assert (Path(summary["best"]["comparison"]).parent / "report.html").is_file()
    from sfteval.gate import EXIT

    assert summary["gate"]["verdict"] in EXIT
    assert summary["gate"]["verdict"].upper() in output
    assert f"sfteval dashboard --reports {out.resolve() / 'reports'}" in output
    sweep = json.loads(Path(summary["sweep"]).read_text())
    assert [c["step"] for c in sweep["checkpoints"]] == summary["sft"]["checkpoints"]
    assert len(sweep["checkpoints"]) >= 2
