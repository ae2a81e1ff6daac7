"""lighteval in, against real lighteval 0.13.0 runs (`lighteval accelerate ... --save-details`,
in its own venv `.venv-lighteval`, built by `.ci/install-lighteval.sh`) of two tiny models on
local tasks: a 1-shot multiple-choice task (acc, corpus loglikelihood_f1) and a generative one
(em, f1), read from local data folders through a `--custom-tasks` file. Bad-input tests
build their files by hand and need no lighteval."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (extra 'lighteval') reads lighteval's details")

REPO = Path(__file__).resolve().parents[1]
OFFLINE = REPO / "sfteval" / "catalog" / "data" / "offline"
# where .ci/install-lighteval.sh builds it (LIGHTEVAL_VENV, relative to the repository)
LIGHTEVAL_PY = REPO / os.environ.get("LIGHTEVAL_VENV", ".venv-lighteval") / "bin" / "python"
MAX_SAMPLES = 8
TASKS = "local_mc|1,local_gen|0"

needs_lighteval = pytest.mark.skipif(not LIGHTEVAL_PY.is_file(),
                                     reason=".venv-lighteval is absent: build it with bash .ci/install-lighteval.sh")

TASKS_FILE = '''
import os

from lighteval.metrics.metrics import Metrics
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc

LETTERS = ["A", "B", "C", "D"]


def mc_prompt(line, task_name=None):
    q = line["question"].strip() + "\\n" + "".join(f"{l}. {c}\\n" for l, c in zip(LETTERS, line["choices"]))
    return Doc(task_name=task_name, query=q + "Answer:", choices=[f" {l}" for l in LETTERS],
               gold_index=int(line["answer"]), instruction="")


def gen_prompt(line, task_name=None):
    return Doc(task_name=task_name, query=f"Question: {line['question']}\\nAnswer:",
               choices=[" " + line["answer"].split("####")[-1].strip()], gold_index=0)


TASKS_TABLE = [
    LightevalTaskConfig(name="local_mc", prompt_function=mc_prompt, hf_repo=os.environ["LOCAL_MC_DIR"],
                        hf_subset="default", hf_avail_splits=["test", "validation"], evaluation_splits=["test"],
                        few_shots_split="validation", few_shots_select="sequential",
                        metrics=[Metrics.loglikelihood_acc, Metrics.loglikelihood_f1], version=1),
    LightevalTaskConfig(name="local_gen", prompt_function=gen_prompt, hf_repo=os.environ["LOCAL_GEN_DIR"],
                        hf_subset="default", hf_avail_splits=["test"], evaluation_splits=["test"],
                        generation_size=16, stop_sequence=["\\n"],
                        metrics=[Metrics.exact_match, Metrics.f1_score], version=0),
]
'''

# lighteval 0.13.0 downloads tinyBenchmarks.pkl from GitHub while it imports its task
# registry (module level of tasks/tasks/tiny_benchmarks.py). There is no network here: that
# one request is answered "unavailable", which lighteval's code tolerates (it writes the file
# only on status 200). Everything else is lighteval's own CLI.
RUNNER = '''
import sys

import requests

_get = requests.get


class _Unavailable:
    status_code = 503


requests.get = lambda url, *a, **k: _Unavailable() if "tinyBenchmarks" in str(url) else _get(url, *a, **k)
import lighteval.tasks.tasks.tiny_benchmarks  # noqa: E402,F401
requests.get = _get
from lighteval.__main__ import app  # noqa: E402

sys.argv = ["lighteval", *sys.argv[1:]]
app()
'''

# lighteval's own plain-text prompt for each details row, to check ours against.
PROMPTS = '''
import json, sys

import pyarrow.parquet as pq
from lighteval.tasks.prompt_manager import PromptManager
from lighteval.tasks.requests import Doc


def doc(d):
    d = dict(d)
    d["fewshot_samples"] = [doc(s) for s in d.get("fewshot_samples") or []]
    return Doc(**d)


pm = PromptManager(use_chat_template=False, tokenizer=None, system_prompt=None)
rows = pq.read_table(sys.argv[1]).to_pylist()
print(json.dumps({r["doc"]["id"]: pm.prepare_prompt(doc(r["doc"])) for r in rows}))
'''


def _model_for_transformers4(src: Path, dst: Path) -> Path:
    """The fixture's model, its tokenizer config in transformers 4's words (lighteval 0.13.0
    needs transformers < 5): same tokenizer.json, weights and chat template."""
    shutil.copytree(src, dst)
    p = dst / "tokenizer_config.json"
    cfg = json.loads(p.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    extra = cfg.pop("extra_special_tokens", [])
    if isinstance(extra, list):
        cfg["additional_special_tokens"] = extra
    p.write_text(json.dumps(cfg, indent=2))
    return dst


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "LOCAL_MC_DIR": str(root / "mc"), "LOCAL_GEN_DIR": str(root / "gen"),
            "HF_HOME": str(root / "hf-home"), "HF_DATASETS_CACHE": str(root / "hf-datasets")}


def _start(root: Path, model: Path, out: Path) -> subprocess.Popen:
    cmd = [str(LIGHTEVAL_PY), str(root / "run_lighteval.py"), "accelerate",
           f"model_name={model},dtype=float32,batch_size=8", TASKS, "--custom-tasks", str(root / "tasks.py"),
           "--output-dir", str(out), "--save-details", "--max-samples", str(MAX_SAMPLES)]
    return subprocess.Popen(cmd, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def lighteval_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    if not LIGHTEVAL_PY.is_file():
        pytest.skip(".venv-lighteval is absent: build it with bash .ci/install-lighteval.sh")
    from sfteval.tinymodel import TinySpec, build_tiny_model

    root = tmp_path_factory.mktemp("lighteval")
    (root / "mc").mkdir()
    (root / "gen").mkdir()
    shutil.copy(OFFLINE / "mmlu_test.jsonl", root / "mc" / "test.jsonl")
    shutil.copy(OFFLINE / "mmlu_dev.jsonl", root / "mc" / "validation.jsonl")
    shutil.copy(OFFLINE / "gsm8k_test.jsonl", root / "gen" / "test.jsonl")
    (root / "tasks.py").write_text(TASKS_FILE)
    (root / "run_lighteval.py").write_text(RUNNER)
    base = _model_for_transformers4(tiny_model, root / "base")
    tuned = _model_for_transformers4(build_tiny_model(root / "tuned-src", TinySpec(seed=7)), root / "tuned")
    # The two runs at once: each is mostly start-up (imports, task registry) on one core.
    procs = {"base": _start(root, base, root / "out-base"), "tuned": _start(root, tuned, root / "out-tuned")}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"lighteval ({name}) failed:\n{log[-4000:]}"
    return {"root": root, "base": root / "out-base", "tuned": root / "out-tuned"}


def _results(out: Path) -> dict:
    (path,) = out.rglob("results_*.json")
    return json.loads(path.read_text())


def _details(out: Path, task: str) -> list[dict]:
    (path,) = out.rglob(f"details_{task}_*.parquet")
    return pq.read_table(path).to_pylist()


slow = pytest.mark.slow  # two real lighteval runs: about 3 min on a loaded 2-core machine


@slow
@needs_lighteval
def test_imported_metrics_equal_lightevals_exactly(lighteval_runs, tmp_path: Path) -> None:
    from sfteval.interop.lighteval_import import import_lighteval
    from sfteval.runfolder import read_results, read_run

    (run,) = import_lighteval(lighteval_runs["base"], tmp_path, name="base", targets=["local_mc"])
    res, reported = read_results(run), _results(lighteval_runs["base"])["results"]
    mc, gen = res.benchmarks["local_mc"], res.benchmarks["local_gen"]
    assert mc.metrics["acc"].value == reported["local_mc|1"]["acc"]
    assert gen.metrics["em"].value == reported["local_gen|0"]["em"]
    assert gen.metrics["f1"].value == reported["local_gen|0"]["f1"]
    assert mc.metrics["acc"].method == "wilson" and mc.n == MAX_SAMPLES
    lo, hi = mc.metrics["acc"].ci95
    assert lo <= mc.metrics["acc"].value <= hi and hi - lo > 0.1
    # a corpus metric has no per-sample values: carried as lighteval reported it
    f1 = mc.metrics["loglikelihood_f1"]
    assert f1.value == reported["local_mc|1"]["loglikelihood_f1"] and f1.method.startswith("lighteval:CorpusLevelF1")
    assert mc.role == "target" and gen.role == "general"
    assert mc.settings["lighteval"]["n_shot"] == 1 and mc.settings["lighteval"]["version"] == 1
    assert mc.settings["lighteval"]["config"]["few_shots_split"] == "validation"
    assert res.config["model_config"]["dtype"] == "float32" and res.model.path.endswith("/base")
    rows = {r["doc"]["id"]: r for r in _details(lighteval_runs["base"], "local_mc|1")}
    ours = read_run(run).samples["local_mc"]
    assert set(ours) == set(rows) and len(rows) == MAX_SAMPLES
    for doc_id, row in rows.items():
        line = ours[doc_id]
        assert line.score("acc") == row["metric"]["acc"]
        assert line.meta["choice_logprobs"] == row["model_response"]["logprobs"]
        assert line.reference == row["doc"]["gold_index"]
        assert line.meta["lighteval"]["corpus_inputs"]["loglikelihood_f1"] == row["metric"]["loglikelihood_f1"]
    gen_rows = {r["doc"]["id"]: r for r in _details(lighteval_runs["base"], "local_gen|0")}
    for doc_id, line in read_run(run).samples["local_gen"].items():
        assert line.outputs == tuple(gen_rows[doc_id]["model_response"]["text_post_processed"])
        assert line.score("f1") == gen_rows[doc_id]["metric"]["f1"]


@slow
@needs_lighteval
def test_prompts_are_lightevals_own_rendering(lighteval_runs, tmp_path: Path) -> None:
    """Our `prompt` of each item == lighteval's PromptManager (plain text) on the logged doc."""
    from sfteval.interop.lighteval_import import import_lighteval
    from sfteval.runfolder import read_run

    (run,) = import_lighteval(lighteval_runs["base"], tmp_path, name="base")
    script = tmp_path / "prompts.py"
    script.write_text(PROMPTS)
    for task, bench in (("local_mc|1", "local_mc"), ("local_gen|0", "local_gen")):
        (path,) = lighteval_runs["base"].rglob(f"details_{task}_*.parquet")
        res = subprocess.run([str(LIGHTEVAL_PY), str(script), str(path)], env=_env(lighteval_runs["root"]),
                             capture_output=True, text=True, timeout=600, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        theirs = json.loads(res.stdout.strip().splitlines()[-1])
        ours = read_run(run).samples[bench]
        assert {i: ours[i].prompt for i in ours} == theirs
    assert "Answer: A\n\n" in next(iter(read_run(run).samples["local_mc"].values())).prompt  # the 1 shot


@slow
@needs_lighteval
def test_compare_of_two_imports_gives_lightevals_paired_deltas(lighteval_runs, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.cli import main
    from sfteval.runfolder import read_comparison

    runs = {}
    for name in ("base", "tuned"):
        monkeypatch.setattr(sys, "argv", ["sfteval", "import", "lighteval", str(lighteval_runs[name]), "--name", name,
                                          "--out", str(tmp_path / "reports")])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 0
        (runs[name],) = (tmp_path / "reports" / "runs").glob(f"{name}-*")
    out = tmp_path / "cmp"
    monkeypatch.setattr(sys, "argv", ["sfteval", "compare", str(runs["base"]), str(runs["tuned"]), "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    comp = read_comparison(out).to_dict()
    b = {r["doc"]["id"]: r["metric"]["acc"] for r in _details(lighteval_runs["base"], "local_mc|1")}
    t = {r["doc"]["id"]: r["metric"]["acc"] for r in _details(lighteval_runs["tuned"], "local_mc|1")}
    assert set(b) == set(t) and b != t  # two different models, the same documents
    entry = comp["benchmarks"]["local_mc"]
    assert entry["n_aligned"] == MAX_SAMPLES
    assert entry["metrics"]["acc"]["delta"]["value"] == pytest.approx(sum(t[i] - b[i] for i in b) / len(b), abs=1e-12)


@slow
@needs_lighteval
def test_reimport_is_the_same_folder_and_target_must_exist(lighteval_runs, tmp_path: Path) -> None:
    from sfteval.errors import SftevalError
    from sfteval.interop.lighteval_import import import_lighteval

    first = import_lighteval(lighteval_runs["base"], tmp_path, name="m")
    assert import_lighteval(lighteval_runs["base"], tmp_path, name="m") == first
    with pytest.raises(SftevalError, match="--target.*nope"):
        import_lighteval(lighteval_runs["base"], tmp_path / "x", targets=["nope"])


# ---------------------------------------------------------------- bad input (no lighteval needed)


def _write_output(root: Path, *, rows: list[dict], results: dict | None = None) -> Path:
    import pyarrow as pa

    date = "2026-01-01T00-00-00.000000"
    res_dir, det_dir = root / "results" / "org" / "m", root / "details" / "org" / "m" / date
    res_dir.mkdir(parents=True)
    det_dir.mkdir(parents=True)
    raw = results or {"config_general": {"model_name": "org/m", "model_config": {}},
                      "results": {"t|0": {"acc": 0.5}, "all": {"acc": 0.5}},
                      "config_tasks": {"t|0": {"metrics": [{"metric_name": "acc", "corpus_level_fn": "mean"}]}}}
    (res_dir / f"results_{date}.json").write_text(json.dumps(raw))
    pq.write_table(pa.Table.from_pylist(rows), det_dir / f"details_t|0_{date}.parquet")
    return root


def _row(i: int, acc: int) -> dict:
    return {"doc": {"id": str(i), "query": f"q{i}", "choices": [" a", " b"], "gold_index": 0, "instruction": None,
                    "fewshot_samples": []},
            "model_response": {"input": None, "input_tokens": [1, 2], "text": [], "logprobs": [-1.0, -2.0]},
            "metric": {"acc": acc}}


def test_a_handmade_output_imports(tmp_path: Path) -> None:
    from sfteval.interop.lighteval_import import import_lighteval
    from sfteval.runfolder import read_results

    out = _write_output(tmp_path / "le", rows=[_row(0, 1), _row(1, 0)])
    (run,) = import_lighteval(out, tmp_path / "reports")
    assert read_results(run).benchmarks["t"].metrics["acc"].value == 0.5


def test_a_row_without_doc_names_file_row_and_field(tmp_path: Path) -> None:
    from sfteval.errors import SftevalError
    from sfteval.interop.lighteval_import import import_lighteval

    bad = {k: v for k, v in _row(1, 0).items() if k != "doc"} | {"example": "old layout"}
    out = _write_output(tmp_path / "le", rows=[bad])
    with pytest.raises(SftevalError) as err:
        import_lighteval(out, tmp_path / "reports")
    assert "details_t|0_" in str(err.value) and ":0 (field 'doc')" in str(err.value)


def test_missing_details_and_missing_per_sample_values_are_errors(tmp_path: Path) -> None:
    from sfteval.errors import SftevalError
    from sfteval.interop.lighteval_import import import_lighteval

    raw = {"config_general": {"model_name": "org/m"}, "results": {"other|0": {"acc": 1.0}}, "config_tasks": {}}
    out = _write_output(tmp_path / "a", rows=[_row(0, 1)], results=raw)
    with pytest.raises(SftevalError, match=r"results_.*field 'results.other\|0'.*no details file"):
        import_lighteval(out, tmp_path / "reports")
    rows = [_row(0, 1), {**_row(1, 0), "metric": {"other": 1}}]
    out = _write_output(tmp_path / "b", rows=rows)
    with pytest.raises(SftevalError, match=r"field 'metric.acc'.*1 of 2 rows"):
        import_lighteval(out, tmp_path / "reports")


def test_cli_reports_bad_input_with_a_nonzero_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from sfteval.cli import main

    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sys, "argv", ["sfteval", "import", "lighteval", str(tmp_path / "empty")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "no lighteval results file" in capsys.readouterr().err
