"""gsm8k_lmeval / gsm8k_cot score exactly as lm-eval does: our filters and exact_match
against lm-eval's own RegexFilter and exact_match on a table of outputs, with the
settings read from lm-eval's own task YAMLs; and the prompts' exemplar draws."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sfteval.benchmarks import load_spec
from sfteval.kinds.lmeval_style import fewshot_draws, prompt_settings, render, score_output, scoring_settings

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is in the dev extra")

OUTPUTS = [
    "Tom has 3 + 4 = 7 apples.\n#### 7", "#### 1,234.", "#### 7\n#### 8", "The answer is 7.", "The answer is $1,000.",
    "The answer is -3.5.", "I think it is 72.", "72", "no number here", "", "#### -12", "$5 then $6.", "1.5.",
    "The answer is 12. #### 13", "Answer: 4,5", "#### 0.50", "twelve", "#### 7 apples. The answer is 8.",
]
REFERENCES = ["Because 3 + 4 = 7.\n#### 7", "#### 1234", "#### 8", "#### 1000", "#### -3.5", "#### 72", "#### 13"]


def _lmeval_scores(task_yaml: str, output: str, reference: str) -> dict[str, float]:
    """Score one output with lm-eval's own filter and metric code, driven by its YAML."""
    import yaml
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / task_yaml).read_text())
    metric = cfg["metric_list"][0]
    out = {}
    for flt in cfg["filter_list"]:
        rx = flt["filter"][0]
        got = RegexFilter(regex_pattern=rx["regex_pattern"], group_select=rx.get("group_select", 0)).apply(
            [[output]], [{}])[0][0]
        em = exact_match_hf_evaluate([got], [reference], regexes_to_ignore=metric["regexes_to_ignore"],
                                     ignore_case=metric["ignore_case"], ignore_punctuation=metric["ignore_punctuation"])
        out["exact_match_strict" if flt["name"] == "strict-match" else "exact_match_flexible"] = float(em["exact_match"])
    return out


@pytest.mark.parametrize("bench, task_yaml", [("gsm8k_lmeval", "gsm8k.yaml"), ("gsm8k_cot", "gsm8k-cot.yaml")])
def test_scores_equal_lm_evals_own_filters(bench: str, task_yaml: str) -> None:
    spec = load_spec(bench)
    s = scoring_settings(spec.options)
    for out in OUTPUTS:
        for ref in REFERENCES:
            target = ref if bench == "gsm8k_lmeval" else ref.split("####")[-1].strip()
            ours = score_output(s, out, target)
            assert {k: ours[k] for k in ("exact_match_strict", "exact_match_flexible")} == \
                _lmeval_scores(task_yaml, out, target), (out, ref)


def test_strict_takes_the_first_hashes_like_lm_eval() -> None:
    s = scoring_settings(load_spec("gsm8k_lmeval").options)
    assert score_output(s, "#### 7\n#### 8", "x\n#### 7")["exact_match_strict"] == 1.0  # lm-eval's rule, not ours


def test_exemplars_are_drawn_per_document_by_one_seeded_rng() -> None:
    pool = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(20)]
    draws = fewshot_draws(pool, 4, 5, 1234, "default")
    rnd = random.Random(1234)
    assert draws == [rnd.sample(pool, 5) for _ in range(4)]  # document i gets the i-th draw
    assert len({tuple(d["question"] for d in x) for x in draws}) == 4
    assert fewshot_draws(pool, 3, 2, 1, "first_n") == [pool[:2]] * 3
    p = prompt_settings({}, 2, 1234, "x")
    assert render(p, {"question": "Q?"}, pool[:2]) == "Question: q0\nAnswer: a0\n\nQuestion: q1\nAnswer: a1\n\nQuestion: Q?\nAnswer:"


def test_gsm8k_cot_exemplars_are_lm_evals() -> None:
    import yaml

    from sfteval.benchmarks import benchmarks_dir
    from sfteval.fileio import read_jsonl

    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k-cot.yaml").read_text())
    ours = read_jsonl(benchmarks_dir() / load_spec("gsm8k_cot").options["fewshot_file"])
    assert ours == [{"question": s["question"], "target": s["target"]} for s in cfg["fewshot_config"]["samples"]]
    assert prompt_settings(load_spec("gsm8k_cot").options, 8, 0, "x").question_template + "" == \
        cfg["doc_to_text"].replace("{{question}}", "{question}")


def test_mmlu_prompts_are_lm_evals_default_template(tmp_path: Path) -> None:
    """Our mmlu, built for local items, against lm-eval's own task machinery on the same
    items (its `mmlu` default template, per-subject description, first_n 5-shot)."""
    import json

    import yaml
    from lm_eval.tasks import TaskManager

    from sfteval.benchmarks import with_overrides
    from sfteval.kinds import BuildContext, get_kind
    from sfteval.prompts import Renderer

    offline = Path(__file__).resolve().parents[1] / "sfteval" / "catalog" / "data" / "offline"
    subject = "elementary_arithmetic"
    for split in ("test", "dev"):
        rows = [json.loads(x) for x in (offline / f"mmlu_{split}.jsonl").read_text().splitlines()]
        rows = [r for r in rows if r["subject"] == subject]
        rows[0]["choices"][1] = " 22 "  # stray whitespace in a choice: lm-eval keeps it, so must we
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    template = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/mmlu/default/_default_template_yaml").read_text())
    template.update(task="local_mmlu", dataset_path="json", description=(
        f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"),
        dataset_kwargs={"data_files": {"test": str(tmp_path / "test.jsonl"), "dev": str(tmp_path / "dev.jsonl")}})
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "local_mmlu.yaml").write_text(yaml.safe_dump(template))
    task = TaskManager(include_path=str(tmp_path / "tasks")).load_task_or_group(["local_mmlu"])["local_mmlu"]
    theirs = [task.fewshot_context(doc, 5) for doc in task.eval_docs]

    spec = with_overrides(load_spec("mmlu"), str(tmp_path / "test.jsonl"), str(tmp_path / "dev.jsonl"))
    built = get_kind("choice").build(spec, BuildContext(renderer=Renderer(None, chat=False)))
    assert [s.prompt for s in built.samples] == theirs
    assert all(s.request.continuations == (" A", " B", " C", " D") for s in built.samples)
