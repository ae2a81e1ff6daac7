"""lm-eval in and out, against real lm-eval runs of two tiny models on local copies of
an MMLU-style and a GSM8K task (`lm_eval --log_samples`, started by the fixture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is in the dev extra")

REPO = Path(__file__).resolve().parents[1]
OFFLINE = REPO / "sfteval" / "catalog" / "data" / "offline"
LIMIT = 6
MAX_TOKENS = 16


def _task_yamls(folder: Path, data: Path) -> None:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "local_mc.yaml").write_text(yaml.safe_dump({
        "task": "local_mc", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data / "mmlu_test.jsonl"), "dev": str(data / "mmlu_dev.jsonl")}},
        "test_split": "test", "fewshot_split": "dev", "num_fewshot": 2, "output_type": "multiple_choice",
        "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                       "D. {{choices[3]}}\nAnswer:",
        "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0}}))
    # lm-eval's own gsm8k task, pointed at a local copy of the data (nothing else changed).
    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    cfg.update(task="gsm8k_local", dataset_path="json",
               dataset_kwargs={"data_files": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")}})
    cfg.pop("dataset_name", None)
    cfg.pop("tag", None)
    (folder / "gsm8k_local.yaml").write_text(yaml.safe_dump(cfg))


def _lm_eval(model: Path, tasks: Path, out: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
           "--tasks", "local_mc,gsm8k_local", "--include_path", str(tasks), "--log_samples", "--output_path",
           str(out), "--limit", str(LIMIT), "--gen_kwargs", f"max_gen_toks={MAX_TOKENS}", "--device", "cpu"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.fixture(scope="module")
def lmeval_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    from sfteval.tinymodel import TinySpec, build_tiny_model

    root = tmp_path_factory.mktemp("lmeval")
    data = root / "data"
    data.mkdir()
    for name in ("mmlu_test", "mmlu_dev"):
        shutil.copy(OFFLINE / f"{name}.jsonl", data / f"{name}.jsonl")
    shutil.copy(OFFLINE / "gsm8k_test.jsonl", data / "test.jsonl")
    shutil.copy(OFFLINE / "gsm8k_train.jsonl", data / "train.jsonl")
    _task_yamls(root / "tasks", data)
    other = build_tiny_model(root / "tuned-model", TinySpec(seed=7))
    _lm_eval(tiny_model, root / "tasks", root / "out-base")
    _lm_eval(other, root / "tasks", root / "out-tuned")
    return {"root": root, "data": data, "base": root / "out-base", "tuned": root / "out-tuned",
            "base_model": tiny_model}


def _samples(out: Path, task: str) -> list[dict]:
    (path,) = out.rglob(f"samples_{task}_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _results(out: Path) -> dict:
    (path,) = out.rglob("results_*.json")
    return json.loads(path.read_text())


def test_imported_metrics_equal_lm_evals_exactly(lmeval_runs, tmp_path: Path) -> None:
    from sfteval.interop.lmeval_import import import_lmeval
    from sfteval.runfolder import read_results, read_run

    (run,) = import_lmeval(lmeval_runs["base"], tmp_path, name="base")
    res, reported = read_results(run), _results(lmeval_runs["base"])["results"]
    assert res.benchmarks["local_mc"].metrics["acc"].value == reported["local_mc"]["acc,none"]
    gsm = res.benchmarks["gsm8k_local"].metrics
    assert gsm["exact_match_strict_match"].value == reported["gsm8k_local"]["exact_match,strict-match"]
    assert gsm["exact_match_flexible_extract"].value == reported["gsm8k_local"]["exact_match,flexible-extract"]
    lo, hi = res.benchmarks["local_mc"].metrics["acc"].ci95
    assert -1e-12 <= lo <= reported["local_mc"]["acc,none"] + 1e-12 <= hi + 1e-12 <= 1.0 + 1e-12  # Wilson at n=6
    assert hi - lo > 0.1
    ours = read_run(run).samples["local_mc"]
    for s in _samples(lmeval_runs["base"], "local_mc"):
        line = ours[str(s["doc_id"])]
        assert line.prompt_hash == s["prompt_hash"] and line.score("acc") == s["acc"]
        assert line.prompt == s["arguments"]["gen_args_0"]["arg_0"]
    assert res.config["lm_eval_version"] == lm_eval.__version__
    assert res.benchmarks["gsm8k_local"].settings["lm_eval"]["config"]["num_fewshot"] == 5


def test_compare_of_two_imports_gives_lm_evals_paired_deltas(lmeval_runs, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.cli import main
    from sfteval.interop.lmeval_import import import_lmeval
    from sfteval.runfolder import read_comparison

    (base,) = import_lmeval(lmeval_runs["base"], tmp_path, name="base")
    (tuned,) = import_lmeval(lmeval_runs["tuned"], tmp_path, name="tuned")
    out = tmp_path / "cmp"
    monkeypatch.setattr(sys, "argv", ["sfteval", "compare", str(base), str(tuned), "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    comp = read_comparison(out).to_dict()
    b = {s["doc_id"]: s["acc"] for s in _samples(lmeval_runs["base"], "local_mc")}
    t = {s["doc_id"]: s["acc"] for s in _samples(lmeval_runs["tuned"], "local_mc")}
    delta = comp["benchmarks"]["local_mc"]["metrics"]["acc"]["delta"]
    assert delta["value"] == pytest.approx(sum(t[i] - b[i] for i in b) / len(b), abs=1e-12)
    assert comp["benchmarks"]["local_mc"]["n_aligned"] == LIMIT


def test_the_previous_layout_imports_to_the_same_run(lmeval_runs, tmp_path: Path) -> None:
    from sfteval.interop.lmeval_import import import_lmeval
    from sfteval.runfolder import read_results, read_run

    old = tmp_path / "old"
    old.mkdir()
    results = _results(lmeval_runs["base"])
    (old / "results.json").write_text(json.dumps(results))
    for task in ("local_mc", "gsm8k_local"):
        lines = []
        for s in _samples(lmeval_runs["base"], task):  # 0.4.0-0.4.2 logged arguments as lists
            s["arguments"] = [[a[k] for k in sorted(a)] for _, a in sorted(s["arguments"].items())]
            lines.append(json.dumps(s))
        (old / f"pretrained__model_{task}.jsonl").write_text("\n".join(lines) + "\n")
    (new_run,) = import_lmeval(lmeval_runs["base"], tmp_path / "a", name="m")
    (old_run,) = import_lmeval(old, tmp_path / "b", name="m")
    a, b = read_results(new_run), read_results(old_run)
    assert {n: {m: e.value for m, e in r.metrics.items()} for n, r in a.benchmarks.items()} == \
        {n: {m: e.value for m, e in r.metrics.items()} for n, r in b.benchmarks.items()}
    assert b.config["layout"] == "previous"
    assert {i: x.to_dict() for i, x in read_run(new_run).samples["gsm8k_local"].items()} == \
        {i: x.to_dict() for i, x in read_run(old_run).samples["gsm8k_local"].items()}


def test_export_is_read_by_lm_evals_own_table(lmeval_runs, tmp_path: Path) -> None:
    from lm_eval.utils import make_table

    from sfteval.interop.lmeval_export import export_lmeval
    from sfteval.interop.lmeval_import import import_lmeval

    (run,) = import_lmeval(lmeval_runs["base"], tmp_path, name="base")
    exported = export_lmeval(run)
    table = make_table(exported)
    assert "local_mc" in table and "strict-match" in table and "flexible-extract" in table
    reported = _results(lmeval_runs["base"])["results"]
    for task, entry in reported.items():
        for key, value in entry.items():
            if "," in key and "_stderr," not in key:
                assert exported["results"][task][key] == value
    assert exported["n-samples"]["local_mc"] == {"original": LIMIT, "effective": LIMIT}


def test_gsm8k_lmeval_prompts_and_scores_are_lm_evals(lmeval_runs, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """sfteval's gsm8k_lmeval on the same items and model: the very prompts lm-eval logged
    for its gsm8k task, the same greedy outputs, the same strict/flexible score per item."""
    from sfteval.benchmarks import benchmarks_dir
    from sfteval.cli import main
    from sfteval.runfolder import read_run

    toml = (benchmarks_dir() / "gsm8k_lmeval.toml").read_text().replace(
        "max_new_tokens = 256", f"max_new_tokens = {MAX_TOKENS}")
    (tmp_path / "gsm8k_lmeval.toml").write_text(toml)
    data = lmeval_runs["data"]
    monkeypatch.setattr(sys, "argv", [
        "sfteval", "run", str(lmeval_runs["base_model"]), "-b", str(tmp_path / "gsm8k_lmeval.toml"),
        "--data", f"gsm8k_lmeval={data / 'test.jsonl'}", "--fewshot-data", f"gsm8k_lmeval={data / 'train.jsonl'}",
        "--limit", str(LIMIT), "--backend", "hf", "--chat-template", "off", "--out", str(tmp_path / "reports")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    (run,) = (tmp_path / "reports" / "runs").iterdir()
    ours = read_run(run).samples["gsm8k_lmeval"]
    theirs: dict[str, dict[str, dict]] = {}
    for s in _samples(lmeval_runs["base"], "gsm8k_local"):
        theirs.setdefault(str(s["doc_id"]), {})[s["filter"]] = s
    assert len(ours) == len(theirs) == LIMIT
    for doc_id, by_filter in theirs.items():
        line, strict = ours[doc_id], by_filter["strict-match"]
        assert line.prompt == strict["arguments"]["gen_args_0"]["arg_0"]
        assert line.output == strict["resps"][0][0]
        assert line.score("exact_match_strict") == strict["exact_match"]
        assert line.score("exact_match_flexible") == by_filter["flexible-extract"]["exact_match"]
