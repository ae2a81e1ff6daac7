"""docs/extending.md's examples run: each fenced block marked `example=NAME` is extracted
from the markdown and used the way the guide says (benchmark TOML + data through the
kind; the kind registered in KINDS; the metric on a table; the backend through the
runner; the diagnosis through compare and the report; the page in Streamlit's AppTest)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from runfolders import FakeBench, write_run
from sfteval.benchmarks import load_spec
from sfteval.kinds import KINDS, BuildContext, get_kind
from sfteval.prompts import Renderer
from sfteval.runfolder import SampleLine
from sfteval.types import Generation, GenParams, GenRequest, Loglik, LoglikRequest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"


def examples() -> dict[str, str]:
    found = re.findall(r"^```\w+ example=(\S+)\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.S | re.M)
    return dict(found)


def module(name: str, code: str) -> ModuleType:
    mod = ModuleType(name)
    exec(compile(code, f"{DOC}:{name}", "exec"), mod.__dict__)  # noqa: S102 - the guide's own code
    return mod


def test_every_section_has_its_example() -> None:
    assert set(examples()) == {"benchmark", "benchmark-data", "kind", "metric", "backend", "diagnosis",
                               "diagnosis-section", "page"}


def test_example_benchmark_builds_and_scores(tmp_path: Path) -> None:
    ex = examples()
    (tmp_path / "capitals.toml").write_text(ex["benchmark"])
    (tmp_path / "capitals_test.jsonl").write_text(ex["benchmark-data"])
    (tmp_path / "capitals_dev.jsonl").write_text(ex["benchmark-data"])
    spec = load_spec(str(tmp_path / "capitals.toml"))
    assert spec.role == "general" and spec.general
    kind = get_kind(spec.kind)
    built = kind.build(spec, BuildContext(Renderer(None, chat=False)))
    assert [s.id for s in built.samples] == ["c1", "c2"]
    assert built.settings["fewshot_ids_by_subject"] == {"europe": ["c1"]}
    assert "Capital of France?" in built.samples[1].prompt  # the recorded exemplar is in the prompt
    assert isinstance(built.samples[0].request, LoglikRequest)
    recs = kind.score(spec, built.samples, [Loglik((-2.0, -0.1, -3.0), (False,) * 3)] * 2)
    assert [r.scores["accuracy"] for r in recs] == [1.0, 0.0]


def test_example_kind_registers_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exact_kind.py").write_text(examples()["kind"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(KINDS, "exact", "exact_kind:ExactKind")
    (tmp_path / "qa.jsonl").write_text('{"id": "1", "question": "2+2?", "answer": "4"}\n'
                                       '{"id": "2", "question": "3+3?", "answer": "6"}\n')
    (tmp_path / "qa.toml").write_text('name = "qa"\nkind = "exact"\nrole = "target"\n[data]\nlocal = "qa.jsonl"\n')
    spec = load_spec(str(tmp_path / "qa.toml"))
    kind = get_kind("exact")
    built = kind.build(spec, BuildContext(Renderer(None, chat=False)))
    assert built.samples[0].prompt == "Q: 2+2?\nA:"
    recs = kind.score(spec, built.samples, [Generation((" 4\nmore",), ("stop",)), Generation(("5",), ("stop",))])
    assert [r.scores["exact"] for r in recs] == [1.0, 0.0]
    agg = kind.aggregate(spec, [SampleLine.from_dict({"id": str(i), "scores": r.scores}) for i, r in enumerate(recs)])
    assert agg.primary == "exact" and agg.metrics["exact"].value == 0.5
    sys.modules.pop("exact_kind", None)


@pytest.mark.parametrize(("hyp", "ref", "want"), [
    ("the cat sat", "the cat sat", 1.0),
    ("The Cat", "the cat sat", 0.8),
    ("dog", "the cat", 0.0),
    ("", "", 1.0),
    ("", "x", 0.0),
])
def test_example_metric(hyp: str, ref: str, want: float) -> None:
    assert module("metric", examples()["metric"]).token_f1(hyp, ref) == pytest.approx(want)


def test_example_backend_satisfies_the_protocol_and_runs(tiny_model: Path, tmp_path: Path) -> None:
    from sfteval.backends import Backend
    from sfteval.config import RunConfig
    from sfteval.fileio import read_json
    from sfteval.runner import execute_run

    echo = module("backend", examples()["backend"]).EchoBackend()
    assert isinstance(echo, Backend)
    gens = echo.generate([GenRequest("a\nlast line", GenParams(n=2))])
    assert gens[0].texts == ("last line", "last line")
    cfg = RunConfig(checkpoint=str(tiny_model), benchmarks=("offline_gsm8k", "offline_mmlu"), limit=3,
                    out=str(tmp_path / "reports"), chat_template="off")
    doc = read_json(execute_run(cfg, backend=echo) / "results.json")
    assert doc["backend"]["name"] == "echo" and set(doc["benchmarks"]) == {"offline_gsm8k", "offline_mmlu"}
    assert doc["benchmarks"]["offline_gsm8k"]["n"] == 3


def test_example_diagnosis_through_compare_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.compare import CompareSettings, compare_runs, load_run
    from sfteval.diagnoses import DIAGNOSES
    from sfteval.report import build_report, render_markdown
    from sfteval.report_sections import SECTIONS

    ex = examples()
    monkeypatch.setitem(DIAGNOSES, "empty_outputs", module("diagnosis", ex["diagnosis"]).diagnose)
    monkeypatch.setitem(SECTIONS, "empty_outputs", module("section", ex["diagnosis-section"]).empty_outputs_section)
    base = write_run(tmp_path, "base", [FakeBench("gsm8k", {"em": [1, 0, 1, 1]}, general=True)])
    tuned = write_run(tmp_path, "tuned", [FakeBench("gsm8k", {"em": [1, 0, 0, 1]}, general=True,
                                                    outputs=["a", "  ", "", "b"])])
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=50))
    assert c["empty_outputs"] == {"gsm8k": {"base": 0.0, "tuned": 0.5}}
    md = render_markdown(*build_report(c))
    assert "## Empty outputs" in md and "| gsm8k | 0.000 | 0.500 |" in md


def test_every_diagnosis_has_a_report_section() -> None:
    from sfteval.diagnoses import DIAGNOSES
    from sfteval.report_sections import SECTIONS

    assert list(SECTIONS) == list(DIAGNOSES)


def test_example_page_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(ROOT / "sfteval" / "dashboard"))  # `import data`, as the app does
    reports = tmp_path / "reports"
    write_run(reports, "a", [FakeBench("gsm8k", {"em": [1, 0]})])
    write_run(reports, "b", [FakeBench("gsm8k", {"em": [1, 1]})])
    monkeypatch.setenv("SFTEVAL_REPORTS", str(reports))
    page = tmp_path / "run_count.py"
    page.write_text(examples()["page"])
    at = AppTest.from_file(str(page), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Run count" and at.metric[0].value == "2"
